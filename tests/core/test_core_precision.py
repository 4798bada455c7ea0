"""Inference precision: ``auto`` / ``fp32`` / ``bf16`` resolve as documented, bf16 really runs the convolutions in
bfloat16 while the transforms stay float32, and its results stay close to fp32 on real photos."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from typer.testing import CliRunner

from impasto import Stylizer
from impasto.accel import prepared
from impasto.cli import app
from impasto.errors import ConfigError
from impasto.hardware import native_bf16
from impasto.hardware import resolve_precision as _resolve_precision
from impasto.methods.base import get_method_class
from impasto.pipeline import _as_tensor


def resolve_precision(precision: str, device: str, method: str) -> str:
    """The Stylizer's choice for ``method`` (as ``Stylizer`` calls :func:`impasto.hardware.resolve_precision`)."""
    return _resolve_precision(precision, device, supports_bf16=get_method_class(method).supports_bf16)


def test_resolve_precision_rules() -> None:
    expected = "bf16" if native_bf16("cpu") else "fp32"
    assert resolve_precision("auto", "cpu", "adain") == expected
    assert resolve_precision("auto", "cpu", "gatys") == "fp32"  # pixel optimisation: fp32 only
    assert resolve_precision("fp32", "cpu", "adain") == "fp32"
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("fp16x", "cpu", "adain")


def test_forced_bf16_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision bf16 runs where the CPU can run bf16 convolutions, and is a clear error (exit 2) where it cannot
    (IMPASTO_NO_BF16=1 makes this CPU look like one without: the same check the real probe feeds)."""
    from impasto.hardware import cpu_bf16_convolutions

    if cpu_bf16_convolutions():
        assert resolve_precision("bf16", "cpu", "adain") == "bf16"
    monkeypatch.setenv("IMPASTO_NO_BF16", "1")
    assert not native_bf16("cpu") and resolve_precision("auto", "cpu", "adain") == "fp32"
    with pytest.raises(ConfigError, match="--precision bf16: this CPU cannot run bfloat16 convolutions"):
        resolve_precision("bf16", "cpu", "adain")
    with pytest.raises(ConfigError, match="precision=bf16: this CPU cannot"):
        _resolve_precision("bf16", torch.device("cpu"), training=True)


def test_training_precision_rules_on_cpu() -> None:
    """One resolve_precision, two rule sets: training keeps fp32 for auto on a CPU (inference picks bf16 where it is
    native), knows fp16 (CUDA only), and amp_settings turns the name into autocast dtype + GradScaler."""
    from impasto.training.loop import amp_settings

    cpu = torch.device("cpu")
    assert _resolve_precision("auto", cpu, training=True) == "fp32"
    assert _resolve_precision("fp32", cpu, training=True) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        _resolve_precision("fp16", cpu, training=True)
    with pytest.raises(ConfigError, match="choose one of fp32, bf16, fp16, auto"):
        _resolve_precision("fp8", cpu, training=True)
    with pytest.raises(ConfigError, match="use auto, fp32, bf16"):
        _resolve_precision("fp16", "cpu")  # inference has no fp16
    assert amp_settings("fp32") == (None, False)
    assert amp_settings("bf16") == (torch.bfloat16, False)
    assert amp_settings("fp16") == (torch.float16, True)


def test_resolve_device_serves_stylizer_and_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """One resolve_device: the Stylizer keeps ``cuda`` / ``cuda:N`` / ``mps`` as given (as a string), torchrun workers
    pass local_rank and get ``cuda:LOCAL_RANK``; auto is CUDA when there is a GPU, else the CPU."""
    from impasto.hardware import resolve_device

    dev = torch.device("cpu")
    assert resolve_device(dev) is dev
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("auto", local_rank=1) == torch.device("cpu")
    assert str(resolve_device("cpu")) == "cpu" and str(resolve_device("mps")) == "mps"
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device(name, local_rank=0)
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert str(resolve_device("auto")) == "cuda" and str(resolve_device("cuda:1")) == "cuda:1"
    assert resolve_device("cuda", local_rank=3) == resolve_device("auto", local_rank=3) == torch.device("cuda", 1)


@pytest.mark.weights
def test_gatys_refuses_bf16() -> None:
    with pytest.raises(ConfigError, match="fp32 only"):
        Stylizer("gatys", precision="bf16")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def photo(content_path) -> torch.Tensor:
    return F.interpolate(_as_tensor(content_path, "content"), size=(192, 256), mode="bilinear", antialias=True)


# the ATen convs, and oneDNN's conv with a fused ReLU that impasto.accel.kernels.conv2d calls (fused backend)
_CONV_OPS = (torch.ops.aten.convolution, torch.ops.aten.mkldnn_convolution, torch.ops.mkldnn._convolution_pointwise)


class _ConvDtypes(TorchDispatchMode):
    """Records the output dtype of every convolution executed (at the ATen level: modules and F.conv2d alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in _CONV_OPS:
            self.seen.add(out.dtype)
        return out


@pytest.mark.bf16
@pytest.mark.weights
@pytest.mark.parametrize(("method", "options", "min_psnr"), [
    ("adain", {"encoder": "vgg19-16x"}, 35.0),
    ("wct", {"encoder": "vgg19-16x"}, 30.0),
    ("microast", {}, 35.0),
])
def test_bf16_runs_bf16_convs_and_stays_close_to_fp32(photo, style_path, method, options, min_psnr) -> None:
    exact = Stylizer(method, precision="fp32", **options)
    fast = Stylizer(method, precision="bf16", **options)
    with _ConvDtypes() as convs:
        out_fast = fast.stylize_tensor(photo, style_path)
    seen = convs.seen
    out_exact = exact.stylize_tensor(photo, style_path)
    assert torch.bfloat16 in seen  # the convolutions really ran in bf16
    assert out_fast.dtype == torch.float32 and out_fast.shape == photo.shape
    psnr = _psnr(out_fast, out_exact)
    assert min_psnr < psnr < 80  # close, and not silently the same fp32 computation
    # fp32 is deterministic and exact: the same result twice
    assert torch.equal(exact.stylize_tensor(photo, style_path), out_exact)


@pytest.mark.weights
@pytest.mark.parametrize(("method", "options", "min_psnr"), [
    ("adain", {"encoder": "vgg19-16x"}, 30.0),
    ("adain", {"encoder": "vgg19"}, 40.0),
    ("wct", {"encoder": "vgg19-16x"}, 25.0),
    ("wct", {"encoder": "vgg19"}, 30.0),
    ("microast", {}, 30.0),
])
@pytest.mark.bf16
def test_bf16_close_to_fp32_at_odd_sizes(content_path, style_path, method, options, min_psnr) -> None:
    """bf16 stays close to fp32 on odd, tiny, thin and wide images. oneDNN's bf16 convs on a Xeon with AMX returned
    wrong values for some shapes (a 1-pixel-wide stride-2 output; a 9 x 12 kernel with column stride 4, see
    benchmarks/README.md items 25 and "Tried and dropped"), which only odd sizes reach; measured on that machine:
    adain 37-55 dB (distilled), 54-64 dB (real VGG), wct 32-37 dB / 39-54 dB, microast 35-43 dB."""
    exact = Stylizer(method, precision="fp32", **options)
    fast = Stylizer(method, precision="bf16", **options)
    img = _as_tensor(content_path, "content")
    for size in ((9, 13), (8, 300), (300, 8), (65, 1000), (1000, 66), (97, 131)):
        photo = F.interpolate(img, size=size, mode="bilinear", antialias=True).clamp(0, 1)
        out_fast, out_exact = fast.stylize_tensor(photo, style_path), exact.stylize_tensor(photo, style_path)
        assert out_fast.shape == photo.shape and torch.isfinite(out_fast).all()
        assert _psnr(out_fast, out_exact) > min_psnr, (size, _psnr(out_fast, out_exact))


@pytest.mark.bf16
@pytest.mark.weights
def test_wct_bf16_keeps_the_small_coarse_level_in_fp32(photo, style_path) -> None:
    st = Stylizer("wct", precision="bf16", encoder="vgg19-16x")
    dtypes = {}
    for level in ("relu5_1", "relu1_1"):
        encoder = st.method.encoders[level]
        recorder = _ConvDtypes()

        def recorded(*args, _forward=encoder.forward, _recorder=recorder, **kwargs):
            with _recorder:  # every conv of this level's encoder (modules and functional forms alike)
                return _forward(*args, **kwargs)

        encoder.forward = recorded
        st.stylize_tensor(photo, style_path)
        del encoder.forward
        dtypes[level] = recorder.seen
    # 192 x 256 at relu5_1: 12 x 16 = 192 pixels for 128 channels -> fp32; relu1_1: full size -> bf16
    assert dtypes["relu5_1"] == {torch.float32}
    assert dtypes["relu1_1"] == {torch.bfloat16}


@pytest.mark.weights
def test_cli_precision_option(tmp_path, content_path, style_path) -> None:
    out = tmp_path / "o.png"
    res = CliRunner().invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-o", str(out),
                                   "--max-size", "96", "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assert "precision fp32" in " ".join(res.output.split()) and out.is_file()
    res = CliRunner().invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-o", str(out),
                                   "--precision", "half"])
    assert res.exit_code != 0 and "precision" in res.output and "Traceback" not in res.output


@pytest.mark.bf16
@pytest.mark.weights
@pytest.mark.parametrize(
    ("encoder", "depth"), [("vgg19-16x", "relu2_1"), ("vgg19-16x", "relu4_1"), ("vgg19", "relu3_1")]
)
def test_decoder_inference_path_equals_training_path(encoder: str, depth: str) -> None:
    """The fused backend (CPU, no autograd) fuses each decoder up-sampling into the next conv and unrolls the conv to
    RGB; the values are the module path's (float32, up to summation order), and under bf16 as close to float32."""
    from impasto.backbones import load_decoder

    dec = load_decoder(encoder, depth)
    fused = prepared(dec, "fused")
    feat = torch.rand(1, dec.in_channels, 21, 26, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = fused(feat)
    with torch.enable_grad():
        plain = dec(feat.requires_grad_(True))
    assert plain.requires_grad and fast.shape == plain.shape
    torch.testing.assert_close(fast, plain.detach(), rtol=0, atol=1e-4)
    ref = plain.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            fast = fused(feat)
        plain = dec(feat)
    err_fast = float((fast.float() - ref).norm() / ref.norm())
    err_plain = float((plain.detach().float() - ref).norm() / ref.norm())
    assert err_fast < 3e-2 and err_fast < 1.5 * err_plain + 1e-3


@pytest.mark.bf16
@pytest.mark.parametrize("size", [(45, 50), (400, 392)])  # pad + conv; zero padding + border fix (kernels)
def test_encoder_inference_path_equals_training_path(size: tuple[int, int]) -> None:
    """The fused backend (CPU, no autograd) folds the encoder's 1x1 colour conv into conv1_1, fuses the ReLUs, pools
    by strided maxima; the features are the module path's."""
    from impasto.backbones import load_encoder

    enc = load_encoder("vgg19-16x", "relu3_1")
    fused = prepared(enc, "fused")
    img = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    with torch.no_grad():
        fast = fused(img, layers)
    with torch.enable_grad():
        plain = enc(img.requires_grad_(True), layers)
    for name in layers:
        assert plain[name].requires_grad
        # float32: equal up to the summation order of oneDNN's zero-padded conv (border-fix path on the large map)
        torch.testing.assert_close(fast[name], plain[name].detach(), rtol=1e-5, atol=1e-5)
    ref = {name: plain[name].detach() for name in layers}
    # bf16 autocast: the fast path folds the colour conv into conv1_1; both paths are as close to float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            fast = fused(img, layers)
        plain = enc(img, layers)
    for name in layers:
        err_fast = float((fast[name].float() - ref[name]).norm() / ref[name].norm())
        err_plain = float((plain[name].detach().float() - ref[name]).norm() / ref[name].norm())
        assert err_fast < 1e-2 and err_fast < 1.5 * err_plain + 1e-3


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.bf16)])
def test_encoder_keeps_channels_last_for_an_image_made_from_an_hwc_array(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image tensor made from an H x W x 3 array (``from_numpy(a).permute(2, 0, 1)[None]``, as users of the tensor
    API build it) has batch stride 3, which ``contiguous(channels_last)`` keeps; the encoder used to run every layer
    channels-first on it (float32: pooling fell back to ``F.max_pool2d``, 1.5x slower at 1024 px). Every pooled map
    is channels-last and the features equal those of the contiguous image."""
    import impasto.accel.fused as vgg
    from impasto.accel import prepared
    from impasto.backbones import load_encoder

    enc = prepared(load_encoder("vgg19-16x", "relu3_1"), "fused")
    hwc = torch.rand(96, 80, 3, generator=torch.Generator().manual_seed(2))
    img = hwc.permute(2, 0, 1)[None]
    assert img.stride() == (3, 1, 240, 3)
    layouts: list[bool] = []
    pool = vgg.max_pool2x

    def spy(x: torch.Tensor) -> torch.Tensor:
        layouts.append(x.is_contiguous(memory_format=torch.channels_last) and x.stride()[0] == x[0].numel())
        return pool(x)

    monkeypatch.setattr(vgg, "max_pool2x", spy)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), amp:
        got = enc(img, ["relu3_1"])["relu3_1"]
        ref = enc(img.contiguous(), ["relu3_1"])["relu3_1"]
    assert layouts == [True] * 4
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("depth", ["relu1_1", "relu2_1"])  # folded into the conv to RGB / into a 3x3 conv + ReLU
def test_decoder_folds_an_input_affine_map(depth: str) -> None:
    """decoder(f, in_affine=(A, c)) = decoder(A f + c): WCT's transform folded into the first conv's weights."""
    from impasto.backbones import load_decoder

    dec = load_decoder("vgg19-16x", depth)
    fused = prepared(dec, "fused")
    g = torch.Generator().manual_seed(1)
    c_in = dec.in_channels
    feat = torch.rand(1, c_in, 23, 26, generator=g)
    a, c = torch.randn(c_in, c_in, generator=g, dtype=torch.float64) / 4, torch.randn(c_in, generator=g).double()
    mapped = (torch.einsum("ji,bihw->bjhw", a, feat.double()) + c[None, :, None, None]).float()
    with torch.no_grad():
        ref = dec(mapped)
        fast = fused(feat, in_affine=(a, c))
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-4)
    with torch.enable_grad():
        plain = dec(feat.requires_grad_(True), in_affine=(a, c))
    torch.testing.assert_close(plain.detach(), ref, rtol=0, atol=1e-4)
