"""Settings of the web server (:class:`ServerConfig`): the ``impasto serve`` options plus limits for embedding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from impasto.errors import ConfigError


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
        name = host_name(host_header)
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
        name = host_name(origin.split("://", 1)[-1])
        return name == host_name(host_header) and self.host_allowed(host_header)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: two files plus room for the form fields and multipart framing."""
        return 2 * self.max_upload_bytes + 256 * 1024


def host_name(host: str) -> str:
    """``name`` of a ``name[:port]`` / ``[v6]:port`` Host value, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
