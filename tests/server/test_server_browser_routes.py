"""Routes of the page's "in my browser" mode: /v1/browser, /ort/{file} (MIME types) and /models/{name}.onnx."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from impasto import webassets
from impasto.server.app import ServerConfig, serve_in_thread

WASM = b"\0asm\1\0\0\0" + bytes(1000)


@pytest.fixture()
def ort_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """onnxruntime-web installed by impasto.webassets from a stand-in tarball (pinned for this test)."""
    tgz = tmp_path / "ort.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name in webassets.ORT_WEB_FILES:
            data = WASM if name.endswith(".wasm") else f"// {name}\n".encode()
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(webassets, "ORT_WEB_INTEGRITY", webassets.integrity_of(tgz))
    monkeypatch.setenv(webassets.ENV_DIR, str(tmp_path / "ort"))
    return webassets.fetch_ort_web(tarball=tgz)


@pytest.fixture()
def base_url() -> Iterator[str]:
    # upload_grace=0: the guard's upload-rate deadline is due at once; downloads must not be cut by it
    with serve_in_thread(ServerConfig(port=0, upload_grace=0.0)) as url:
        yield url


def test_ort_files_with_their_mime_types(ort_dir: Path, base_url: str) -> None:
    info = httpx.get(base_url + "/v1/browser").json()
    assert info["available"] is True and info["reason"] is None
    assert info["runtime"] == {"name": "onnxruntime-web", "version": "1.30.0", "script": "/ort/ort.wasm.min.js",
                               "wasm_paths": "/ort/"}
    assert info["style_size"] == 512 and info["models"]["adain"]["url"] == "/models/adain.onnx"
    r = httpx.get(base_url + "/ort/ort-wasm-simd-threaded.wasm")
    assert r.status_code == 200 and r.headers["content-type"] == "application/wasm" and r.content == WASM
    for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs"):  # .mjs is imported as a module: a JS type
        r = httpx.get(base_url + "/ort/" + name)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript"), r.headers
        assert r.headers["x-content-type-options"] == "nosniff"
    for bad in ("ort.webgpu.min.js", "impasto-ort-web.json"):  # only the listed files, by exact name
        r = httpx.get(base_url + "/ort/" + bad)
        assert r.status_code == 404 and "ort.wasm.min.js" in r.json()["error"]
    assert httpx.get(base_url + "/ort/..%2Fimpasto-ort-web.json").status_code == 404
    # the page may compile WebAssembly (and nothing else changes in its policy)
    csp = httpx.get(base_url + "/").headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval';" in csp and "connect-src 'self'" in csp


def test_without_the_runtime_the_mode_is_off_and_says_how_to_fetch_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv(webassets.ENV_DIR, str(tmp_path / "empty"))
    info = httpx.get(base_url + "/v1/browser").json()
    assert info["available"] is False and "impasto web-assets" in info["reason"] and info["command"] == \
        "impasto web-assets"
    r = httpx.get(base_url + "/ort/ort-wasm-simd-threaded.wasm")
    assert r.status_code == 404 and "impasto web-assets" in r.json()["error"]
    assert not (tmp_path / "empty").exists()  # asking never downloads nor creates anything


def test_unknown_model_is_404(base_url: str) -> None:
    for bad in ("sanet.onnx", "adain.pt", "adain"):
        r = httpx.get(base_url + "/models/" + bad)
        assert r.status_code == 404 and "adain.onnx, microast.onnx" in r.json()["error"]


@pytest.mark.weights
@pytest.mark.slow
def test_models_route_serves_a_valid_onnx(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          base_url: str) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript", reason="exporting needs onnx and onnxscript (impasto[export])")
    monkeypatch.setenv("IMPASTO_ONNX_DIR", str(tmp_path / "models"))
    r = httpx.get(base_url + "/models/adain.onnx", timeout=300)  # exported now (well past upload_grace=0)
    assert r.status_code == 200, r.text[:300]
    model = onnx.load_from_string(r.content)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["content", "style", "alpha"]
    assert [o.name for o in model.graph.output] == ["image"]
    content = model.graph.input[0].type.tensor_type
    assert content.elem_type == onnx.TensorProto.FLOAT and len(content.shape.dim) == 4
    assert content.shape.dim[1].dim_value == 3  # NCHW, dynamic H and W
    cached = list((tmp_path / "models").glob("adain-*.onnx"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.content
    again = httpx.get(base_url + "/models/adain.onnx", timeout=60)  # reused, not exported again
    assert again.content == r.content and cached[0].stat().st_mtime == list(
        (tmp_path / "models").glob("adain-*.onnx"))[0].stat().st_mtime
