"""The API's request and response shapes, each declared once (Pydantic models).

:class:`StylizeForm` is the one declaration of the ``POST /v1/stylize`` form: FastAPI validates requests with it
and builds the OpenAPI schema from it, and the upload route (:mod:`impasto.server.intake`) takes the field names,
the multipart limits and the wording of its error messages from it. The response models document the JSON bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, model_validator

from impasto import DEFAULT_METHOD

#: Largest accepted ``max_size`` (pixels on the long side); larger values would mean "no cap" anyway.
MAX_SIZE_LIMIT = 16384
#: Largest text field of a multipart form (bytes).
MAX_TEXT_FIELD_BYTES = 64 * 1024


# ``content`` and ``style`` are the two images and ``method`` chooses the model; every other field is passed to
# Stylizer.stylize as the keyword argument of the same name (StylizeForm.stylize_options). Adding an option is one
# field here (type, default, limits, description) and, if Stylizer does not take it yet, that keyword there:
# validation, the OpenAPI schema, the multipart limits and the error messages follow from this declaration.
class StylizeForm(BaseModel):
    """The fields of ``POST /v1/stylize`` (multipart/form-data): the photo, the painting and the options.

    Text values may have surrounding spaces; an empty value means the default.
    """

    model_config = ConfigDict(extra="forbid")

    content: UploadFile = Field(description="the photo to stylize")
    style: UploadFile = Field(description="the painting whose style to use")
    method: str = Field(DEFAULT_METHOD, description="the style-transfer method (see GET /v1/methods)")
    alpha: float = Field(1.0, ge=0, le=1, allow_inf_nan=False,
                         description="the style strength, from 0 (the photo) to 1 (full style)")
    preserve_color: bool = Field(False, description="whether to keep the photo's colours (true or false)")
    max_size: int | None = Field(None, ge=16, le=MAX_SIZE_LIMIT,
                                 description="the cap on the long side of the result, in pixels (default: the "
                                             "photo's size)")

    @model_validator(mode="before")
    @classmethod
    def _strip_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        return data

    def stylize_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`impasto.pipeline.Stylizer.stylize`: every field but the images and
        ``method``."""
        return self.model_dump(exclude={*file_fields(type(self)), "method"})


def file_fields(model: type[BaseModel]) -> list[str]:
    """Names of a form model's file fields (annotated :class:`~fastapi.UploadFile`), in declaration order."""
    return [name for name, f in model.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, UploadFile)]


def form_limits(model: type[BaseModel]) -> dict[str, int]:
    """Multipart parsing limits for a form model: one part per field, files only for its file fields."""
    return {"max_files": len(file_fields(model)), "max_fields": len(model.model_fields),
            "max_part_size": MAX_TEXT_FIELD_BYTES}


def form_usage(model: type[BaseModel]) -> str:
    """``file fields 'content' and 'style' (and optional method, alpha, ...)``: how to fill in a form model."""
    files = file_fields(model)
    optional = [name for name, f in model.model_fields.items() if name not in files and not f.is_required()]
    text = f"file field{'s' if len(files) > 1 else ''} {' and '.join(map(repr, files))}"
    return text + (f" (and optional {', '.join(optional)})" if optional else "")


def form_error_message(model: type[BaseModel], errors: list[dict[str, Any]]) -> str:
    """One message naming every problem of a form (FastAPI/Pydantic validation ``errors``), worded for people."""
    fields, files = model.model_fields, file_fields(model)
    unknown = [str(e["loc"][-1]) for e in errors if e.get("type") == "extra_forbidden"]
    parts = [f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(fields)}"] if unknown else []
    for e in errors:
        loc = tuple(str(x) for x in e.get("loc", ()))
        name = loc[1] if len(loc) > 1 and loc[0] == "body" else ".".join(loc)
        kind, msg, info = e.get("type"), str(e.get("msg", "")), fields.get(name)
        if kind == "extra_forbidden":
            continue
        if info is None:
            parts.append(f"{name}: {msg}")
        elif kind == "missing" and name in files:
            parts.append(f"missing field {name!r}: upload {info.description} as a file field named {name!r}")
        elif kind == "missing":
            parts.append(f"missing field {name!r} ({info.description})")
        elif name in files:
            parts.append(f"field {name!r} must be a file upload ({info.description}), not a text value")
        else:
            msg = name + msg[len("Input"):] if msg.startswith("Input ") else f"{name}: {msg}"
            parts.append(f"{msg}, got {str(e.get('input'))[:40]!r}; {name} is {info.description}")
    return "; ".join(parts) or "invalid form"


# ------------------------------------------------------------------------------------------------ responses

class ErrorBody(BaseModel):
    """The body of every error answer (4xx and 5xx)."""

    error: str = Field(description="what went wrong and what to do about it")


class JobCreated(BaseModel):
    """The answer to a queued stylize job (202; the ``Location`` header is ``status_url``)."""

    job_id: str
    status: str = Field(description="always 'queued'")
    status_url: str = Field(description="poll this (GET) for the job's status")
    result_url: str = Field(description="the result PNG (GET), once the status is 'done'")


class JobStatus(BaseModel):
    """A job's status; a finished job also has the result's ``width`` and ``height``."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str = Field(description="queued, running, done or error")
    progress: int = Field(ge=0, le=100, description="percent done")
    stage: str
    error: str | None = Field(description="why the job failed (status 'error')")
    queue_position: int | None = Field(description="jobs ahead of this one (status 'queued')")
    elapsed_s: float
    status_url: str
    result_url: str
    width: int | None = None
    height: int | None = None
