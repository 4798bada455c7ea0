"""The models behind the jobs: one Stylizer per method (:class:`StylizerPool`), the method catalog, and the work
function of a stylize job (:func:`stylize_job`, run on a :class:`~impasto.server.jobs.JobManager` worker thread)."""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from impasto.runtime import cancellation
from impasto.server.jobs import JobContext
from impasto.server.middleware import ApiError


class StylizerPool:
    """Lazily created :class:`~impasto.pipeline.Stylizer` objects, one per method, shared by all jobs.

    A Stylizer serves concurrent calls (each with its own progress callback), so with several workers jobs of
    the same method run side by side, like jobs of different methods.
    """

    def __init__(self, device: str = "auto", style_size: int = 512,
                 factory: Callable[[str], Any] | None = None) -> None:
        self.device, self.style_size = device, style_size
        self._factory = factory
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}
        self._loading: dict[str, threading.Lock] = {}

    def get(self, method: str) -> Any:
        """The Stylizer for ``method`` (loads it on first use)."""
        with self._lock:
            if method in self._items:
                return self._items[method]
            load_lock = self._loading.setdefault(method, threading.Lock())
        with load_lock:  # one thread loads a method; others wait for it, other methods are not blocked
            with self._lock:
                if method in self._items:
                    return self._items[method]
            stylizer = self._create(method)
            with self._lock:
                self._items[method] = stylizer
                return stylizer

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def _create(self, method: str) -> Any:
        if self._factory is not None:
            return self._factory(method)
        from impasto.pipeline import Stylizer

        return Stylizer(method, device=self.device, style_size=self.style_size)


class MethodCatalog:
    """Method names, descriptions and availability (re-checked every ``ttl`` seconds: weights may appear)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._at = -math.inf

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._rows, self._at = self._scan(), time.monotonic()
            return [dict(r) for r in self._rows]

    def check(self, name: str) -> None:
        """Raise ApiError 422 if ``name`` is unknown or cannot run here (the message says why)."""
        rows = {r["name"]: r for r in self.rows()}
        if name not in rows:
            raise ApiError(422, f"unknown method {name!r}; known methods: {', '.join(rows)} "
                                f"(see GET /v1/methods)")
        if not rows[name]["available"]:
            raise ApiError(422, f"method {name!r} cannot run on this server: {rows[name]['reason']}")

    @staticmethod
    def _scan() -> list[dict[str, Any]]:
        from impasto.methods import availability, get_method_class, method_names

        rows = []
        for name in method_names():
            cls = get_method_class(name)
            ok, why = availability(name)
            rows.append({"name": name, "available": ok, "reason": None if ok else why,
                         "details": why if ok else None, "summary": cls.summary, "paper": cls.paper,
                         "iterative": bool(getattr(cls, "iterative", False))})
        return rows


def stylize_job(pool: StylizerPool, content: Image.Image, style: Image.Image, method: str,
                options: dict[str, Any]) -> Callable[[JobContext], tuple[bytes, dict[str, Any]]]:
    """The work function of one stylize job: ``method``'s Stylizer on the decoded images, ``options`` passed to
    :meth:`impasto.pipeline.Stylizer.stylize` as keywords; returns the PNG and its size."""

    def work(ctx: JobContext) -> tuple[bytes, dict[str, Any]]:
        ctx.progress(0.02, "loading model")
        stylizer = pool.get(method)

        def on_step(done: int, total: int) -> None:
            ctx.progress(0.1 + 0.8 * done / max(total, 1))

        ctx.progress(0.1, "stylizing")
        with cancellation(ctx.check):  # past the deadline the work stops at its next check: the worker is freed
            out = stylizer.stylize(content, style, progress=on_step, **options)
        ctx.progress(0.92, "encoding")
        buf = io.BytesIO()
        out.save(buf, format="PNG", compress_level=3)
        return buf.getvalue(), {"width": out.width, "height": out.height}

    return work
