"""Process-level settings that make CPU inference faster: freed memory is kept for reuse.

PyTorch allocates every activation afresh. glibc's malloc serves blocks above its mmap threshold (at most 32 MiB)
with a new mmap, which the kernel zero-fills page by page on first touch and unmaps on free: at 1024 px a
16-channel activation is 32-64 MB, and a ReLU into a fresh buffer took about 4x as long as into a reused one.
With mmap off and trimming off, freed blocks stay in the heap and the next activation of the same size reuses
them: 5-level WCT on vgg19-16x at 1024 px ran 1.5-2x faster, for about a quarter more peak memory (memory is
returned to the system only when the process ends). Measured with ``benchmarks/bench_inference.py``; the numbers
are in benchmarks/README.md, "Kernel measurements".

The ``impasto`` command (stylize, video, serve) calls :func:`reuse_freed_memory` in its own process; the library
(:class:`~impasto.pipeline.Stylizer`) never changes this process-wide setting, so programs that embed impasto
call it themselves if they want it. Set the environment variable ``IMPASTO_MALLOC=system`` to leave malloc alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["cancellation", "check_cancelled", "current_progress", "report_progress", "reporting",
           "reuse_freed_memory", "malloc_tuned"]

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_applied: bool | None = None  # None: not tried yet


def reuse_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse (no mmap for large blocks, no trimming). Idempotent.

    Returns True when the setting is in effect (Linux with glibc, ``IMPASTO_MALLOC`` not ``system``), False when
    it was left alone (other C libraries, other systems, or opted out).
    """
    global _applied
    if _applied is None:
        _applied = os.environ.get("IMPASTO_MALLOC", "").lower() != "system" and _glibc_mallopt(
            (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20)
        )
    return _applied


def _glibc_mallopt(*settings: tuple[int, int]) -> bool:
    """Apply mallopt(param, value) settings; False where there is no glibc (other systems, musl) or one fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has mallopt but not this)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return all(mallopt(param, value) == 1 for param, value in settings)


def malloc_tuned() -> bool:
    """Whether :func:`reuse_freed_memory` has put its setting in effect in this process."""
    return bool(_applied)


# ---------------------------------------------------------------------------------- per-call thread hooks
@contextlib.contextmanager
def _bound(slot: threading.local, value: Any) -> Iterator[None]:
    """Set ``slot.value`` on this thread for the block, then restore what it was (blocks nest)."""
    previous = getattr(slot, "value", None)
    slot.value = value
    try:
        yield
    finally:
        slot.value = previous


# ------------------------------------------------------------------------------------------- cancellation
_cancel = threading.local()


@contextlib.contextmanager
def cancellation(check: Callable[[], None]) -> Iterator[None]:
    """Within the block, :func:`check_cancelled` on this thread calls ``check`` (which raises to stop the work).

    The server runs each job under ``cancellation(job.check)``, so a job past its deadline stops at the next check
    (between tiles, style-swap blocks, WCT levels, optimisation steps) and its worker is free again.
    """
    with _bound(_cancel, check):
        yield


def check_cancelled() -> None:
    """Raise if the work running on this thread was cancelled (see :func:`cancellation`); a no-op otherwise."""
    check = getattr(_cancel, "value", None)
    if check is not None:
        check()


# ---------------------------------------------------------------------------------------------- progress
_progress = threading.local()


@contextlib.contextmanager
def reporting(progress: Callable[[int, int], None] | None) -> Iterator[None]:
    """Within the block, :func:`report_progress` on this thread calls ``progress(done, total)`` (None: nothing).

    The per-call progress of :meth:`impasto.pipeline.Stylizer.stylize` reaches the methods this way, not through
    an attribute of the shared method object, so one Stylizer serves concurrent calls each with its own progress.
    """
    with _bound(_progress, progress):
        yield


def current_progress() -> Callable[[int, int], None] | None:
    """The progress callback of the :func:`reporting` block this thread is in (None outside one)."""
    return getattr(_progress, "value", None)


def report_progress(done: int, total: int) -> None:
    """Report ``done`` of ``total`` steps to the current :func:`reporting` block's callback; a no-op outside one."""
    callback = current_progress()
    if callback is not None:
        callback(done, total)
