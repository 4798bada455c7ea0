"""Every runnable method on real photos and paintings: style statistics move toward the style, structure stays.

Style measure: d(x) = sum over relu1_1, relu2_1, relu3_1 of the real VGG-19 of ||mu(x) - mu(s)|| + ||sigma(x) -
sigma(s)|| (channel mean/std, as the AdaIN style loss). moved = 1 - d(output) / d(content): 0 = no change, 1 = the
output has exactly the style's statistics. Structure measure: Pearson correlation of the Sobel edge maps of the
output and the content luminances (impasto.evaluation.metrics.edge_correlation), and SSIM on luminance.
Measured values are printed (pytest -s) and recorded in the README.
"""

from __future__ import annotations

import pytest
import torch

from impasto.backbones import load_encoder
from impasto.evaluation.metrics import edge_correlation
from impasto.io.images import load_tensor
from impasto.modelfile import load_model
from impasto.pipeline import Stylizer
from impasto.transforms.stats import mean_std

pytestmark = pytest.mark.weights
LAYERS = ["relu1_1", "relu2_1", "relu3_1"]


def style_distance(x: torch.Tensor, s: torch.Tensor) -> float:
    enc = load_encoder("vgg19", "relu3_1")
    with torch.no_grad():
        fx, fs = enc(x, LAYERS), enc(s, LAYERS)
    d = 0.0
    for k in LAYERS:
        (mx, sx), (ms, ss) = mean_std(fx[k]), mean_std(fs[k])
        d += float((mx - ms).norm() + (sx - ss).norm())
    return d


@pytest.fixture(scope="module")
def images(data_dir):
    c = load_tensor(data_dir / "content" / "pytorch-AdaIN__chicago.jpg")
    c = torch.nn.functional.interpolate(c, size=(192, 288), mode="area")
    s = load_tensor(data_dir / "style" / "AdaAttN__udnie.jpg")
    s = torch.nn.functional.interpolate(s, size=(256, 256), mode="area")
    return c, s


@pytest.mark.parametrize(
    ("method", "options", "min_moved", "min_edges"),
    [
        ("wct", {}, 0.5, 0.2),
        ("microast", {}, 0.5, 0.3),
        # adain measured 0.38 / 0.60 with the packaged decoder, 0.17 / 0.82 with the reconstruction decoder
        ("adain", {}, 0.15, 0.4),
        # Style-swap rebuilds the image from style patches through a decoder trained on photos only: global
        # mean/std statistics barely move (measured 0.08 on the real VGG, -0.19 on the distilled one), so they
        # are recorded here and the move toward the style is asserted by patch similarity below.
        ("style-swap", {"encoder": "vgg19"}, -1.0, 0.3),
        ("style-swap", {"encoder": "vgg19-16x"}, -1.0, 0.3),
        ("magenta", {}, 0.3, 0.3),
        # impasto's shipped SANet (stage 9) and IEContraAST (docs/models.md) measured 0.39 / 0.80 and 0.37 / 0.67
        # on this small pair (at 512 px on the validation split: 0.61 / 0.72 and 0.59 / 0.57); a 60-step smoke
        # model: < 0 / ~0
        ("sanet", {}, 0.15, 0.4),
        ("iecontraast", {}, 0.15, 0.4),
    ],
)
def test_method_moves_statistics_and_keeps_structure(images, method, options, min_moved, min_edges):
    c, s = images
    st = Stylizer(method, device="cpu", style_size=256, **options)
    out = st.stylize_tensor(c, s)
    assert out.shape == c.shape
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    moved = 1 - style_distance(out, s) / style_distance(c, s)
    edges = float(edge_correlation(out, c)[0])
    print(f"{method} {options}: moved {moved:.2f}, edge correlation {edges:.2f}")
    assert moved >= min_moved, f"{method}: style statistics moved only {moved:.2f}"
    assert edges >= min_edges, f"{method}: structure lost (edge correlation {edges:.2f})"


def patch_similarity(x: torch.Tensor, s: torch.Tensor) -> float:
    """Mean over x's 3x3 relu3_1 patches of the best cosine similarity to any of s's patches."""
    enc = load_encoder("vgg19", "relu3_1")
    with torch.no_grad():
        px = torch.nn.functional.unfold(enc.encode(x), 3)[0].T
        ps = torch.nn.functional.unfold(enc.encode(s), 3)[0].T
        px = px / px.norm(dim=1, keepdim=True).clamp_min(1e-8)
        ps = ps / ps.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return float((px @ ps.T).max(1).values.mean())


@pytest.mark.parametrize("encoder", ["vgg19", "vgg19-16x"])
def test_style_swap_output_made_of_style_patches(images, encoder):
    c, s = images
    out = Stylizer("style-swap", device="cpu", style_size=256, encoder=encoder).stylize_tensor(c, s)
    before, after = patch_similarity(c, s), patch_similarity(out, s)
    print(f"style-swap {encoder}: relu3_1 patch similarity to the style {before:.3f} -> {after:.3f}")
    assert after - before > 0.05


def test_gatys_optimisation_reduces_style_distance(images):
    c, s = images
    c = torch.nn.functional.interpolate(c, size=(96, 144), mode="area")
    st = Stylizer("gatys", device="cpu", style_size=128, steps=25)
    calls = []
    out = st.stylize_tensor(c, s, progress=lambda d, t: calls.append((d, t)))
    moved = 1 - style_distance(out, s) / style_distance(c, s)
    print(f"gatys 25 steps: moved {moved:.2f}")
    assert moved > 0.3 and calls and calls[-1][1] == 25


def test_style_swap_optimize_lowers_feature_loss(images):
    c, s = images
    c = torch.nn.functional.interpolate(c, size=(96, 128), mode="area")
    ff = Stylizer("style-swap", device="cpu", style_size=128, encoder="vgg19-16x")
    opt = Stylizer("style-swap", device="cpu", style_size=128, encoder="vgg19-16x", optimize=True, steps=15)
    from impasto.transforms.style_swap import style_swap

    code = ff.encode_style(s)
    enc = ff.method.encoder
    with torch.no_grad():
        target = style_swap(enc.encode(c), code)
        loss_ff = float(((enc.encode(ff.stylize_tensor(c, s)) - target) ** 2).mean())
        loss_opt = float(((enc.encode(opt.stylize_tensor(c, s)) - target) ** 2).mean())
    print(f"style-swap feature loss: feed-forward {loss_ff:.4f}, optimised {loss_opt:.4f}")
    assert loss_opt < loss_ff


def test_alpha_zero_reconstructs_content(images):
    c, s = images
    for method in ("adain", "wct"):
        out = Stylizer(method, device="cpu", style_size=256).stylize_tensor(c, s, alpha=0.0)
        psnr = float(10 * torch.log10(1 / ((out - c) ** 2).mean()))
        print(f"{method} alpha=0 PSNR {psnr:.1f} dB")
        assert psnr > 18


def test_sanet_without_weights_says_what_to_do(tmp_path, monkeypatch):
    """Without the shipped file (an install without package data) and without the official files: what to do."""
    import impasto.methods.common as common
    from impasto.methods import MethodUnavailable

    monkeypatch.setattr(common, "PACKAGED_CHECKPOINTS", tmp_path)
    with pytest.raises(MethodUnavailable, match="impasto train sanet"):
        Stylizer("sanet")


def test_sanet_and_iecontraast_run_with_no_flags():
    for method in ("sanet", "iecontraast"):
        st = Stylizer(method)
        assert f"{method}_vgg19-16x_relu4_1.safetensors" in st.describe()
    # the shipped SANet (stage 9, docs/models.md) decodes with AdaIN skips from relu2_1 and relu3_1, and so does the
    # shipped IEContraAST, fine-tuned from it (session 25)
    for method in ("sanet", "iecontraast"):
        assert Stylizer(method).method.layers == ["relu2_1", "relu3_1", "relu4_1", "relu5_1"], method


def test_refined_encoder_state_in_a_model_file_is_used(tmp_path):
    from impasto.methods.common import packaged_checkpoint

    path = packaged_checkpoint("adain", "vgg19-16x", "relu4_1")
    if path is None:
        pytest.skip("no packaged adain checkpoint")
    ck = load_model(path)
    enc = load_encoder("vgg19-16x", "relu4_1").state_dict()
    ck["encoder_state"] = {k: v + 0.01 if k == "conv0.bias" else v for k, v in enc.items()}
    torch.save(ck, tmp_path / "refined.pt")
    st = Stylizer("adain", device="cpu", checkpoint=str(tmp_path / "refined.pt"))
    used = st.method.encoder.state_dict()["conv0.bias"]
    torch.testing.assert_close(used, enc["conv0.bias"] + 0.01)
    assert torch.equal(load_encoder("vgg19-16x", "relu4_1").state_dict()["conv0.bias"], enc["conv0.bias"])


def test_wct_without_weights_says_which_levels_it_needs(tmp_path, monkeypatch):
    # said "from relu1_1 down to relu1_1" when no depth was asked for
    from impasto.methods import MethodUnavailable

    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMPASTO_OFFLINE", "1")
    with pytest.raises(MethodUnavailable, match="pairs for at least relu1_1 of vgg19 or vgg19-16x"):
        Stylizer("wct")
    with pytest.raises(MethodUnavailable, match="every level from relu3_1 down to relu1_1 of vgg19;"):
        Stylizer("wct", encoder="vgg19", depth="relu3_1")


def test_one_stylizer_serves_concurrent_calls_each_with_its_own_progress(images):
    """Progress reaches a method through the call (impasto.runtime.reporting), not an attribute of the shared
    method: two threads on one Stylizer get their own progress and the same images as one after the other (was:
    `method.progress` set per call, so the server held a lock per method and concurrent calls crossed progress)."""
    import threading

    c, s = images
    c = torch.nn.functional.interpolate(c, size=(64, 96), mode="area")
    st = Stylizer("gatys", device="cpu", precision="fp32", style_size=96, steps=6)
    contents = [c, c.flip(-1)]
    alone: list[list[tuple[int, int]]] = [[], []]
    expected = [st.stylize_tensor(x, s, progress=lambda d, t, i=i: alone[i].append((d, t)))
                for i, x in enumerate(contents)]
    calls: list[list[tuple[int, int]]] = [[], []]
    outs: list[torch.Tensor | None] = [None, None]
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        outs[i] = st.stylize_tensor(contents[i], s, progress=lambda d, t: calls[i].append((d, t)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for i in range(2):
        assert calls[i] == alone[i] and alone[i][-1] == (6, 6), (calls[i], alone[i])
        assert torch.equal(outs[i], expected[i])


def test_reporting_scopes_progress_to_its_block():
    from impasto.runtime import current_progress, report_progress, reporting

    seen: list[tuple[str, int, int]] = []
    report_progress(1, 2)  # outside any block: a no-op
    with reporting(lambda d, t: seen.append(("outer", d, t))):
        report_progress(1, 3)
        with reporting(None):
            report_progress(2, 3)
            assert current_progress() is None
        report_progress(3, 3)
    assert seen == [("outer", 1, 3), ("outer", 3, 3)] and current_progress() is None
