"""impasto's web app and HTTP API (FastAPI): one HTML page at ``/`` and a small JSON API under ``/v1``.

    POST /v1/stylize          multipart: content, style (files), method, alpha, preserve_color, max_size
                              -> 202 {job_id, status, status_url, result_url}
    GET  /v1/jobs/{id}        -> {status: queued | running | done | error, progress (%), stage, error, ...}
    GET  /v1/jobs/{id}/result -> image/png (404 unknown job, 409 not done yet or failed)
    GET  /v1/methods          -> the methods, whether each runs here, and why not
    GET  /healthz             -> {"status": "ok", "jobs": {...}, "limits": {...}}
    GET  /docs, /redoc        -> OpenAPI docs (Swagger UI / ReDoc served from the package: they work offline)
    GET  /v1/browser, /ort/*, /models/*.onnx -> "in my browser" mode (:mod:`impasto.server.browser`)

This module assembles the app (:func:`create_app`) and runs it (:func:`run_server`, :func:`serve_in_thread`); the
parts live beside it:

    config.py      ServerConfig: the ``impasto serve`` options and limits
    schemas.py     the stylize form (the one declaration of its fields) and the response models
    routes.py      the endpoints
    intake.py      receiving uploads: the upload route's guards, decoding slots, reading and decoding images
    middleware.py  Host/Origin checks, body size and rate limits, security headers, the JSON error handlers
    pool.py        one Stylizer per method, the method catalog, the work function of a stylize job
    jobs.py        the bounded job queue and its worker threads
    state.py       what the routes share (``app.state.server``)

Every error is answered with a JSON ``{"error": "..."}`` body. Run it with ``impasto serve`` (binds 127.0.0.1 by
default: the server has no authentication).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from impasto.errors import ConfigError
from impasto.extras import extra_error

try:  # the [server] extra
    import python_multipart  # noqa: F401  (the form uploads, >= 0.0.13; before the routes declare their forms)
    import uvicorn  # noqa: F401  (checked here, used by run_server)
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline
except ImportError as exc:
    raise extra_error(exc, "server") from None
from impasto.server.config import ServerConfig
from impasto.server.intake import IntakeSlots
from impasto.server.jobs import JobManager
from impasto.server.middleware import RequestGuard, install_error_handlers
from impasto.server.pool import MethodCatalog, StylizerPool
from impasto.server.routes import STATIC_DIR, _version, router, uploads
from impasto.server.state import ServerState

__all__ = ["STATIC_DIR", "ServerConfig", "create_app", "run_server", "serve_in_thread"]

logger = logging.getLogger(__name__)


def create_app(config: ServerConfig | None = None, *, stylizer_factory: Callable[[str], Any] | None = None
               ) -> FastAPI:
    """Build the FastAPI application (jobs start on the app's startup and stop on its shutdown).

    Args:
        config: server settings (defaults: :class:`ServerConfig`).
        stylizer_factory: ``method name -> object with Stylizer.stylize's signature``; default creates
            :class:`impasto.pipeline.Stylizer` objects (tests may substitute a fake).
    """
    config = config or ServerConfig()
    state = ServerState(config, StylizerPool(config.device, config.style_size, stylizer_factory), MethodCatalog(),
                        IntakeSlots(config.intake_slots, config.slot_wait))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.manager = JobManager(config.workers, config.queue, config.timeout, max_results=config.max_results,
                                   result_ttl=config.result_ttl, max_result_bytes=int(config.max_result_mb * 2**20))
        try:
            yield
        finally:
            manager, state.manager = state.manager, None
            manager.shutdown(wait=2.0)

    # FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI / ReDoc from files shipped in the package
    # (FastAPI's own load them from a CDN, so they were blank without internet access)
    app = FastAPIOffline(title="impasto", version=_version(), lifespan=lifespan,
                         description="Arbitrary artistic style transfer: upload a photo and a painting, get the "
                                     "photo painted in that style. Jobs are queued: poll their status, then fetch "
                                     "the PNG.")
    app.state.server = state
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(uploads)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    from impasto.server.browser import add_browser_routes

    add_browser_routes(app)  # "in my browser" mode: /v1/browser, /ort/{file}, /models/{name}.onnx
    _inline_form_schemas(app)
    app.add_middleware(RequestGuard, config=config, limit=config.max_body_bytes,
                       drain_limit=max(4 * config.max_body_bytes, 64 * 2**20))
    return app


def _inline_form_schemas(app: FastAPI) -> None:
    """Show form bodies' fields in the operation itself: FastAPI refers to a form model's schema by ``$ref``
    (``#/components/schemas/StylizeForm``); clients reading ``requestBody`` find its properties in place."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            components = spec.get("components", {}).get("schemas", {})
            for operation in (op for path in spec.get("paths", {}).values() for op in path.values()):
                content = operation.get("requestBody", {}).get("content", {})
                for media in ("multipart/form-data", "application/x-www-form-urlencoded"):
                    ref = content.get(media, {}).get("schema", {}).get("$ref", "")
                    if ref.startswith("#/components/schemas/"):
                        content[media]["schema"] = components[ref.rsplit("/", 1)[1]]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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

