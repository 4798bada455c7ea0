"""impasto's web app and HTTP API (FastAPI): one HTML page at ``/`` and a small JSON API under ``/v1``.

    POST /v1/stylize          multipart: content, style (files), method, alpha, preserve_color, max_size
                              -> 202 {job_id, status, status_url, result_url}
    GET  /v1/jobs/{id}        -> {status: queued | running | done | error, progress (%), stage, error, ...}
    GET  /v1/jobs/{id}/result -> image/png (404 unknown job, 409 not done yet or failed)
    GET  /v1/methods          -> the methods, whether each runs here, and why not
    GET  /healthz             -> {"status": "ok", "jobs": {...}, "limits": {...}}
    GET  /docs, /redoc        -> OpenAPI docs (Swagger UI / ReDoc served from the package: they work offline)
    GET  /v1/browser, /ort/*, /models/*.onnx -> "in my browser" mode (:mod:`impasto.server.browser`)

The server only calls the library (:class:`impasto.pipeline.Stylizer`, :func:`impasto.io.images.load_image`,
the method registry). Uploads are validated before a job is queued (size while reading, pixel count from the
header, the image fully decoded), so every bad request gets a 4xx answer with a JSON ``{"error": "..."}`` body
at once; the event loop never runs model code (jobs run on the worker threads of
:class:`impasto.server.jobs.JobManager`). No client-provided name or path ever reaches the file system.

Run it with ``impasto serve`` (binds 127.0.0.1 by default: the server has no authentication).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from impasto.errors import ConfigError, ImpastoError
from impasto.runtime import cancellation
from impasto.server.jobs import DONE, JobContext, JobManager, QueueFull

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Declared upload types accepted besides image/*: what browsers and curl send for unknown files.
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
FORM_FIELDS = ("content", "style", "method", "alpha", "preserve_color", "max_size")
TRUE_WORDS = {"1", "true", "on", "yes"}
FALSE_WORDS = {"0", "false", "off", "no", ""}
#: Largest accepted ``max_size`` (pixels on the long side); larger values would mean "no cap" anyway.
MAX_SIZE_LIMIT = 16384
#: Content-Security-Policy of the page: everything from this server, nothing from elsewhere.
#: 'wasm-unsafe-eval' lets the page compile onnxruntime-web's WebAssembly ("in my browser" mode); no JS eval.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


@dataclass
class ServerConfig:
    """Settings of the web server (``impasto serve`` options; the rest are for embedding and tests).

    Attributes:
        host, port: where ``impasto serve`` listens (127.0.0.1: this machine only; the server has no login).
        workers: jobs running at the same time (worker threads).
        max_upload_mb: largest accepted image file, per file (the request body may hold two plus the fields).
        max_pixels: largest accepted image (width x height), checked from the header before decoding.
        queue: jobs that may wait for a worker; more are refused with 429.
        timeout: seconds a job may run before it is failed as "timed out".
        device: torch device for the models (``auto``: CUDA when available).
        style_size: long side style images are resized to.
        max_results, result_ttl, max_result_mb: how many finished jobs are kept, for how long, and how many
            megabytes of results in total.
        intake_slots: uploads parsed and decoded at the same time (bounds memory under load).
        upload_timeout: seconds a client may take to send its upload (408 after that).
        slot_wait: seconds an upload may wait for a free intake slot (503 with Retry-After after that).
        min_upload_rate: bytes per second a request body must keep up after ``upload_grace`` seconds (408 if not),
            so that clients trickling their bodies cannot hold the intake slots.
        allowed_hosts: Host header names answered (besides the bound host and localhost); ``("*",)``: any. A
            server on 127.0.0.1 answers only its own names, so a web page cannot reach it by DNS rebinding.
        allowed_origins: origins (``https://example.org``) allowed to POST besides the server's own; ``("*",)``:
            any. Cross-origin posts from other pages are refused with 403.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_upload_mb: float = 20.0
    max_pixels: int = 16_000_000
    queue: int = 8
    timeout: float = 120.0
    device: str = "auto"
    style_size: int = 512
    max_results: int = 64
    result_ttl: float = 900.0
    max_result_mb: float = 256.0
    intake_slots: int = 4
    upload_timeout: float = 60.0
    slot_wait: float = 10.0
    min_upload_rate: float = 32 * 1024
    upload_grace: float = 5.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(what)

        need(isinstance(self.port, int) and 0 <= self.port <= 65535,
             f"--port must be 0-65535, got {self.port}")
        need(isinstance(self.workers, int) and 1 <= self.workers <= 64,
             f"--workers must be between 1 and 64, got {self.workers}")
        need(_finite(self.max_upload_mb) and 0 < self.max_upload_mb <= 1024,
             f"--max-upload-mb must be in (0, 1024], got {self.max_upload_mb}")
        need(isinstance(self.max_pixels, int) and self.max_pixels >= 64 * 64,
             f"--max-pixels must be an integer >= 4096, got {self.max_pixels}")
        need(isinstance(self.queue, int) and 0 <= self.queue <= 10_000,
             f"--queue must be 0-10000, got {self.queue}")
        need(_finite(self.timeout) and self.timeout > 0, f"--timeout must be a positive number of seconds, "
                                                         f"got {self.timeout}")
        need(isinstance(self.style_size, int) and self.style_size >= 16,
             f"style_size must be an integer >= 16, got {self.style_size}")
        need(isinstance(self.max_results, int) and self.max_results >= 1, "max_results must be >= 1")
        need(_finite(self.result_ttl) and self.result_ttl > 0, "result_ttl must be > 0")
        need(_finite(self.max_result_mb) and self.max_result_mb > 0, "max_result_mb must be > 0")
        need(isinstance(self.intake_slots, int) and self.intake_slots >= 1, "intake_slots must be >= 1")
        need(_finite(self.upload_timeout) and self.upload_timeout > 0, "upload_timeout must be > 0")
        need(_finite(self.slot_wait) and self.slot_wait > 0, "slot_wait must be > 0")
        need(_finite(self.min_upload_rate) and self.min_upload_rate >= 0, "min_upload_rate must be >= 0")
        need(_finite(self.upload_grace) and self.upload_grace >= 0, "upload_grace must be >= 0")
        self.allowed_hosts = tuple(h.strip().lower() for h in self.allowed_hosts if h.strip())
        self.allowed_origins = tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins if o.strip())

    def host_allowed(self, host_header: str) -> bool:
        """Is a request's Host header (``name[:port]``) one this server answers to?"""
        if "*" in self.allowed_hosts:
            return True
        name = _host_name(host_header)
        own = {"127.0.0.1", "localhost", "::1", self.host.lower()}
        if self.host in ("0.0.0.0", "::", ""):  # listening on every interface: its names are not known here
            return True
        return name in own or name in self.allowed_hosts

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """May a page of ``origin`` POST here? Same-origin pages (the host answered) and configured origins."""
        origin = origin.strip().rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        if origin == "null":
            return False
        name = _host_name(origin.split("://", 1)[-1])
        return name == _host_name(host_header) and self.host_allowed(host_header)
    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: two files plus room for the form fields and multipart framing."""
        return 2 * self.max_upload_bytes + 256 * 1024


def _host_name(host: str) -> str:
    """``name`` of a ``name[:port]`` / ``[v6]:port`` Host value, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class ApiError(Exception):
    """A client error: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# ------------------------------------------------------------------------------------------------------------
# Models: one Stylizer per method, created on first use, reused (it caches encoded styles)
# ------------------------------------------------------------------------------------------------------------

class StylizerPool:
    """Lazily created :class:`~impasto.pipeline.Stylizer` objects, one per method, each with a lock.

    A Stylizer is not thread-safe (its style cache and progress hook), so jobs of the same method take turns;
    jobs of different methods run side by side when there are several workers.
    """

    def __init__(self, device: str = "auto", style_size: int = 512,
                 factory: Callable[[str], Any] | None = None) -> None:
        self.device, self.style_size = device, style_size
        self._factory = factory
        self._lock = threading.Lock()
        self._items: dict[str, tuple[Any, threading.Lock]] = {}
        self._loading: dict[str, threading.Lock] = {}

    def get(self, method: str) -> tuple[Any, threading.Lock]:
        """The Stylizer for ``method`` and the lock to hold while using it (loads it on first use)."""
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
                self._items[method] = (stylizer, threading.Lock())
                return self._items[method]

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


# ------------------------------------------------------------------------------------------------------------
# ASGI guard: request body limit (enforced while reading) and security headers
# ------------------------------------------------------------------------------------------------------------

class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    """Pure ASGI middleware: refuse bodies over ``limit`` bytes with 413 and add security headers.

    A declared Content-Length over the limit is refused before the body is read; otherwise the body is counted
    as it arrives and the request is stopped at the first byte over the limit. Before answering, up to
    ``drain_limit`` bytes of the rest are read and thrown away so that the client (which usually sends its
    whole body before reading the answer) receives the 413 rather than a reset connection.
    """

    def __init__(self, app: Any, limit: int, drain_limit: int, config: ServerConfig | None = None) -> None:
        self.app, self.limit, self.drain_limit = app, limit, drain_limit
        self.config = config or ServerConfig()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        if path == "/" or path.startswith("/static/"):
            extra += [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]
        host = headers.get("host", "")
        if not self.config.host_allowed(host):  # DNS rebinding: a page of another site reaching a local server
            await _send_json(send, 400, {"error": f"this server does not answer to the host name {host!r}; start it "
                                                  f"with --allow-host {_host_name(host) or 'NAME'} to allow it"},
                             extra, close=True)
            return
        origin = headers.get("origin")
        if origin is not None and scope.get("method") not in ("GET", "HEAD", "OPTIONS") \
                and not self.config.origin_allowed(origin, host):
            await _send_json(send, 403, {"error": f"cross-origin requests from {origin} are not allowed; start the "
                                                  f"server with --allow-origin {origin} to allow that site"},
                             extra, close=True)
            return
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, {"error": "invalid Content-Length header"}, extra, close=True)
                return
            if size > self.limit:
                if headers.get("expect", "").lower() != "100-continue" and size <= self.drain_limit:
                    await _drain(receive, self.drain_limit)
                await _send_json(send, 413, {"error": self._message(size)}, extra, close=True)
                return

        received = 0
        too_large = too_slow = False
        started = False
        t0 = time.monotonic()
        rate, grace = self.config.min_upload_rate, self.config.upload_grace

        body_done = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, too_large, too_slow, body_done
            # the body must keep up min_upload_rate after the grace period; once it is complete, receive() only
            # waits for a disconnect (FileResponse listens while it sends): no deadline then, or a download that
            # takes longer than the grace period (a 14 MB runtime on a slow link, a slow handler) is cut off
            if rate > 0 and not body_done:
                wait = t0 + grace + (received + 1) / rate - time.monotonic()
                try:
                    with anyio.fail_after(max(wait, 0.001)):
                        message = await receive()
                except TimeoutError:
                    too_slow = True
                    raise _BodyTooLarge() from None
            else:
                message = await receive()
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if (too_large or too_slow) and not started:
                return  # the app's answer to the aborted read is replaced by the 413 / 408 below
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not (too_large or too_slow) or started:
                raise
        if too_slow and not started:
            await _send_json(send, 408, {"error": f"the upload was too slow (under {rate / 1024:.0f} KB/s after "
                                                  f"{grace:g} s); send it again over a faster connection"},
                             extra, close=True)
            return
        if too_large and not started:
            await _drain(receive, self.drain_limit - received)
            await _send_json(send, 413, {"error": self._message(None)}, extra, close=True)

    def _message(self, size: int | None) -> str:
        got = f" ({size / 2**20:.1f} MB)" if size is not None else ""
        return (f"the request body is too large{got}: at most {self.limit / 2**20:.1f} MB in all is "
                f"accepted; send smaller images")


async def _drain(receive: Callable, budget: int) -> None:
    """Read and discard the rest of a request body, at most ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_json(send: Callable, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]],
                     close: bool = False) -> None:
    data = JSONResponse(body).body
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


# ------------------------------------------------------------------------------------------------------------
# Request parsing and validation
# ------------------------------------------------------------------------------------------------------------

@dataclass
class StylizeRequest:
    """A validated stylize request: decoded images and checked options."""

    content: Image.Image
    style: Image.Image
    method: str
    alpha: float
    preserve_color: bool
    max_size: int | None


def _text_field(form: Any, name: str) -> str | None:
    values = form.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(422, f"field {name!r} was sent {len(values)} times; send it once")
    value = values[0]
    if isinstance(value, UploadFile):
        raise ApiError(422, f"field {name!r} must be a plain form value, not a file")
    return value.strip()


def _file_field(form: Any, name: str, what: str) -> UploadFile:
    values = form.getlist(name)
    if not values:
        role = "the photo to stylize" if name == "content" else "the painting whose style to use"
        raise ApiError(422, f"missing field {name!r}: upload {role} as a file field named {name!r}")
    if len(values) > 1:
        raise ApiError(422, f"field {name!r} was sent {len(values)} times; send one {what}")
    value = values[0]
    if not isinstance(value, UploadFile):
        raise ApiError(422, f"field {name!r} must be a file upload (the {what}), not a text value")
    declared = (value.content_type or "").split(";")[0].strip().lower()
    if not (declared.startswith("image/") or declared in GENERIC_TYPES):
        raise ApiError(415, f"the {what} (field {name!r}) was sent as {declared!r}, which is not an image; "
                            f"upload a PNG, JPEG, WebP, BMP, TIFF or GIF image")
    return value


def parse_options(form: Any) -> tuple[str, float, bool, int | None]:
    """Check method, alpha, preserve_color and max_size (422 with a message for bad values)."""
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                            f"{', '.join(FORM_FIELDS)}")
    method = _text_field(form, "method") or "adain"
    raw = _text_field(form, "alpha")
    alpha = 1.0
    if raw:
        try:
            alpha = float(raw)
        except ValueError:
            raise ApiError(422, f"alpha must be a number between 0 and 1, got {raw[:40]!r}") from None
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ApiError(422, f"alpha must be between 0 (the photo) and 1 (full style), got {raw}")
    raw = (_text_field(form, "preserve_color") or "").lower()
    if raw not in TRUE_WORDS | FALSE_WORDS:
        raise ApiError(422, f"preserve_color must be true or false, got {raw[:40]!r}")
    preserve = raw in TRUE_WORDS
    raw = _text_field(form, "max_size")
    max_size = None
    if raw:
        try:
            max_size = int(raw)
        except ValueError:
            raise ApiError(422, f"max_size must be a whole number of pixels, got {raw[:40]!r}") from None
        if not 16 <= max_size <= MAX_SIZE_LIMIT:
            raise ApiError(422, f"max_size must be between 16 and {MAX_SIZE_LIMIT} pixels (or left out for "
                                f"the photo's full size), got {max_size}")
    return method, alpha, preserve, max_size


async def _read_upload(upload: UploadFile, name: str, what: str, limit: int) -> bytes:
    """Read an (already size-bounded) upload, refusing more than ``limit`` bytes with 413."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the {what} (field {name!r}) is larger than the limit of "
                            f"{limit / 2**20:.1f} MB; send a smaller image")
    if not data:
        raise ApiError(422, f"the {what} (field {name!r}) is empty (0 bytes); send the complete image file")
    return data


def _decode(data: bytes, label: str, max_pixels: int, max_size: int | None) -> Image.Image:
    """Fully decode and check one upload (runs on a worker thread, not the event loop)."""
    from impasto.errors import ImageError
    from impasto.io.images import load_image, resize_max

    try:
        return resize_max(load_image(data, max_pixels=max_pixels, name=label), max_size)
    except ImageError as exc:
        raise ApiError(422, str(exc)) from None


def _label(what: str, upload: UploadFile) -> str:
    """How an upload is called in messages: never used as a path."""
    name = (upload.filename or "").strip()
    name = "".join(ch for ch in name if ch.isprintable())[:80]
    return f"the {what} {name!r}" if name else f"the {what}"


# ------------------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------------------

def _run_job(pool: StylizerPool, req: StylizeRequest) -> Callable[[JobContext], tuple[bytes, dict[str, Any]]]:
    """The work function of one stylize job (runs on a worker thread)."""

    def work(ctx: JobContext) -> tuple[bytes, dict[str, Any]]:
        ctx.progress(0.02, "loading model")
        stylizer, lock = pool.get(req.method)
        ctx.progress(0.05, "waiting for the model")
        while not lock.acquire(timeout=min(max(ctx.remaining(), 0.05), 1.0)):
            ctx.check()  # another job of this method holds the model: wait, but not past the deadline

        def on_step(done: int, total: int) -> None:
            ctx.progress(0.1 + 0.8 * done / max(total, 1))

        try:
            ctx.progress(0.1, "stylizing")
            with cancellation(ctx.check):  # past the deadline the work stops at its next check: the worker is freed
                out = stylizer.stylize(req.content, req.style, alpha=req.alpha, preserve_color=req.preserve_color,
                                       max_size=req.max_size, progress=on_step)
        finally:
            lock.release()
        ctx.progress(0.92, "encoding")
        buf = io.BytesIO()
        out.save(buf, format="PNG", compress_level=3)
        return buf.getvalue(), {"width": out.width, "height": out.height}

    return work


def create_app(config: ServerConfig | None = None, *, stylizer_factory: Callable[[str], Any] | None = None
               ) -> FastAPI:
    """Build the FastAPI application (jobs start on the app's startup and stop on its shutdown).

    Args:
        config: server settings (defaults: :class:`ServerConfig`).
        stylizer_factory: ``method name -> object with Stylizer.stylize's signature``; default creates
            :class:`impasto.pipeline.Stylizer` objects (tests may substitute a fake).
    """
    config = config or ServerConfig()
    manager_box: dict[str, JobManager] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager_box["jobs"] = JobManager(config.workers, config.queue, config.timeout,
                                         max_results=config.max_results, result_ttl=config.result_ttl,
                                         max_result_bytes=int(config.max_result_mb * 2**20))
        try:
            yield
        finally:
            manager_box.pop("jobs").shutdown(wait=2.0)

    # FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI / ReDoc from files shipped in the package
    # (FastAPI's own load them from a CDN, so they were blank without internet access)
    app = FastAPIOffline(title="impasto", version=_version(), lifespan=lifespan,
                  description="Arbitrary artistic style transfer: upload a photo and a painting, get the "
                              "photo painted in that style. Jobs are queued: poll their status, then fetch "
                              "the PNG.")
    app.state.config = config
    pool = StylizerPool(config.device, config.style_size, stylizer_factory)
    catalog = MethodCatalog()
    intake = anyio.Semaphore(config.intake_slots)
    intake_stats = {"refused": 0, "receiving": 0}

    @contextlib.asynccontextmanager
    async def intake_slot() -> AsyncIterator[None]:
        """An intake slot, waited for at most ``slot_wait`` seconds (then 503 with Retry-After)."""
        with anyio.move_on_after(config.slot_wait) as waited:
            await intake.acquire()
        if waited.cancelled_caught:
            intake_stats["refused"] += 1
            raise ApiError(503, f"all {config.intake_slots} image decoding slots stayed busy for "
                                f"{config.slot_wait:g} s; try again shortly", headers={"Retry-After": "5"})
        try:
            yield
        finally:
            intake.release()
    app.state.pool, app.state.catalog = pool, catalog

    def jobs() -> JobManager:
        if "jobs" not in manager_box:
            raise ApiError(503, "the server is not running (starting or shutting down)")
        return manager_box["jobs"]

    app.state.jobs = jobs

    # -- errors: always {"error": "..."} -------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page or endpoint: {request.url.path} (the API is under /v1, docs at /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 400:
            message = f"the request could not be parsed: {message}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(ImpastoError)
    async def _impasto_error(request: Request, exc: ImpastoError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal server error (see the server log)"}, status_code=500)

    # -- page ----------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    from impasto.server.browser import add_browser_routes

    add_browser_routes(app)  # "in my browser" mode: /v1/browser, /ort/{file}, /models/{name}.onnx

    # -- API -----------------------------------------------------------------------------------------------
    @app.get("/healthz", summary="Liveness, queue occupancy and limits")
    async def healthz() -> dict[str, Any]:
        busy = config.intake_slots - intake.value
        stats = jobs().stats()
        saturated = busy >= config.intake_slots or stats["waiting"] >= config.queue
        return {"status": "ok", "saturated": saturated, "version": _version(), "jobs": stats,
                "uploads": {"receiving": intake_stats["receiving"], "decoding": busy, "slots": config.intake_slots,
                            "refused": intake_stats["refused"]},
                "models_loaded": pool.loaded(),
                "limits": {"max_upload_mb": config.max_upload_mb, "max_pixels": config.max_pixels,
                           "queue": config.queue, "workers": config.workers, "timeout_s": config.timeout,
                           "max_size": MAX_SIZE_LIMIT}}

    @app.get("/v1/methods", summary="The style-transfer methods and whether each runs here")
    async def methods() -> dict[str, Any]:
        rows = await anyio.to_thread.run_sync(catalog.rows)
        default = "adain" if any(r["name"] == "adain" and r["available"] for r in rows) else next(
            (r["name"] for r in rows if r["available"]), None)
        return {"methods": rows, "default": default}

    @app.post("/v1/stylize", status_code=202, summary="Queue a stylize job (multipart upload)",
              openapi_extra=_STYLIZE_OPENAPI)
    async def stylize(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            raise ApiError(415, f"send multipart/form-data with file fields 'content' and 'style' (and "
                                f"optional method, alpha, preserve_color, max_size), not "
                                f"{ctype or 'no content type'!r}")
        manager = jobs()
        try:
            if not manager.has_room():
                manager.record_rejection()
                async for _ in request.stream():  # read (bounded by RequestGuard) so the client gets the answer
                    pass
                raise ApiError(429, _busy_message(manager), headers={"Retry-After": "2"})
            intake_stats["receiving"] += 1
            try:
                with anyio.fail_after(config.upload_timeout):
                    req = await _intake(request, config, catalog, intake_slot)
            finally:
                intake_stats["receiving"] -= 1
        except TimeoutError:
            raise ApiError(408, f"the upload took longer than {config.upload_timeout:g} s; "
                                f"try again with smaller images") from None
        except ClientDisconnect:
            raise ApiError(400, "the client disconnected before the upload was complete") from None
        try:
            job_id = manager.submit(_run_job(pool, req))
        except QueueFull as exc:
            raise ApiError(429, str(exc), headers={"Retry-After": "2"}) from None
        body = {"job_id": job_id, "status": "queued", "status_url": f"/v1/jobs/{job_id}",
                "result_url": f"/v1/jobs/{job_id}/result"}
        return JSONResponse(body, status_code=202, headers={"Location": body["status_url"]})

    @app.get("/v1/jobs/{job_id}", summary="A job's status: queued, running (with progress), done or error")
    async def job_status(job_id: str) -> dict[str, Any]:
        view = jobs().get(job_id)
        if view is None:
            raise ApiError(404, _unknown_job(job_id))
        return {"job_id": view.id, "status": view.status, "progress": int(round(view.progress * 100)),
                "stage": view.stage, "error": view.error, "queue_position": view.queue_position,
                "elapsed_s": round(view.elapsed, 2), "status_url": f"/v1/jobs/{view.id}",
                "result_url": f"/v1/jobs/{view.id}/result", **view.info}

    @app.get("/v1/jobs/{job_id}/result", summary="The result PNG of a finished job",
             responses={200: {"content": {"image/png": {}}}, 404: {"description": "unknown job"},
                        409: {"description": "not done yet, or failed"}})
    async def job_result(job_id: str) -> Response:
        manager = jobs()
        view = manager.get(job_id)
        if view is None:
            raise ApiError(404, _unknown_job(job_id))
        data = manager.result(job_id) if view.status == DONE else None
        if data is None:
            if view.status == "error":
                raise ApiError(409, f"job {job_id} failed, so it has no result: {view.error}")
            raise ApiError(409, f"job {job_id} is not done yet ({view.status}, {int(view.progress * 100)}%); "
                                f"poll /v1/jobs/{job_id} until its status is 'done'")
        return Response(data, media_type="image/png", headers={
            "Content-Disposition": f'inline; filename="impasto-{job_id[:12]}.png"',
            "Cache-Control": "private, max-age=600"})

    app.add_middleware(RequestGuard, config=config, limit=config.max_body_bytes,
                       drain_limit=max(4 * config.max_body_bytes, 64 * 2**20))
    return app


async def _intake(request: Request, config: ServerConfig, catalog: MethodCatalog,
                  slot: Callable[[], contextlib.AbstractAsyncContextManager]) -> StylizeRequest:
    """Parse, check and decode the upload; raises ApiError with the right status for every problem.

    The body is received and parsed without an intake slot (Starlette spools file parts over 1 MB to disk, and
    RequestGuard cuts bodies slower than the minimum rate), so slow clients hold no slot; ``slot()`` is entered
    only to read the files into memory and decode them, the part whose memory the slots bound.
    """
    async with request.form(max_files=2, max_fields=len(FORM_FIELDS), max_part_size=64 * 1024) as form:
        method, alpha, preserve, max_size = parse_options(form)
        content_file = _file_field(form, "content", "photo")
        style_file = _file_field(form, "style", "painting")
        await anyio.to_thread.run_sync(catalog.check, method)
        content_label, style_label = _label("photo", content_file), _label("painting", style_file)
        async with slot():
            content_bytes = await _read_upload(content_file, "content", "photo", config.max_upload_bytes)
            style_bytes = await _read_upload(style_file, "style", "painting", config.max_upload_bytes)
            content = await anyio.to_thread.run_sync(_decode, content_bytes, content_label, config.max_pixels,
                                                     max_size)
            del content_bytes
            style = await anyio.to_thread.run_sync(_decode, style_bytes, style_label, config.max_pixels,
                                                   config.style_size)
    return StylizeRequest(content, style, method, alpha, preserve, max_size)


def _busy_message(manager: JobManager) -> str:
    return (f"the server is busy: {manager.queue_size} job(s) are already waiting (queue limit); "
            f"try again in a few seconds")


def _unknown_job(job_id: str) -> str:
    return (f"unknown job {job_id[:64]!r}: it never existed or its result expired "
            f"(finished jobs are kept for a limited time)")


def _version() -> str:
    from impasto import __version__

    return __version__


_STYLIZE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["content", "style"],
            "properties": {
                "content": {"type": "string", "format": "binary", "description": "the photo"},
                "style": {"type": "string", "format": "binary", "description": "the painting"},
                "method": {"type": "string", "default": "adain", "description": "see GET /v1/methods"},
                "alpha": {"type": "number", "minimum": 0, "maximum": 1, "default": 1,
                          "description": "style strength (0 = the photo, 1 = full style)"},
                "preserve_color": {"type": "boolean", "default": False,
                                   "description": "keep the photo's colours"},
                "max_size": {"type": "integer", "minimum": 16, "maximum": MAX_SIZE_LIMIT,
                             "description": "cap on the long side of the result (default: the photo's size)"},
            },
        }}},
    },
    "responses": {
        "202": {"description": "queued: {job_id, status, status_url, result_url}"},
        "413": {"description": "upload too large"},
        "415": {"description": "not multipart, or a file that is not an image"},
        "422": {"description": "bad option or unreadable image ({\"error\": ...})"},
        "429": {"description": "the queue is full; retry later"},
    },
}


# ------------------------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------------------------

def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), for uvicorn to serve on; ConfigError naming --host/--port when the address
    is taken or cannot be used (uvicorn would log it only after the start-up banner, and exit with code 3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {host}:{port}: the port is in use (another server?); stop it or "
                              "choose another --port") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and "
                          "--port") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host if sock.family == socket.AF_INET else f'[{host}]'}:{port}"


def _json_errors_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol whose own 400 answer (to a request it cannot parse, e.g. raw non-UTF-8 bytes in
    the path) has the API's JSON error shape instead of text/plain."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonErrorsH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": f"invalid HTTP request ({msg.rstrip('.')}); send a valid HTTP/1.1 request "
                                        "with a percent-encoded path"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JsonErrorsH11Protocol


def run_server(config: ServerConfig, announce: Callable[[str], None] | None = None) -> None:
    """Serve the app with uvicorn until interrupted (``impasto serve``).

    The address is bound first (ConfigError if it cannot be); ``announce(url)`` is then called with the address
    served (the real port for ``port=0``).
    """
    import uvicorn

    if config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: the server has no authentication; anyone who can reach this address "
                       "can use it", config.host)
    sock = _listen(config.host, config.port)
    try:
        if announce is not None:
            announce(_url(sock))
        server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="info", timeout_keep_alive=5,
                                               timeout_graceful_shutdown=5, http=_json_errors_protocol()))
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def serve_in_thread(config: ServerConfig | None = None, app: FastAPI | None = None,
                    startup_timeout: float = 30.0) -> Iterator[str]:
    """Run a real uvicorn server on a background thread; yields its base URL (``port=0``: a free port).

    For tests, notebooks and embedding. The server stops (and its job workers with it) on exit.
    """
    import uvicorn

    config = config or ServerConfig(port=0)
    app = app or create_app(config)
    sock = _listen(config.host, config.port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5,
                                           timeout_graceful_shutdown=5, http=_json_errors_protocol()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="impasto-server",
                              daemon=True)
    thread.start()
    try:
        end = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the impasto server did not start (see the log above)")
            time.sleep(0.02)
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()

