"""The stylize form is declared once (:class:`impasto.server.schemas.StylizeForm`): the OpenAPI schema, the
multipart limits and the error messages all come from that declaration, and bad values get the API's JSON error."""

from __future__ import annotations

import io
from collections.abc import Iterator

import annotated_types
import httpx
import pytest
from pydantic import Field
from starlette.datastructures import UploadFile
from test_server_api import assert_json_error, files, tiny_png

from impasto.server.app import ServerConfig, create_app, serve_in_thread
from impasto.server.schemas import StylizeForm, file_fields, form_limits, form_usage


class InstantStylizer:
    def stylize(self, content, style, *, alpha, preserve_color, max_size, progress):
        return content


def _stylize_schema() -> dict:
    spec = create_app(ServerConfig()).openapi()
    body = spec["paths"]["/v1/stylize"]["post"]["requestBody"]
    assert list(body["content"]) == ["multipart/form-data"]
    return body["content"]["multipart/form-data"]["schema"]


def _bounds(schema: dict) -> dict:
    """minimum / maximum of a property, looking inside ``anyOf`` (optional fields)."""
    found = {k: schema[k] for k in ("minimum", "maximum") if k in schema}
    for option in schema.get("anyOf", []):
        found.update(_bounds(option))
    return found


def test_openapi_lists_every_form_field_from_the_one_declaration() -> None:
    schema = _stylize_schema()
    fields = StylizeForm.model_fields
    assert list(schema["properties"]) == list(fields)
    assert schema["required"] == [name for name, f in fields.items() if f.is_required()] == ["content", "style"]
    assert schema.get("additionalProperties") is False  # unknown fields are refused
    declared = StylizeForm.model_json_schema()["properties"]
    for name, field in fields.items():
        prop = schema["properties"][name]
        assert prop["description"] == field.description, name
        if not field.is_required():
            assert prop.get("default") == field.default, name  # FastAPI leaves out a default of None
        limits = {}
        for m in field.metadata:
            if isinstance(m, annotated_types.Ge):
                limits["minimum"] = m.ge
            if isinstance(m, annotated_types.Le):
                limits["maximum"] = m.le
        assert _bounds(prop) == limits, name
        if name in file_fields(StylizeForm):
            assert prop["type"] == "string" and (prop.get("format") == "binary" or "contentMediaType" in prop)
        else:
            same = {k: v for k, v in declared[name].items() if k != "default"}  # defaults: compared above
            assert {k: v for k, v in prop.items() if k != "default"} == same, name  # type and limits as declared
    # the values the tests below rely on
    assert _bounds(schema["properties"]["alpha"]) == {"minimum": 0, "maximum": 1}
    assert _bounds(schema["properties"]["max_size"]) == {"minimum": 16, "maximum": 16384}


def test_a_new_field_needs_only_its_declaration() -> None:
    class Extended(StylizeForm):
        tile_size: int | None = Field(None, ge=64, description="tile side for large photos")

    assert form_limits(Extended)["max_fields"] == form_limits(StylizeForm)["max_fields"] + 1
    assert form_limits(Extended)["max_files"] == 2
    assert form_usage(Extended).endswith("max_size, tile_size)")
    upload = UploadFile(io.BytesIO(b""), filename="a.png")
    form = Extended.model_validate({"content": upload, "style": upload, "tile_size": " 128 "})
    assert form.stylize_options() == {"alpha": 1.0, "preserve_color": False, "max_size": None, "tile_size": 128}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    config = ServerConfig(port=0)
    app = create_app(config, stylizer_factory=lambda m: InstantStylizer())
    with serve_in_thread(config, app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.mark.parametrize(("data", "words"), [
    ({"alpha": "5"}, ["alpha", "less than or equal to 1", "'5'", StylizeForm.model_fields["alpha"].description]),
    ({"alpha": "nan"}, ["alpha", "finite"]),
    ({"alpha": "strong"}, ["alpha", "'strong'"]),
    ({"max_size": "8"}, ["max_size", "greater than or equal to 16"]),
    ({"max_size": "99999"}, ["max_size", "less than or equal to 16384"]),
    ({"preserve_color": "maybe"}, ["preserve_color", "boolean"]),
    ({"strength": "1"}, ["unknown field(s) 'strength'", "content, style, method, alpha, preserve_color, max_size"]),
    ({"alpha": ["0.5", "0.6"]}, ["field 'alpha' was sent 2 times"]),
])
def test_bad_field_values_get_the_json_error_shape(client: httpx.Client, data: dict, words: list[str]) -> None:
    r = client.post("/v1/stylize", files=files(tiny_png(1), tiny_png(2)), data=data)
    assert_json_error(r, 422, *words)


def test_bad_form_shapes_get_the_json_error_shape(client: httpx.Client) -> None:
    r = client.post("/v1/stylize", files={"content": ("p.png", tiny_png(1), "image/png")})
    assert_json_error(r, 422, "missing field 'style': upload the painting whose style to use")
    r = client.post("/v1/stylize", data={"content": "photo.png"}, files={"style": ("s.png", tiny_png(2))})
    assert_json_error(r, 422, "field 'content' must be a file upload")
    r = client.post("/v1/stylize", json={"alpha": 1})
    assert_json_error(r, 415, "file fields 'content' and 'style' (and optional method, alpha, preserve_color, "
                              "max_size)")
    # good values, spaces and empty values (the defaults) included, are accepted
    r = client.post("/v1/stylize", files=files(tiny_png(1), tiny_png(2)),
                    data={"alpha": " 0.5 ", "preserve_color": "on", "max_size": "", "method": "adain"})
    assert r.status_code == 202, r.text
