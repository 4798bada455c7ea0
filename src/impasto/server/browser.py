"""The web page's "in my browser" mode: onnxruntime-web and exported models, served for the browser to run.

    GET /v1/browser          -> {available, reason, command, runtime: {...}, models: {name: {url, available, reason}}}
    GET /ort/{file}          -> the onnxruntime-web files fetched by ``impasto web-assets`` (.wasm as application/wasm)
    GET /models/{name}.onnx  -> the method's float32 ONNX graph (:func:`impasto.export.export_onnx`: inputs content,
                                style 1 x 3 x H x W RGB in [0, 1] and alpha [1]; output image, same layout)

Photos never reach the server in this mode: the page decodes and resizes them with the File API and canvas, runs the
graph with onnxruntime-web (wasm backend) and draws the result. Each model is exported once into
``~/.cache/impasto/onnx`` (``IMPASTO_ONNX_DIR``), under a name that fingerprints the weights, impasto and torch
versions, and reused. Nothing is downloaded here: without the onnxruntime-web files the page shows the mode
disabled, with the command that fetches them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

from impasto import webassets
from impasto.errors import ImpastoError

ENV_MODELS = "IMPASTO_ONNX_DIR"
OPSET = 18
#: Media types of the served runtime files (``.mjs`` is imported as a module: browsers need a JavaScript type).
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
               ".wasm": "application/wasm"}

__all__ = ["add_browser_routes", "model_dir", "exported_model", "browser_info"]


def model_dir() -> Path:
    """Where exported models are cached: ``IMPASTO_ONNX_DIR`` or ``~/.cache/impasto/onnx``."""
    env = os.environ.get(ENV_MODELS)
    return Path(env).expanduser() if env else webassets.cache_root() / "onnx"


#: the methods the page runs in the visitor's browser: exported graphs tested there (tests/server/
#: test_server_browser_local.py). SANet and IEContraAST export too (impasto export), but their attention over every
#: style position has not been tried in onnxruntime-web's wasm backend, so the page offers them on the server only.
BROWSER_METHODS = ("adain", "microast")


def _exportable() -> tuple[str, ...]:
    return BROWSER_METHODS


def _fingerprint(module: Any, method: str) -> str:
    """A short hash of what decides the exported graph: weights, method, opset, impasto and torch versions."""
    import torch

    from impasto import __version__

    h = hashlib.sha256(f"{method}|{OPSET}|{__version__}|{torch.__version__}".encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


_export_lock = threading.Lock()
_paths: dict[tuple[str, str], Path] = {}


def exported_model(method: str) -> Path:
    """The cached float32 ONNX file of ``method``, exported on first use (thread-safe; ImpastoError if it cannot)."""
    from impasto.export import export_module, export_onnx

    with _export_lock:  # one export at a time: a second request for the same model waits for the file
        key = (method, str(model_dir()))
        if key in _paths and _paths[key].is_file():
            return _paths[key]
        path = model_dir() / f"{method}-{_fingerprint(export_module(method), method)}.onnx"
        if not path.is_file():
            export_onnx(method, path, opset=OPSET)
        _paths[key] = path
        return path


def browser_info() -> dict[str, Any]:
    """What the page needs to offer in-browser mode (no network, no export: file and package checks only)."""
    from impasto.methods import availability

    ready, why = webassets.ort_web_status()
    can_export = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
    models = {}
    for name in _exportable():
        ok, reason = availability(name)
        if ok and not can_export and (name, str(model_dir())) not in _paths:
            ok, reason = False, ("exporting models needs onnx and onnxscript on the server: "
                                 'pip install "impasto[export]"')
        models[name] = {"url": f"/models/{name}.onnx", "available": ok, "reason": None if ok else reason}
    return {"available": ready, "reason": None if ready else why, "command": webassets.FETCH_COMMAND,
            "runtime": {"name": "onnxruntime-web", "version": webassets.ORT_WEB_VERSION,
                        "script": "/ort/ort.wasm.min.js", "wasm_paths": "/ort/"},
            "models": models}


def add_browser_routes(app: FastAPI) -> None:
    """Add /v1/browser, /ort/{file} and /models/{name}.onnx to ``app``."""
    router = APIRouter()

    @router.get("/v1/browser", summary="Can the page stylize in the visitor's browser? (runtime and models)")
    async def browser(request: Request) -> dict[str, Any]:
        from impasto.pipeline import MIN_SIDE

        info = await anyio.to_thread.run_sync(browser_info)
        config = getattr(request.app.state, "config", None)
        # the page resizes the painting as the server would (ServerConfig.style_size, pipeline's MIN_SIDE)
        return {**info, "style_size": getattr(config, "style_size", 512), "min_side": MIN_SIDE}

    @router.get("/ort/{name}", include_in_schema=False)
    async def ort_file(name: str) -> FileResponse:
        if name not in (*webassets.ORT_WEB_FILES, *webassets.ORT_WEB_EXTRA):
            return JSONResponse({"error": f"no such onnxruntime-web file: {name[:80]!r}; the files are "
                                          f"{', '.join(webassets.ORT_WEB_FILES)}"}, status_code=404)
        ready, why = webassets.ort_web_status()
        if not ready:
            return JSONResponse({"error": why}, status_code=404)
        media = MEDIA_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")
        return FileResponse(webassets.ort_web_dir() / name, media_type=media,
                            headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/models/{file}", include_in_schema=False)
    async def model_file(file: str) -> FileResponse:
        method = file.removesuffix(".onnx")
        if not file.endswith(".onnx") or method not in _exportable():
            return JSONResponse({"error": f"no such model: {file[:80]!r}; the models are "
                                          f"{', '.join(f'{m}.onnx' for m in _exportable())}"}, status_code=404)
        try:
            path = await anyio.to_thread.run_sync(exported_model, method)
        except ImpastoError as exc:
            return JSONResponse({"error": f"the {method} model cannot be exported on this server: {exc}"},
                                status_code=503)
        return FileResponse(path, media_type="application/octet-stream", filename=f"{method}.onnx",
                            headers={"Cache-Control": "no-cache"})

    app.include_router(router)
