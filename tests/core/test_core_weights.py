"""The weight registry: resolution order, sha256 checks, clear messages, real files, CLI listing."""

from __future__ import annotations

import os
import shutil

import pytest

from impasto import weights
from impasto.errors import WeightsError


def test_unknown_name_lists_known():
    with pytest.raises(WeightsError, match="known: .*vgg19-r31"):
        weights.get("no-such-weights")


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMPASTO_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        weights.resolve("vgg19-r31")
    msg = str(err.value)
    assert "vgg19_normalised_r31.pth" in msg and str(tmp_path / "a") in msg and str(tmp_path / "cache") in msg
    assert "IMPASTO_WEIGHTS_DIR" in msg and "github.com/pietrocarbo/deep-transfer" in msg


def test_download_failure_is_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("IMPASTO_OFFLINE", raising=False)
    entry = weights.get("vgg19-r31")
    monkeypatch.setitem(
        weights.REGISTRY,
        "vgg19-r31",
        weights.WeightFile(**{**entry.__dict__, "url": "http://127.0.0.1:9/none.pth"}),
    )
    with pytest.raises(WeightsError, match="download failed"):
        weights.resolve("vgg19-r31")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no partial file, no temporary


@pytest.mark.weights
def test_resolution_order_and_corrupt_detection(tmp_path, monkeypatch, weights_dir):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    (bad / "wct_decoder_r11.pth").write_bytes(b"not the real file")
    shutil.copy(weights_dir / "wct_decoder_r11.pth", good / "wct_decoder_r11.pth")
    import os

    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", os.pathsep.join([str(bad), str(good)]))
    assert weights.resolve("vgg19-decoder-r11") == good / "wct_decoder_r11.pth"
    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", str(bad))
    monkeypatch.setenv("IMPASTO_OFFLINE", "1")
    path, status = weights.find("vgg19-decoder-r11")
    assert status == "corrupt" and path == bad / "wct_decoder_r11.pth"
    with pytest.raises(WeightsError, match="corrupt"):
        weights.resolve("vgg19-decoder-r11")


@pytest.mark.weights
def test_all_shared_files_verify(weights_dir):
    rows = {r["name"]: r for r in weights.status_table()}
    for name in (
        "vgg19-r31",
        "vgg19-decoder-r31",
        "lst-vgg-r31",
        "lst-dec-r31",
        "vgg19-16x-encoder-r51",
        "vgg19-16x-decoder-r51",
        "microast-decoder",
        "magenta-predict",
    ):
        assert rows[name]["status"] == "present", name
    assert rows["vgg19"]["status"] == "missing"


@pytest.mark.weights
def test_lst_and_deep_transfer_files_are_the_same_tensors(weights_dir):
    from impasto.backbones import load_encoder
    from impasto.decoders.vgg import VGGDecoder, convert_lst_decoder
    from impasto.encoders.vgg import VGGEncoder, convert_lst_vgg

    lst = VGGEncoder(depth="relu3_1")
    lst.load_state_dict(convert_lst_vgg(weights.load_state_dict("lst-vgg-r31"), "relu3_1"))
    ref = load_encoder("vgg19", "relu3_1")
    for k, v in ref.state_dict().items():
        assert (lst.state_dict()[k] == v).all(), k
    dec = VGGDecoder(depth="relu3_1")
    dec.load_state_dict(convert_lst_decoder(weights.load_state_dict("lst-dec-r31"), "relu3_1"), strict=True)


def test_load_state_dict_rejects_non_checkpoint(tmp_path):
    p = tmp_path / "x.pth"
    p.write_text("hello")
    with pytest.raises(WeightsError, match="x.pth"):
        weights.load_state_dict(p)


def test_cli_weights_list_and_verify(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from impasto.cli import app

    res = CliRunner().invoke(app, ["weights", "list"])
    assert res.exit_code == 0, res.output
    assert "vgg19-r31" in res.output and "missing" in res.output
    bad = tmp_path / "w"
    bad.mkdir()
    (bad / "wct_decoder_r11.pth").write_bytes(b"corrupt")
    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", str(bad))
    res = CliRunner().invoke(app, ["weights", "verify"])
    assert res.exit_code == 1 and "corrupt" in res.output


def test_cli_weights_list_flags_a_weights_dir_that_does_not_exist(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from impasto.cli import app

    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", os.pathsep.join([str(tmp_path), str(tmp_path / "typo")]))
    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path / "cache"))  # not created yet: normal, not flagged
    res = CliRunner().invoke(app, ["weights", "list"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text
    assert f"searched: {tmp_path}, {tmp_path / 'typo'} (no such folder; check IMPASTO_WEIGHTS_DIR), " \
           f"{tmp_path / 'cache'}" in text


def test_weights_list_and_methods_print_urls_whole_and_as_json(monkeypatch) -> None:
    """At 120 columns URLs and paths were cut with '...'; now they wrap, and --json gives them whole."""
    import json

    from typer.testing import CliRunner

    from impasto import weights
    from impasto.cli import app

    monkeypatch.setenv("COLUMNS", "120")
    r = CliRunner().invoke(app, ["weights", "list"])
    assert r.exit_code == 0 and "…" not in r.output
    r = CliRunner().invoke(app, ["weights", "list", "--json"])
    data = json.loads(r.output)
    urls = {f["name"]: f["url"] for f in data["files"]}
    assert urls["vgg19"] == weights.get("vgg19").url and data["searched"]
    r = CliRunner().invoke(app, ["methods", "--json"])
    rows = json.loads(r.output)
    assert {row["method"] for row in rows} >= {"adain", "sanet", "microast"}
    r = CliRunner().invoke(app, ["methods"])
    assert r.exit_code == 0 and "…" not in r.output


def test_missing_weights_message_names_the_variable_and_folders(monkeypatch, tmp_path) -> None:
    from impasto.errors import ImpastoError
    from impasto.pipeline import Stylizer

    monkeypatch.delenv("IMPASTO_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ImpastoError) as info:
        Stylizer("adain")
    msg = str(info.value)
    assert "IMPASTO_WEIGHTS_DIR is not set" in msg and str(tmp_path / "cache") in msg
    assert "set IMPASTO_WEIGHTS_DIR to the folder" in msg


@pytest.mark.weights
def test_shared_modules_are_never_moved_by_callers(weights_dir) -> None:
    """load_encoder/load_decoder hand out shared modules per device; asking for another device gives that device's
    own shared copy and leaves the CPU one where it is (callers used to call .to(device) on the shared module)."""
    from impasto.backbones import load_decoder, load_encoder

    cpu = load_encoder("vgg19-16x", "relu4_1")
    other = load_encoder("vgg19-16x", "relu4_1", device="meta")  # any non-CPU device
    assert other is not cpu and load_encoder("vgg19-16x", "relu4_1", device="meta") is other
    assert next(cpu.parameters()).device.type == "cpu" and next(other.parameters()).device.type == "meta"
    assert load_encoder("vgg19-16x", "relu4_1", device="cpu") is cpu
    dec = load_decoder("vgg19-16x", "relu4_1", device="meta")
    assert next(dec.parameters()).device.type == "meta"
    assert next(load_decoder("vgg19-16x", "relu4_1").parameters()).device.type == "cpu"
