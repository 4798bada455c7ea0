"""The endpoints: the page at ``/`` and the JSON API (see :mod:`impasto.server.app` for the list).

The routes only call the library (:class:`impasto.pipeline.Stylizer` through :class:`~impasto.server.pool.StylizerPool`,
the method registry through :class:`~impasto.server.pool.MethodCatalog`) and never run model code on the event loop:
stylize jobs run on the worker threads of :class:`impasto.server.jobs.JobManager`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from impasto import DEFAULT_METHOD
from impasto.server.intake import UploadRoute, check_image_type, load_images
from impasto.server.jobs import DONE, QueueFull
from impasto.server.middleware import ApiError
from impasto.server.pool import stylize_job
from impasto.server.schemas import MAX_SIZE_LIMIT, ErrorBody, JobCreated, JobStatus, StylizeForm
from impasto.server.state import ServerState

STATIC_DIR = Path(__file__).resolve().parent / "static"


def server_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(server_state)]

router = APIRouter()
uploads = APIRouter(route_class=UploadRoute)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@router.get("/healthz", summary="Liveness, queue occupancy and limits")
async def healthz(state: State) -> dict[str, Any]:
    config, intake = state.config, state.intake
    stats = state.jobs().stats()
    saturated = intake.busy >= config.intake_slots or stats["waiting"] >= config.queue
    return {"status": "ok", "saturated": saturated, "version": _version(), "jobs": stats,
            "uploads": {"receiving": intake.receiving, "decoding": intake.busy, "slots": config.intake_slots,
                        "refused": intake.refused},
            "models_loaded": state.pool.loaded(),
            "limits": {"max_upload_mb": config.max_upload_mb, "max_pixels": config.max_pixels,
                       "queue": config.queue, "workers": config.workers, "timeout_s": config.timeout,
                       "max_size": MAX_SIZE_LIMIT}}


@router.get("/v1/methods", summary="The style-transfer methods and whether each runs here")
async def methods(state: State) -> dict[str, Any]:
    rows = await anyio.to_thread.run_sync(state.catalog.rows)
    return {"methods": rows, "default": default_method([r["name"] for r in rows if r["available"]])}


def default_method(available: list[str]) -> str | None:
    """The method the page preselects: impasto's default, else adain (its fallback), else the first that runs here."""
    return next((m for m in (DEFAULT_METHOD, "adain") if m in available), available[0] if available else None)


@uploads.post("/v1/stylize", status_code=202, summary="Queue a stylize job (multipart upload)",
              response_class=JSONResponse,
              responses={202: {"model": JobCreated, "description": "queued"},
                         400: _error("the body could not be parsed, or the client disconnected"),
                         408: _error("the upload was too slow"),
                         413: _error("upload too large"),
                         415: _error("not multipart, or a file that is not an image"),
                         422: _error("bad option or unreadable image"),
                         429: _error("the queue is full; retry later"),
                         503: _error("every decoding slot is busy; retry later")})
async def stylize(form: Annotated[StylizeForm, Form(media_type="multipart/form-data")], state: State) -> JSONResponse:
    check_image_type(form.content, "content", "photo")
    check_image_type(form.style, "style", "painting")
    await anyio.to_thread.run_sync(state.catalog.check, form.method)
    content, style = await load_images(state.config, state.intake, form.content, form.style, form.max_size)
    try:
        job_id = state.jobs().submit(stylize_job(state.pool, content, style, form.method, form.stylize_options()))
    except QueueFull as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": "2"}) from None
    body = JobCreated(job_id=job_id, status="queued", status_url=f"/v1/jobs/{job_id}",
                      result_url=f"/v1/jobs/{job_id}/result")
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.status_url})


@router.get("/v1/jobs/{job_id}", summary="A job's status: queued, running (with progress), done or error",
            responses={200: {"model": JobStatus}, 404: _error("unknown job")})
async def job_status(job_id: str, state: State) -> dict[str, Any]:
    view = state.jobs().get(job_id)
    if view is None:
        raise ApiError(404, _unknown_job(job_id))
    return {"job_id": view.id, "status": view.status, "progress": int(round(view.progress * 100)),
            "stage": view.stage, "error": view.error, "queue_position": view.queue_position,
            "elapsed_s": round(view.elapsed, 2), "status_url": f"/v1/jobs/{view.id}",
            "result_url": f"/v1/jobs/{view.id}/result", **view.info}


@router.get("/v1/jobs/{job_id}/result", summary="The result PNG of a finished job",
            responses={200: {"content": {"image/png": {}}}, 404: _error("unknown job"),
                       409: _error("not done yet, or failed")})
async def job_result(job_id: str, state: State) -> Response:
    manager = state.jobs()
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


def _unknown_job(job_id: str) -> str:
    return (f"unknown job {job_id[:64]!r}: it never existed or its result expired "
            f"(finished jobs are kept for a limited time)")


def _version() -> str:
    from impasto import __version__

    return __version__
