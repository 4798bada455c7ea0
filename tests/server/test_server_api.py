"""The HTTP API against a real uvicorn server on a free 127.0.0.1 port, with real HTTP requests (httpx).

The round trip uses the real adain model and real images (resized to 128 px); the queue, 409 and timeout cases
use a fake model (``stylizer_factory``) so that a job can be held "running" for as long as a test needs.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from impasto import DEFAULT_METHOD
from impasto.errors import ConfigError
from impasto.server.app import STATIC_DIR, ServerConfig, create_app, serve_in_thread

MB = 2**20


# ---------------------------------------------------------------------------------------------------- helpers

def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    return buf.getvalue()


def small(path: Path, size: int) -> Image.Image:
    img = Image.open(path).convert("RGB")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A ~100-byte PNG whose header declares width x height RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + png_chunk(b"IEND", b""))


def wait_job(client: httpx.Client, status_url: str, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        st = client.get(status_url).json()
        if st["status"] in ("done", "error") or time.monotonic() > end:
            return st
        time.sleep(0.05)


def assert_json_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and len(body["error"]) > 10, body
    for w in words:
        assert w.lower() in body["error"].lower(), (w, body["error"])
    return body["error"]


# --------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def images(content_path: Path, style_path: Path) -> dict:
    content = small(content_path, 128)
    style = small(style_path, 128)
    return {"content": content, "content_png": encode(content), "content_jpg": encode(content, "JPEG"),
            "style_png": encode(style)}


@pytest.fixture(scope="module")
def client(weights_dir: Path) -> Iterator[httpx.Client]:
    config = ServerConfig(port=0, workers=1, queue=4, max_upload_mb=1, timeout=60)
    with serve_in_thread(config) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def files(content: bytes, style: bytes, ctype: str = "image/png", name: str = "photo.png") -> dict:
    return {"content": (name, content, ctype), "style": ("painting.png", style, "image/png")}


# ----------------------------------------------------------------------------------------------------- basics

def test_healthz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["limits"]["max_upload_mb"] == 1 and body["limits"]["queue"] == 4
    assert body["jobs"]["workers"] == 1


def test_methods_lists_every_registered_method(client: httpx.Client) -> None:
    from impasto.methods import availability, method_names

    body = client.get("/v1/methods").json()
    rows = {m["name"]: m for m in body["methods"]}
    assert list(rows) == method_names()
    for name, row in rows.items():
        ok, why = availability(name)
        assert row["available"] is ok
        assert row["summary"] and row["paper"]
        assert (row["reason"] == why) if not ok else row["reason"] is None
    assert rows[DEFAULT_METHOD]["available"] and body["default"] == DEFAULT_METHOD == "sanet"


def test_default_method_falls_back_to_adain_then_to_any_that_runs() -> None:
    from impasto.server.routes import default_method

    assert default_method(["adain", "wct", "sanet"]) == "sanet"
    assert default_method(["wct", "adain"]) == "adain"  # the trained default's weights are missing here
    assert default_method(["wct", "style-swap"]) == "wct"
    assert default_method([]) is None


def test_page_and_docs(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in r.text
        assert client.get(asset).status_code == 200
    # No external resources (CDNs, fonts): the page works offline.
    for f in STATIC_DIR.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f
    assert sum(f.stat().st_size for f in STATIC_DIR.iterdir()) < 200_000
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/stylize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"content", "style", "method", "alpha", "preserve_color", "max_size"} <= set(body["properties"])


# ------------------------------------------------------------------------------------------------- round trip

@pytest.mark.weights
def test_stylize_round_trip_adain(client: httpx.Client, images: dict) -> None:
    r = client.post("/v1/stylize", files=files(images["content_png"], images["style_png"]),
                    data={"method": "adain", "alpha": "0.9", "preserve_color": "false"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert set(job) >= {"job_id", "status_url", "result_url"} and job["status"] == "queued"
    assert r.headers["location"] == job["status_url"] == f"/v1/jobs/{job['job_id']}"
    st = wait_job(client, job["status_url"])
    assert st["status"] == "done" and st["progress"] == 100 and st["error"] is None, st
    res = client.get(job["result_url"])
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(res.content))
    assert out.format == "PNG" and out.mode == "RGB"
    assert out.size == images["content"].size == (st["width"], st["height"])
    # Stylised: clearly different from the photo, yet not blank.
    a = np.asarray(out, dtype=np.float32)
    b = np.asarray(images["content"], dtype=np.float32)
    assert np.abs(a - b).mean() > 10 and a.std() > 10


@pytest.mark.weights
def test_stylize_options_max_size_and_model_reuse(client: httpx.Client, images: dict) -> None:
    r = client.post("/v1/stylize", files=files(images["content_jpg"], images["style_png"], "image/jpeg",
                                               "photo.jpg"),
                    data={"method": "adain", "alpha": "0.5", "preserve_color": "on", "max_size": "64"})
    assert r.status_code == 202, r.text
    st = wait_job(client, r.json()["status_url"])
    assert st["status"] == "done", st
    out = Image.open(io.BytesIO(client.get(r.json()["result_url"]).content))
    w, h = images["content"].size
    assert max(out.size) == 64 and out.size == (64, round(h * 64 / w))
    # One Stylizer per method, created once and reused.
    assert client.get("/healthz").json()["models_loaded"] == ["adain"]


# ----------------------------------------------------------------------------------------------- bad requests

def test_bad_image_data(client: httpx.Client, images: dict) -> None:
    style = images["style_png"]
    assert_json_error(client.post("/v1/stylize", files=files(b"\x00garbage\xff" * 200, style)), 422, "photo")
    truncated = images["content_jpg"][: len(images["content_jpg"]) // 2]
    assert_json_error(client.post("/v1/stylize", files=files(truncated, style, "image/jpeg", "cut.jpg")), 422,
                      "truncated", "cut.jpg")
    msg = assert_json_error(client.post("/v1/stylize", files=files(bomb_png(), style)), 422, "pixels")
    assert "decompression bomb" in msg
    # A 5000 x 5000 header is under Pillow's limit but over the server's --max-pixels (16 M).
    assert_json_error(client.post("/v1/stylize", files=files(bomb_png(5000, 5000), style)), 422, "16,000,000")
    # The style image is checked just as well.
    assert_json_error(client.post("/v1/stylize", files=files(images["content_png"], b"GIF89a\x01")), 422,
                      "painting")
    assert_json_error(client.post("/v1/stylize", files=files(b"", style)), 422, "empty")


def test_wrong_types(client: httpx.Client, images: dict) -> None:
    text = files(b"hello, world", images["style_png"], "text/plain", "notes.txt")
    assert_json_error(client.post("/v1/stylize", files=text), 415, "text/plain")
    assert_json_error(client.post("/v1/stylize", json={"content": "x"}), 415, "multipart/form-data")
    assert_json_error(client.post("/v1/stylize", content=b"content=1",
                                  headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    # A text value where a file is expected.
    r = client.post("/v1/stylize", data={"content": "photo.png"},
                    files={"style": ("s.png", images["style_png"])})
    assert_json_error(r, 422, "file upload")


def test_oversize_uploads(client: httpx.Client, images: dict) -> None:
    # One file over --max-upload-mb (1 MB here): refused by the endpoint.
    big = b"\x89PNG" + b"\0" * (MB + 1000)
    assert_json_error(client.post("/v1/stylize", files=files(big, images["style_png"])), 413, "1.0 MB")
    # A body over the total limit with Content-Length: refused before the body is read.
    huge = b"\0" * (5 * MB)
    assert_json_error(client.post("/v1/stylize", files=files(huge, images["style_png"])), 413, "too large")
    # The same without Content-Length (chunked): counted while reading and stopped at the limit.
    boundary = "impastoboundary"

    def chunked() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"a.png\"\r\n"
               f"Content-Type: image/png\r\n\r\n").encode()
        for _ in range(80):
            yield b"\0" * 65536

    r = client.post("/v1/stylize", content=chunked(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in r.request.headers
    assert_json_error(r, 413, "too large")


def test_bad_options(client: httpx.Client, images: dict) -> None:
    ok = files(images["content_png"], images["style_png"])
    assert_json_error(client.post("/v1/stylize", files=ok, data={"method": "no-such-method"}), 422,
                      "unknown method", "adain")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"alpha": "5"}), 422, "alpha")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"alpha": "-0.1"}), 422, "alpha")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"alpha": "nan"}), 422, "alpha")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"alpha": "strong"}), 422, "alpha")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"max_size": "8"}), 422, "max_size")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"max_size": "big"}), 422, "max_size")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"preserve_color": "maybe"}), 422,
                      "preserve_color")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"strength": "1"}), 422, "unknown field",
                      "strength")
    assert_json_error(client.post("/v1/stylize", files=ok, data={"alpha": ["0.5", "0.6"]}), 422, "alpha")
    from impasto.methods import availability, method_names

    unavailable = [m for m in method_names() if not availability(m)[0]]
    if unavailable:
        assert_json_error(client.post("/v1/stylize", files=ok, data={"method": unavailable[0]}), 422,
                          "cannot run")


def test_missing_fields(client: httpx.Client, images: dict) -> None:
    r = client.post("/v1/stylize", files={"content": ("p.png", images["content_png"], "image/png")})
    assert_json_error(r, 422, "missing field 'style'")
    r = client.post("/v1/stylize", files={"style": ("p.png", images["style_png"], "image/png")})
    assert_json_error(r, 422, "missing field 'content'")
    r = client.post("/v1/stylize", files={"unrelated": ("p.png", b"x", "image/png")}, data={"alpha": "1"})
    assert_json_error(r, 422)


def test_unknown_job_and_routes(client: httpx.Client) -> None:
    assert_json_error(client.get("/v1/jobs/0123456789abcdef"), 404, "unknown job")
    assert_json_error(client.get("/v1/jobs/0123456789abcdef/result"), 404, "unknown job")
    assert_json_error(client.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd/result"), 404)
    assert_json_error(client.get("/no/such/page"), 404, "/v1")
    assert_json_error(client.delete("/healthz"), 405)


def test_still_healthy_after_bad_requests(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# ------------------------------------------------------------------------------------------ jobs (fake model)

class GateStylizer:
    """Stands in for a Stylizer: 'works' (reporting progress) until ``gate`` is set, returns the photo."""

    def __init__(self, gate: threading.Event, report_progress: bool = True) -> None:
        self.gate, self.report_progress = gate, report_progress

    def stylize(self, content: Image.Image, style: Image.Image, *, alpha: float, preserve_color: bool,
                max_size: int | None, progress: Callable[[int, int], None]) -> Image.Image:
        step = 0
        while not self.gate.wait(0.02):
            step += 1
            if self.report_progress:
                progress(min(step, 99), 100)
        return content


@contextlib.contextmanager
def fake_server(timeout: float) -> Iterator[tuple[httpx.Client, threading.Event, list[str]]]:
    """A real server whose models are GateStylizers: 'wct' never reports progress, the others do."""
    gate = threading.Event()
    created: list[str] = []

    def factory(method: str) -> GateStylizer:
        created.append(method)
        return GateStylizer(gate, report_progress=method != "wct")

    config = ServerConfig(port=0, workers=1, queue=1, timeout=timeout)
    app = create_app(config, stylizer_factory=factory)
    with serve_in_thread(config, app) as url, httpx.Client(base_url=url, timeout=30) as c:
        try:
            yield c, gate, created
        finally:
            gate.set()


def tiny_png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)))


def test_running_job_gives_409_then_result(weights_dir: Path) -> None:
    with fake_server(timeout=60) as (client, gate, created):
        _check_409_then_result(client, gate, created)


def _check_409_then_result(client: httpx.Client, gate: threading.Event, created: list[str]) -> None:
    r = client.post("/v1/stylize", files=files(tiny_png(1), tiny_png(2)), data={"method": "adain"})
    assert r.status_code == 202, r.text
    job = r.json()
    end = time.monotonic() + 10
    while (st := client.get(job["status_url"]).json())["status"] != "running" or st["progress"] < 15:
        assert time.monotonic() < end, st
        time.sleep(0.02)
    assert 0 < st["progress"] < 100 and st["stage"] == "stylizing"
    t0 = time.monotonic()  # the event loop is free while the job runs
    assert client.get("/healthz").json()["jobs"]["running"] == 1
    assert time.monotonic() - t0 < 1.0
    assert_json_error(client.get(job["result_url"]), 409, "not done")
    # The queue holds one waiting job; the next one is refused with 429 and a JSON message.
    r2 = client.post("/v1/stylize", files=files(tiny_png(3), tiny_png(4)), data={"method": "adain"})
    assert r2.status_code == 202
    assert client.get(r2.json()["status_url"]).json()["status"] == "queued"
    r3 = client.post("/v1/stylize", files=files(tiny_png(5), tiny_png(6)))
    assert_json_error(r3, 429, "busy")
    assert r3.headers["retry-after"]
    gate.set()
    assert wait_job(client, job["status_url"])["status"] == "done"
    assert wait_job(client, r2.json()["status_url"])["status"] == "done"
    out = Image.open(io.BytesIO(client.get(job["result_url"]).content))
    assert out.size == (32, 24)
    assert created == ["adain"]  # created once, reused for the second job


def test_timeout_marks_job_failed(weights_dir: Path) -> None:
    with fake_server(timeout=1.0) as (client, gate, _):
        _check_timeouts(client, gate)


def _check_timeouts(client: httpx.Client, gate: threading.Event) -> None:
    # Reports progress: the deadline check in the progress callback stops it.
    r = client.post("/v1/stylize", files=files(tiny_png(1), tiny_png(2)), data={"method": "adain"})
    st = wait_job(client, r.json()["status_url"], timeout=10)
    assert st["status"] == "error" and "timed out" in st["error"], st
    assert_json_error(client.get(r.json()["result_url"]), 409, "timed out")
    # Never reports progress (a long torch call): reported as timed out at the deadline all the same.
    t0 = time.monotonic()
    r = client.post("/v1/stylize", files=files(tiny_png(3), tiny_png(4)), data={"method": "wct"})
    st = wait_job(client, r.json()["status_url"], timeout=10)
    assert st["status"] == "error" and "timed out" in st["error"], st
    assert time.monotonic() - t0 < 5
    gate.set()
    assert client.get("/healthz").json()["jobs"]["timed_out"] == 2


# --------------------------------------------------------------------------------------------- config and CLI

def test_server_config_validation() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        ServerConfig(workers=0)
    with pytest.raises(ConfigError, match="--max-upload-mb"):
        ServerConfig(max_upload_mb=-1)
    with pytest.raises(ConfigError, match="--timeout"):
        ServerConfig(timeout=float("nan"))
    assert ServerConfig().host == "127.0.0.1"


def test_cli_serve_command() -> None:
    from typer.testing import CliRunner

    from impasto.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    for opt in ("--host", "--port", "--workers", "--max-upload-mb", "--max-pixels", "--queue", "--timeout"):
        assert opt in r.output
    r = runner.invoke(app, ["serve", "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.output


def test_cli_serve_port_in_use_is_a_clear_error() -> None:
    # uvicorn logged "[Errno 98] ... address already in use" after the start-up banner and exited with code 3
    import socket

    from typer.testing import CliRunner

    from impasto.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", "--port", str(port)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2, text
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in text and "choose another --port" in text
    assert "impasto web app on" not in text and "Traceback" not in text
    with pytest.raises(ConfigError, match="check --host"):
        with serve_in_thread(ServerConfig(host="999.1.1.1", port=0)):
            pass


@pytest.mark.slow
def test_cli_serve_announces_the_real_address(tmp_path: Path) -> None:
    # the real command in its own process, on port 0: the banner names the port the OS gave, and the page is there
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "impasto.cli", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("impasto web app on http://127.0.0.1:"), line
        url = line.split()[4].rstrip("/")
        assert not url.endswith(":0")
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                r = httpx.get(url + "/", timeout=5)
                break
            time.sleep(0.1)
        assert r.status_code == 200 and "<html" in r.text.lower()
    finally:
        proc.terminate()
        proc.wait(20)
