"""The backend seam (impasto.accel, issue 23 section 1): plain models, speed chosen per Stylizer, same pictures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from impasto.accel import BACKENDS, accelerate, available, backend_of, prepare, prepared, resolve_backend
from impasto.decoders.vgg import VGGDecoder
from impasto.encoders.vgg import DISTILLED16X_WIDTHS, VGGEncoder
from impasto.errors import ConfigError

SRC = Path(__file__).resolve().parents[2] / "src" / "impasto"
MODEL_CODE = ["layers.py", "encoders", "decoders", "models", "transforms", "methods", "losses"]


def _files() -> list[Path]:
    out: list[Path] = []
    for part in MODEL_CODE:
        p = SRC / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def test_model_code_has_no_private_ops_or_inference_modes() -> None:
    """No private torch ops, no weight caches keyed on tensor versions, no grad-mode branches in model code: the
    networks compute one way, and speed lives in impasto.accel."""
    pattern = re.compile(r"torch\.ops\.|mkldnn|_version\b|is_grad_enabled|^\s*(from|import) impasto\.accel")
    found = [f"{f.relative_to(SRC)}:{i}: {line.strip()}" for f in _files()
             for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


def _tiny_encoder() -> VGGEncoder:
    torch.manual_seed(0)
    enc = VGGEncoder(DISTILLED16X_WIDTHS, "relu3_1")
    for p in enc.parameters():
        p.data.normal_(0, 0.2)
    return enc


def _tiny_decoder() -> VGGDecoder:
    torch.manual_seed(1)
    dec = VGGDecoder(DISTILLED16X_WIDTHS, "relu3_1").requires_grad_(False).eval()
    for p in dec.parameters():
        p.data.normal_(0, 0.1)
    return dec


def test_backend_names_resolve_or_say_why_not() -> None:
    assert set(BACKENDS) == {"auto", "eager", "fused", "compile", "onnxruntime"}
    with pytest.raises(ConfigError, match="unknown backend 'turbo'; use one of auto, eager, fused, compile, onnx"):
        resolve_backend("turbo")
    assert resolve_backend("eager", "cuda") == "eager"
    assert "CPU only" in available("fused", "cuda")
    with pytest.raises(ConfigError, match="backend 'fused': the fused backend runs on the CPU only"):
        resolve_backend("fused", "cuda")
    assert resolve_backend("auto", "cuda") == "eager"
    assert resolve_backend("auto", "cpu") == ("fused" if available("fused", "cpu") is None else "eager")


def test_compile_without_a_cpp_compiler_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import impasto.accel as accel

    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"backend 'compile': .*needs a C\+\+ compiler"):
        resolve_backend("compile", "cpu")


def test_without_onednn_fusion_auto_is_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    import impasto.accel.kernels as kernels

    monkeypatch.setattr(kernels, "_FUSED_CONV", None)
    assert "no oneDNN fused convolution" in available("fused", "cpu")
    assert resolve_backend("auto", "cpu") == "eager"


@pytest.mark.skipif(available("fused") is not None, reason="this PyTorch build has no oneDNN fused convolution")
@pytest.mark.parametrize("size", [(37, 45), (400, 392)])  # below and above the kernels' border-fix threshold
def test_fused_equals_eager_and_falls_back_with_autograd(size: tuple[int, int]) -> None:
    enc, dec = _tiny_encoder(), _tiny_decoder()
    fenc, fdec = prepared(enc, "fused"), prepared(dec, "fused")
    assert backend_of(fenc) == "fused" and backend_of(enc) == "eager" and "forward" not in enc.__dict__
    img = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = enc(img, ["relu1_1", "relu3_1"])
        got = fenc(img, ["relu1_1", "relu3_1"])
        out_ref, out = dec(ref["relu3_1"]), fdec(ref["relu3_1"])
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    # with autograd the fused module runs the plain forward: gradients as in training
    enc.requires_grad_(True)
    x = img.clone().requires_grad_(True)
    fenc(x, ["relu3_1"])["relu3_1"].sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in enc.convs.parameters())


@pytest.mark.parametrize("levels", [("relu2_1",), ("relu1_1",), ("relu1_1", "relu2_1")])
def test_fused_decoder_with_skips_equals_eager_and_stays_fused(levels: tuple[str, ...],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip adds: the level that takes one is up-sampled explicitly (relu1_1's breaks the last conv pair), the rest
    stays fused; an odd size has encoder maps a row/column larger than the decoder's (fit_map)."""
    dec = _tiny_decoder()
    fdec = prepared(dec, "fused")
    g = torch.Generator().manual_seed(3)
    feat = torch.rand(1, DISTILLED16X_WIDTHS[2], 10, 12, generator=g)
    sizes = {"relu1_1": (41, 49), "relu2_1": (21, 25)}  # the encoder's ceil-mode maps of a 41 x 49 image
    adds = {n: torch.randn(1, DISTILLED16X_WIDTHS[int(n[4]) - 1], *sizes[n], generator=g) for n in levels}
    with torch.no_grad():
        ref = dec(feat, size=(41, 49), adds=adds)
        assert not torch.allclose(ref, dec(feat, size=(41, 49)), atol=1e-3)  # the adds change the image

        def plain(*args, **kwargs):
            raise AssertionError("the fused decoder fell back to the plain forward")

        monkeypatch.setattr(VGGDecoder, "forward", plain)
        out = fdec(feat, size=(41, 49), adds=adds)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_prepare_eager_removes_what_a_backend_installed() -> None:
    enc = _tiny_encoder()
    prepare(enc, "fused" if available("fused") is None else "eager")
    prepare(enc, "eager")
    assert backend_of(enc) == "eager"
    assert not any("forward" in m.__dict__ or "_accel_derived" in m.__dict__ for m in enc.modules())


@pytest.mark.weights
def test_stylizer_backends_give_the_same_image(content_path, style_path) -> None:
    """Every Stylizer chooses its backend; the shared loaded networks are never modified; fp32 images agree (at a
    size above the kernels' border-fix threshold)."""
    from impasto import Stylizer
    from impasto.backbones import load_decoder, load_encoder
    from impasto.pipeline import _as_tensor

    photo_tensor = torch.nn.functional.interpolate(_as_tensor(content_path, "content"), size=(400, 520),
                                                   mode="bilinear", antialias=True)
    style_tensor = _as_tensor(style_path, "style", 256)

    outs = {}
    for backend in ("eager", "auto"):
        st = Stylizer("adain", precision="fp32", backend=backend)
        assert st.backend == resolve_backend(backend) and f"backend {st.backend}" in st.describe()
        outs[backend] = st.stylize_tensor(photo_tensor, style_tensor)
    shared = (load_encoder("vgg19-16x", "relu4_1"), load_decoder("vgg19-16x", "relu4_1"))
    assert all(backend_of(m) == "eager" and "forward" not in m.__dict__ for m in shared)
    mse = float((outs["eager"] - outs["auto"]).square().mean())
    assert mse < 1e-9, mse


@pytest.mark.weights
def test_cli_backend_option(tmp_path, content_path, style_path) -> None:
    from impasto.cli import app

    out = tmp_path / "o.png"
    res = CliRunner().invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-o", str(out),
                                   "--max-size", "96", "--backend", "eager"])
    assert res.exit_code == 0, res.output
    assert out.is_file()
    res = CliRunner().invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-o", str(tmp_path / "b.png"),
                                   "--backend", "turbo"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "unknown backend 'turbo'; use one of auto, eager, fused, compile, onnxrun" in said
    assert not (tmp_path / "b.png").exists()


def test_accelerate_gives_each_method_its_own_prepared_copies() -> None:
    class Holder:
        device = "cpu"

    shared = _tiny_decoder()
    h = Holder()
    h.decoder, h.levels = shared, {"a": shared, "b": 3}
    name = accelerate(h, "auto")
    assert h.decoder is not shared and h.levels["a"] is h.decoder and h.levels["b"] == 3
    assert backend_of(h.decoder) == name and backend_of(shared) == "eager"
    assert all(a is b for a, b in zip(h.decoder.parameters(), shared.parameters(), strict=True))


@pytest.mark.slow
@pytest.mark.skipif(available("compile") is not None, reason=str(available("compile")))
def test_compile_backend_matches_eager() -> None:
    dec = _tiny_decoder()
    comp = prepared(dec, "compile")
    assert backend_of(comp) == "compile"
    feat = torch.rand(1, 64, 10, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(comp(feat), dec(feat), rtol=1e-4, atol=1e-4)


def test_onnxruntime_backend_exports_once_and_matches_eager(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each network is exported at its first call (dynamic sizes), cached on disk, and gives eager's values at other
    sizes; a later copy loads the cached graph without exporting; autograd and other arguments run the module."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import impasto.accel.ort as ort

    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path))
    enc, dec = _tiny_encoder(), _tiny_decoder()
    oenc, odec = prepared(enc, "onnxruntime"), prepared(dec, "onnxruntime")
    g = torch.Generator().manual_seed(4)
    for size in [(37, 45), (64, 90)]:
        img = torch.rand(1, 3, *size, generator=g)
        with torch.no_grad():
            ref, got = enc(img, ["relu1_1", "relu3_1"]), oenc(img, ["relu1_1", "relu3_1"])
            out_ref, out = dec(ref["relu3_1"], size=size), odec(ref["relu3_1"], size=size)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    monkeypatch.setattr(ort, "_export", lambda *a, **k: pytest.fail("exported again instead of loading the cache"))
    again = prepared(enc, "onnxruntime")
    with torch.no_grad():
        torch.testing.assert_close(again(img, ["relu1_1", "relu3_1"])["relu3_1"], ref["relu3_1"], rtol=1e-4, atol=1e-5)
    a = torch.eye(dec.in_channels, dtype=torch.float64)
    with torch.no_grad():  # an input map folded into the first conv: not in the graph, the module runs it
        torch.testing.assert_close(odec(ref["relu3_1"], in_affine=(a, torch.zeros(dec.in_channels))),
                                   dec(ref["relu3_1"]), rtol=1e-4, atol=1e-5)
    x = img.clone().requires_grad_(True)
    oenc(x, ["relu3_1"])["relu3_1"].sum().backward()  # autograd: the plain module
    assert x.grad is not None


def test_onnxruntime_backend_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    reason = available("onnxruntime")
    assert reason is not None and 'pip install "impasto[export]"' in reason
    with pytest.raises(ConfigError, match=r'backend .onnxruntime.: .*pip install "impasto\[export\]"'):
        resolve_backend("onnxruntime")


@pytest.mark.weights
@pytest.mark.slow
def test_stylizer_onnxruntime_backend_runs_microast_as_eager(tmp_path, monkeypatch: pytest.MonkeyPatch, content_path,
                                                             style_path) -> None:
    """MicroAST's four networks (two encoders, modulator, decoder) as onnxruntime graphs give the eager image."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from impasto import Stylizer
    from impasto.pipeline import _as_tensor

    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path))
    ort_st = Stylizer("microast", precision="fp32", backend="onnxruntime")
    ref_st = Stylizer("microast", precision="fp32", backend="eager")
    style = _as_tensor(style_path, "style", 256)
    for size in [(180, 244), (301, 203)]:
        photo = torch.nn.functional.interpolate(_as_tensor(content_path, "content"), size=size, mode="area")
        out, ref = ort_st.stylize_tensor(photo, style), ref_st.stylize_tensor(photo, style)
        psnr = float(10 * torch.log10(1 / (out - ref).square().mean().clamp_min(1e-20)))
        assert out.shape == ref.shape and psnr > 80, psnr
    assert len(list((tmp_path / "onnx").glob("MicroAST*.onnx"))) == 4  # content + style encoder, modulator, decoder
