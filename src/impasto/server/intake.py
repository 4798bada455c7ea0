"""Receiving uploads: the upload route's guards, the decoding slots, and reading and decoding the images.

Every bad upload gets its 4xx answer before a job is queued: the size while reading, the pixel count from the
header, the image fully decoded. No client-provided name or path ever reaches the file system.

The body is received and parsed without a decoding slot (Starlette spools file parts over 1 MB to disk, and
:class:`~impasto.server.middleware.RequestGuard` cuts bodies slower than the minimum rate), so slow clients hold no
slot; a slot (:class:`IntakeSlots`) is held only to read the files into memory and decode them, the part whose
memory the slots bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from impasto.server.config import ServerConfig
from impasto.server.middleware import ApiError
from impasto.server.schemas import file_fields, form_error_message, form_limits, form_usage

if TYPE_CHECKING:
    from impasto.server.jobs import JobManager
    from impasto.server.state import ServerState

#: Declared upload types accepted besides image/*: what browsers and curl send for unknown files.
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


class IntakeSlots:
    """Uploads read and decoded at the same time (bounds memory under load), waited for at most ``wait`` seconds.

    ``receiving`` counts the uploads being received, parsed or decoded; ``refused`` the ones answered 503 because
    every slot stayed busy.
    """

    def __init__(self, slots: int, wait: float) -> None:
        self.slots, self.wait = slots, wait
        self._semaphore = anyio.Semaphore(slots)
        self.receiving = 0
        self.refused = 0

    @property
    def busy(self) -> int:
        return self.slots - self._semaphore.value

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot; 503 with Retry-After if none frees up within ``wait`` seconds."""
        with anyio.move_on_after(self.wait) as waited:
            await self._semaphore.acquire()
        if waited.cancelled_caught:
            self.refused += 1
            raise ApiError(503, f"all {self.slots} image decoding slots stayed busy for {self.wait:g} s; try again "
                                f"shortly", headers={"Retry-After": "5"})
        try:
            yield
        finally:
            self._semaphore.release()


class UploadRoute(APIRoute):
    """A POST route whose multipart form (one ``Annotated[Model, Form()]`` parameter) becomes a job.

    Before FastAPI validates the form against its model, the request is checked in the order that costs the server
    least: the content type (415), room in the job queue (429; RequestGuard reads and discards the body so that the
    client gets the answer), then the body is received within ``upload_timeout`` (408) with the model's multipart
    limits and each field sent at most once, text fields as text. Validation errors become one 422 message worded
    from the model.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        model = self._form_model()
        limits = form_limits(model)
        self.form_limits = limits  # FastAPI's own parse would use the same limits (it reuses the parsed form)
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            state: ServerState = request.app.state.server
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "multipart/form-data":
                raise ApiError(415, f"send multipart/form-data with {form_usage(model)}, not "
                                    f"{ctype or 'no content type'!r}")
            manager = state.jobs()
            if not manager.has_room():
                manager.record_rejection()  # RequestGuard reads the unread body before the answer goes out
                raise ApiError(429, busy_message(manager), headers={"Retry-After": "2"})
            state.intake.receiving += 1
            try:
                with anyio.fail_after(state.config.upload_timeout):
                    async with request.form(**limits) as form:  # cached on the request: FastAPI validates this one
                        check_form_parts(model, form)
                        try:
                            return await handler(request)
                        except RequestValidationError as exc:
                            raise ApiError(422, form_error_message(model, list(exc.errors()))) from None
            except TimeoutError:
                raise ApiError(408, f"the upload took longer than {state.config.upload_timeout:g} s; "
                                    f"try again with smaller images") from None
            except ClientDisconnect:
                raise ApiError(400, "the client disconnected before the upload was complete") from None
            finally:
                state.intake.receiving -= 1

        return guarded

    def _form_model(self) -> type[BaseModel]:
        params = self.dependant.body_params
        model = params[0].field_info.annotation if len(params) == 1 else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.path}: an UploadRoute takes one form model parameter, "
                            f"Annotated[Model, Form()]")
        return model


def check_form_parts(model: type[BaseModel], form: Any) -> None:
    """Each of the model's fields sent at most once, and text fields as text (FastAPI would keep the last value)."""
    files = file_fields(model)
    for name in dict.fromkeys(form.keys()):
        if name not in model.model_fields:
            continue  # validation names the unknown fields
        values = form.getlist(name)
        if len(values) > 1:
            raise ApiError(422, f"field {name!r} was sent {len(values)} times; send it once")
        if name not in files and isinstance(values[0], UploadFile):
            raise ApiError(422, f"field {name!r} must be a plain form value, not a file")


def busy_message(manager: JobManager) -> str:
    return (f"the server is busy: {manager.queue_size} job(s) are already waiting (queue limit); "
            f"try again in a few seconds")


def check_image_type(upload: UploadFile, name: str, what: str) -> None:
    """415 unless the upload was declared as an image (or as a generic binary file)."""
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if not (declared.startswith("image/") or declared in GENERIC_TYPES):
        raise ApiError(415, f"the {what} (field {name!r}) was sent as {declared!r}, which is not an image; "
                            f"upload a PNG, JPEG, WebP, BMP, TIFF or GIF image")


async def load_images(config: ServerConfig, slots: IntakeSlots, content: UploadFile, style: UploadFile,
                      max_size: int | None) -> tuple[Image.Image, Image.Image]:
    """Read and decode the photo (long side capped at ``max_size``) and the painting (``config.style_size``)
    while holding a decoding slot; ApiError (413, 422) for a file that is too large, empty or not an image."""
    content_label, style_label = label("photo", content), label("painting", style)
    async with slots.slot():
        content_bytes = await read_upload(content, "content", "photo", config.max_upload_bytes)
        style_bytes = await read_upload(style, "style", "painting", config.max_upload_bytes)
        photo = await anyio.to_thread.run_sync(decode_upload, content_bytes, content_label, config.max_pixels,
                                               max_size)
        del content_bytes
        painting = await anyio.to_thread.run_sync(decode_upload, style_bytes, style_label, config.max_pixels,
                                                  config.style_size)
    return photo, painting


async def read_upload(upload: UploadFile, name: str, what: str, limit: int) -> bytes:
    """Read an (already size-bounded) upload, refusing more than ``limit`` bytes with 413."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the {what} (field {name!r}) is larger than the limit of "
                            f"{limit / 2**20:.1f} MB; send a smaller image")
    if not data:
        raise ApiError(422, f"the {what} (field {name!r}) is empty (0 bytes); send the complete image file")
    return data


def decode_upload(data: bytes, label: str, max_pixels: int, max_size: int | None) -> Image.Image:
    """Fully decode and check one upload (runs on a worker thread, not the event loop)."""
    from impasto.errors import ImageError
    from impasto.io.images import load_image, resize_max

    try:
        return resize_max(load_image(data, max_pixels=max_pixels, name=label), max_size)
    except ImageError as exc:
        raise ApiError(422, str(exc)) from None


def label(what: str, upload: UploadFile) -> str:
    """How an upload is called in messages: never used as a path."""
    name = (upload.filename or "").strip()
    name = "".join(ch for ch in name if ch.isprintable())[:80]
    return f"the {what} {name!r}" if name else f"the {what}"
