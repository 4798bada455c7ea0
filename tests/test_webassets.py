"""impasto web-assets: the onnxruntime-web tarball is installed only when its sha512 matches the pin (no network:
a tarball made here stands in for npm's)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from impasto import webassets
from impasto.webassets import WebAssetsError, fetch_ort_web, integrity_of, ort_web_status

FILES = {name: f"// {name}\n".encode() * 50 for name in webassets.ORT_WEB_FILES}


def make_tarball(path: Path, files: dict[str, bytes] = FILES, extra: dict[str, bytes] | None = None) -> Path:
    members = {f"package/dist/{n}": data for n, data in files.items()}
    members["package/package.json"] = json.dumps({"name": "onnxruntime-web", "version": "1.30.0"}).encode()
    members["package/dist/ort.webgpu.min.js"] = b"not wanted"
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_pinned_integrity_is_npms_sha512() -> None:
    assert webassets.ORT_WEB_INTEGRITY.startswith("sha512-") and len(webassets.ORT_WEB_INTEGRITY) == 7 + 88
    assert webassets.ORT_WEB_URL == "https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-1.30.0.tgz"


def test_verified_tarball_installs_only_the_needed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tgz = make_tarball(tmp_path / "ort.tgz", extra={"package/dist/../../evil.js": b"x", "evil.wasm": b"x"})
    monkeypatch.setattr(webassets, "ORT_WEB_INTEGRITY", integrity_of(tgz))  # pin this stand-in tarball
    dest = tmp_path / "ort"
    assert ort_web_status(dest)[0] is False and webassets.FETCH_COMMAND in ort_web_status(dest)[1]
    assert fetch_ort_web(dest, tarball=tgz) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [*webassets.ORT_WEB_FILES, "package.json", webassets.MARKER])
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert not (tmp_path / "evil.js").exists()
    assert ort_web_status(dest) == (True, "")
    # a truncated file is noticed (sizes recorded in the marker)
    (dest / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm")
    ready, why = ort_web_status(dest)
    assert not ready and "--force" in why


def test_tampered_tarball_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tgz = make_tarball(tmp_path / "ort.tgz")
    monkeypatch.setattr(webassets, "ORT_WEB_INTEGRITY", integrity_of(tgz))
    tampered = bytearray(tgz.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    (tmp_path / "bad.tgz").write_bytes(bytes(tampered))
    dest = tmp_path / "ort"
    with pytest.raises(WebAssetsError, match="does not match its pinned checksum") as err:
        fetch_ort_web(dest, tarball=tmp_path / "bad.tgz")
    assert "refusing to install it, nothing was written" in str(err.value)
    assert webassets.ORT_WEB_INTEGRITY in str(err.value)
    assert [p.name for p in dest.iterdir()] == []  # no file, no leftover temporary folder
    assert not ort_web_status(dest)[0]


def test_real_pin_refuses_anything_else(tmp_path: Path) -> None:
    """With the shipped pin, a tarball that is not npm's onnxruntime-web 1.30.0 is never installed."""
    tgz = make_tarball(tmp_path / "ort.tgz")
    with pytest.raises(WebAssetsError, match="not the published onnxruntime-web 1.30.0"):
        fetch_ort_web(tmp_path / "ort", tarball=tgz)


def test_tarball_without_the_runtime_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tgz = make_tarball(tmp_path / "ort.tgz", files={"ort.wasm.min.js": b"x"})
    monkeypatch.setattr(webassets, "ORT_WEB_INTEGRITY", integrity_of(tgz))
    with pytest.raises(WebAssetsError, match="lacks package/dist/ort-wasm-simd-threaded.mjs"):
        fetch_ort_web(tmp_path / "ort", tarball=tgz)


def test_download_errors_name_the_offline_route(tmp_path: Path) -> None:
    with pytest.raises(WebAssetsError, match="npm pack onnxruntime-web@1.30.0"):
        fetch_ort_web(tmp_path / "ort", url=(tmp_path / "nothing.tgz").as_uri(), force=True)
    with pytest.raises(WebAssetsError, match="no such file"):
        fetch_ort_web(tmp_path / "ort", tarball=tmp_path / "nothing.tgz")


def test_cli_installs_from_a_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from impasto.cli import app

    tgz = make_tarball(tmp_path / "ort.tgz")
    monkeypatch.setattr(webassets, "ORT_WEB_INTEGRITY", integrity_of(tgz))
    monkeypatch.setenv(webassets.ENV_DIR, str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["web-assets", "--tarball", str(tgz)])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output and ort_web_status(tmp_path / "cache")[0]
    result = CliRunner().invoke(app, ["web-assets"])
    assert result.exit_code == 0 and "already" in result.output
    (tmp_path / "bad.tgz").write_bytes(tgz.read_bytes()[:-10])
    result = CliRunner().invoke(app, ["web-assets", "--tarball", str(tmp_path / "bad.tgz"), "--force"])
    assert result.exit_code == 2 and "pinned checksum" in result.output
