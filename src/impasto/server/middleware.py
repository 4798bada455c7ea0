"""What every request passes through: the ASGI guard (Host and Origin checks, body size and upload rate limits,
security headers) and the error handlers that give every error the JSON shape ``{"error": "..."}``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from impasto.errors import ImpastoError
from impasto.server.config import ServerConfig, host_name

logger = logging.getLogger(__name__)

#: Content-Security-Policy of the page: everything from this server, nothing from elsewhere.
#: 'wasm-unsafe-eval' lets the page compile onnxruntime-web's WebAssembly ("in my browser" mode); no JS eval.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


class ApiError(Exception):
    """A client error: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


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
            await self._drain_small_body(headers, receive)
            await _send_json(send, 400, {"error": f"this server does not answer to the host name {host!r}; start it "
                                                  f"with --allow-host {host_name(host) or 'NAME'} to allow it"},
                             extra, close=True)
            return
        origin = headers.get("origin")
        if origin is not None and scope.get("method") not in ("GET", "HEAD", "OPTIONS") \
                and not self.config.origin_allowed(origin, host):
            await self._drain_small_body(headers, receive)
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
            nonlocal started, body_done
            if (too_large or too_slow) and not started:
                return  # the app's answer to the aborted read is replaced by the 413 / 408 below
            if message["type"] == "http.response.start":
                if not body_done:  # an answer before the upload was read (415, 503, ...): read the rest first
                    await self._drain_small_body(headers, receive, received)
                    body_done = True
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

    async def _drain_small_body(self, headers: dict[str, str], receive: Callable, received: int = 0) -> None:
        """Before answering a request whose body was not read (refused on its headers, or answered early), read and
        discard the rest of a body of up to ``limit`` bytes: closing a socket with unread bytes in it makes the
        kernel reset the connection, and the client (which sends its whole body before reading) would lose the
        answer. Bounded in time by the upload grace period so that a slow client cannot hold the server with it;
        skipped for ``Expect: 100-continue`` clients, which wait for the answer before sending."""
        declared = headers.get("content-length", "")
        if not declared.isdigit() or not 0 < int(declared) <= self.limit or received >= int(declared) \
                or headers.get("expect", "").lower() == "100-continue":
            return
        with anyio.move_on_after(max(self.config.upload_grace, 0.1)):
            await _drain(receive, int(declared) - received)

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


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with ``{"error": "..."}``: ApiError, HTTP errors, validation errors, library errors (422)
    and anything unexpected (500, logged)."""

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
