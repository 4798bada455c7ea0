"""impasto's web app and HTTP API: ``impasto serve``, or ``create_app(ServerConfig(...))`` for any ASGI server.

See :mod:`impasto.server.app` for the endpoints and the modules the app is made of, :mod:`impasto.server.schemas` for
the stylize form (declared once) and :mod:`impasto.server.jobs` for the job queue.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerConfig", "create_app", "run_server", "serve_in_thread"]


def __getattr__(name: str) -> Any:  # lazy: importing impasto.server does not import FastAPI
    if name in __all__:
        from impasto.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'impasto.server' has no attribute {name!r}")
