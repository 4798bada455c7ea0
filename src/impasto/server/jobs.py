"""A bounded job queue for the web server: worker threads, a bounded wait queue, timeouts, capped results.

The event loop only calls :meth:`JobManager.submit` (never blocks: a full queue raises :class:`QueueFull` at
once, which the server answers with 429) and :meth:`JobManager.get`. Work runs on the worker threads.

A running torch call cannot be killed, so the per-job timeout is cooperative: the work function receives a
:class:`JobContext` whose :meth:`~JobContext.progress` and :meth:`~JobContext.check` raise
:class:`JobTimedOut` past the deadline (call them between steps and from progress callbacks). A job whose
worker is stuck past its deadline is reported as failed ("timed out") at once; whatever the worker produces
afterwards is discarded.

Finished jobs (done or failed) are kept in memory for at most ``result_ttl`` seconds, and only the
``max_results`` most recently used ones whose results total at most ``max_result_bytes``: memory stays bounded
however many jobs the server runs. A job evicted that way is unknown afterwards (404).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, ERROR = "queued", "running", "done", "error"


class QueueFull(Exception):
    """The wait queue is full; the caller should retry later (HTTP 429)."""


class JobTimedOut(Exception):
    """Raised inside a job past its deadline (by :meth:`JobContext.check` / :meth:`JobContext.progress`)."""


@dataclass
class Job:
    """One unit of work and its state; read it through :meth:`JobManager.get` (a consistent snapshot)."""

    id: str
    fn: Callable[[JobContext], tuple[bytes, dict[str, Any]]] | None
    timeout: float
    status: str = QUEUED
    progress: float = 0.0  #: fraction in [0, 1]
    stage: str = "queued"
    error: str | None = None
    result: bytes | None = None
    info: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None

    @property
    def deadline(self) -> float | None:
        return None if self.started is None else self.started + self.timeout


@dataclass(frozen=True)
class JobView:
    """An immutable snapshot of a job, safe to read from any thread."""

    id: str
    status: str
    progress: float
    stage: str
    error: str | None
    info: dict[str, Any]
    result_bytes: int
    queue_position: int | None
    elapsed: float


class JobContext:
    """Given to a running job: progress reporting and the cooperative deadline check."""

    def __init__(self, manager: JobManager, job: Job) -> None:
        self._manager = manager
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.id

    def remaining(self) -> float:
        """Seconds left before the deadline (0 when past it)."""
        deadline = self._job.deadline
        return math.inf if deadline is None else max(0.0, deadline - time.monotonic())

    def check(self) -> None:
        """Raise :class:`JobTimedOut` if the job is past its deadline (or was already marked failed)."""
        job = self._job
        if job.status != RUNNING or (job.deadline is not None and time.monotonic() > job.deadline):
            raise JobTimedOut(f"timed out after {job.timeout:g} s")

    def progress(self, fraction: float, stage: str | None = None) -> None:
        """Record progress (a fraction in [0, 1], never decreasing) and check the deadline."""
        self.check()
        with self._manager._lock:
            self._job.progress = max(self._job.progress, min(1.0, max(0.0, float(fraction))))
            if stage is not None:
                self._job.stage = stage


class JobManager:
    """A pool of ``workers`` threads fed by a queue of at most ``queue_size`` waiting jobs.

    Args:
        workers: number of worker threads (jobs running at the same time).
        queue_size: jobs that may wait for a worker; one more is refused with :class:`QueueFull`.
        timeout: seconds a job may run (from when a worker picks it up) before it is failed as "timed out".
        max_results: finished jobs kept (most recently used first).
        result_ttl: seconds a finished job is kept after it finished.
        max_result_bytes: total size of the kept results.
    """

    def __init__(self, workers: int = 1, queue_size: int = 8, timeout: float = 120.0, *,
                 max_results: int = 64, result_ttl: float = 900.0,
                 max_result_bytes: int = 256 * 2**20) -> None:
        if workers < 1 or queue_size < 0 or timeout <= 0 or max_results < 1:
            raise ValueError("workers >= 1, queue_size >= 0, timeout > 0 and max_results >= 1 are required")
        self.workers = workers
        self.queue_size = queue_size
        self.timeout = float(timeout)
        self.max_results = max_results
        self.result_ttl = float(result_ttl)
        self.max_result_bytes = int(max_result_bytes)
        self._lock = threading.Lock()
        # Capacity is enforced by ``_waiting`` (under the lock), so the queue itself is unbounded; it never
        # holds more than queue_size jobs plus one stop marker per worker.
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting: list[str] = []  # ids of queued jobs, in order
        self._active: dict[str, Job] = {}  # queued and running jobs
        self._finished: OrderedDict[str, Job] = OrderedDict()  # done / error, least recently used first
        self._result_bytes = 0
        self._closed = False
        self.counts = {"submitted": 0, "rejected": 0, "done": 0, "error": 0, "timed_out": 0}
        self._threads = [threading.Thread(target=self._worker, name=f"impasto-job-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # -- public API ----------------------------------------------------------------------------------------
    def submit(self, fn: Callable[[JobContext], tuple[bytes, dict[str, Any]]], timeout: float | None = None
               ) -> str:
        """Queue ``fn(context) -> (result bytes, info dict)``; returns the job id. Never blocks.

        Raises:
            QueueFull: ``queue_size`` jobs are already waiting.
            RuntimeError: the manager was shut down.
        """
        job = Job(id=uuid.uuid4().hex, fn=fn, timeout=float(timeout or self.timeout))
        with self._lock:
            if self._closed:
                raise RuntimeError("the job manager is shut down")
            self._expire_locked()
            if len(self._waiting) >= self.queue_size:
                self.counts["rejected"] += 1
                raise QueueFull(f"the server is busy: {len(self._waiting)} job(s) are already waiting "
                                f"(queue limit {self.queue_size}); try again in a few seconds")
            self._active[job.id] = job
            self._waiting.append(job.id)
            self.counts["submitted"] += 1
        self._queue.put(job)
        return job.id

    def get(self, job_id: str) -> JobView | None:
        """A snapshot of the job, or None if it is unknown or was evicted."""
        with self._lock:
            self._expire_locked()
            job = self._active.get(job_id)
            if job is None:
                job = self._finished.get(job_id)
                if job is None:
                    return None
                self._finished.move_to_end(job_id)
            return self._view_locked(job)

    def result(self, job_id: str) -> bytes | None:
        """The result bytes of a finished job (None if unknown or not done)."""
        with self._lock:
            self._expire_locked()
            job = self._finished.get(job_id)
            if job is None or job.status != DONE:
                return None
            self._finished.move_to_end(job_id)
            return job.result

    def stats(self) -> dict[str, Any]:
        """Queue and store occupancy plus counters (for the health endpoint)."""
        with self._lock:
            self._expire_locked()
            return {"workers": self.workers, "queue_limit": self.queue_size, "waiting": len(self._waiting),
                    "running": len(self._active) - len(self._waiting), "finished_kept": len(self._finished),
                    "result_bytes": self._result_bytes, **self.counts}

    def has_room(self) -> bool:
        """Whether a job submitted now would be accepted (a hint: another request may take the slot first)."""
        with self._lock:
            return not self._closed and len(self._waiting) < self.queue_size

    def record_rejection(self) -> None:
        """Count a request refused because the queue was full (before :meth:`submit` was even tried)."""
        with self._lock:
            self.counts["rejected"] += 1

    def shutdown(self, wait: float = 5.0) -> None:
        """Stop accepting jobs, fail the queued ones, let the workers finish (waiting up to ``wait`` s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for job_id in list(self._waiting):
                self._finish_locked(self._active[job_id], ERROR, error="the server is shutting down")
            self._waiting.clear()
        for _ in self._threads:
            self._queue.put(None)
        end = time.monotonic() + wait
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    # -- internals -----------------------------------------------------------------------------------------
    def _view_locked(self, job: Job) -> JobView:
        pos = self._waiting.index(job.id) if job.status == QUEUED and job.id in self._waiting else None
        end = job.finished if job.finished is not None else time.monotonic()
        return JobView(id=job.id, status=job.status, progress=job.progress, stage=job.stage, error=job.error,
                       info=dict(job.info), result_bytes=len(job.result or b""), queue_position=pos,
                       elapsed=end - job.created)

    def _finish_locked(self, job: Job, status: str, *, error: str | None = None,
                       result: bytes | None = None, info: dict[str, Any] | None = None) -> None:
        job.status, job.error, job.finished, job.fn = status, error, time.monotonic(), None
        job.stage = status
        if status == DONE:
            job.result, job.progress = result, 1.0
            job.info.update(info or {})
            self._result_bytes += len(result or b"")
        self.counts["done" if status == DONE else "error"] += 1
        self._active.pop(job.id, None)
        self._finished[job.id] = job
        self._evict_locked()

    def _expire_locked(self) -> None:
        """Fail running jobs past their deadline and drop finished jobs past their TTL."""
        now = time.monotonic()
        for job in list(self._active.values()):
            if job.status == RUNNING and job.deadline is not None and now > job.deadline:
                self.counts["timed_out"] += 1
                self._finish_locked(job, ERROR, error=f"timed out after {job.timeout:g} s")
        while self._finished:
            job_id, job = next(iter(self._finished.items()))
            if job.finished is not None and now - job.finished > self.result_ttl:
                self._drop_locked(job_id)
            else:
                break
        self._evict_locked()

    def _evict_locked(self) -> None:
        while self._finished and (len(self._finished) > self.max_results
                                  or self._result_bytes > self.max_result_bytes):
            self._drop_locked(next(iter(self._finished)))

    def _drop_locked(self, job_id: str) -> None:
        job = self._finished.pop(job_id)
        self._result_bytes -= len(job.result or b"")
        job.result = None

    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.status != QUEUED:  # failed while waiting (shutdown)
                    continue
                self._waiting.remove(job.id)
                job.status, job.stage, job.started = RUNNING, "starting", time.monotonic()
                fn = job.fn
            if fn is None:
                continue
            ctx = JobContext(self, job)
            try:
                result, info = fn(ctx)
                ctx.check()
            except JobTimedOut as exc:
                self._fail(job, str(exc), timed_out=True)
            except Exception as exc:  # reported to the client; the worker keeps serving
                if not _is_user_error(exc):
                    logger.exception("job %s failed", job.id)
                self._fail(job, str(exc) or type(exc).__name__)
            else:
                with self._lock:
                    if job.status == RUNNING:
                        self._finish_locked(job, DONE, result=result, info=info)
            finally:
                job.fn = None

    def _fail(self, job: Job, message: str, timed_out: bool = False) -> None:
        with self._lock:
            if job.status == RUNNING:  # not already failed by the deadline check
                if timed_out:
                    self.counts["timed_out"] += 1
                self._finish_locked(job, ERROR, error=message)


def _is_user_error(exc: BaseException) -> bool:
    from impasto.errors import ImpastoError

    return isinstance(exc, ImpastoError)
