"""The Stylizer's controls on real weights: alpha, style mixing, masks, colour preservation, sizes, tiling, cache."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from impasto.errors import ConfigError
from impasto.io.images import load_tensor
from impasto.pipeline import Stylizer, rgb_to_ycbcr, tile_grid, ycbcr_to_rgb

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def adain():
    return Stylizer("adain", device="cpu", style_size=192)


@pytest.fixture(scope="module")
def imgs(data_dir):
    c = F.interpolate(load_tensor(data_dir / "content" / "pytorch-AdaIN__chicago.jpg"), size=(160, 240), mode="area")
    s1 = F.interpolate(load_tensor(data_dir / "style" / "AdaAttN__udnie.jpg"), size=(192, 192), mode="area")
    s2 = load_tensor(sorted((data_dir / "style").glob("*wave*"))[0])
    s2 = F.interpolate(s2, size=(192, 192), mode="area")
    return c, s1, s2


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def test_alpha_moves_monotonically_from_content_to_style(adain, imgs):
    c, s1, _ = imgs
    outs = [adain.stylize_tensor(c, s1, alpha=a) for a in (0.0, 0.5, 1.0)]
    d_content = [mse(o, c) for o in outs]
    assert d_content[0] < d_content[1] < d_content[2]


def test_style_weights_interpolate(adain, imgs):
    c, s1, s2 = imgs
    only1 = adain.stylize_tensor(c, s1)
    w10 = adain.stylize_tensor(c, [s1, s2], style_weights=[1.0, 0.0])
    torch.testing.assert_close(w10, only1, atol=1e-5, rtol=0)
    only2 = adain.stylize_tensor(c, s2)
    half = adain.stylize_tensor(c, [s1, s2], style_weights=[1.0, 1.0])
    assert mse(half, only1) > 1e-4 and mse(half, only2) > 1e-4
    assert mse(half, only1) < mse(only2, only1) and mse(half, only2) < mse(only2, only1)


def test_mask_one_style_per_region(adain, imgs):
    c, s1, s2 = imgs
    H, W = c.shape[-2:]
    mask = torch.zeros(H, W)
    mask[:, : W // 2] = 1
    out = adain.stylize_tensor(c, [s1, s2], mask=mask)
    full1, full2 = adain.stylize_tensor(c, s1), adain.stylize_tensor(c, s2)
    left, right = slice(0, W // 2 - 24), slice(W // 2 + 24, W)
    assert mse(out[..., left], full1[..., left]) < 0.2 * mse(full2[..., left], full1[..., left])
    assert mse(out[..., right], full2[..., right]) < 0.2 * mse(full1[..., right], full2[..., right])
    # one style + mask: black keeps the content (as alpha = 0 there)
    one = adain.stylize_tensor(c, s1, mask=mask)
    recon = adain.stylize_tensor(c, s1, alpha=0.0)
    assert mse(one[..., right], recon[..., right]) < 0.2 * mse(full1[..., right], recon[..., right])


def test_mask_size_mismatch_is_config_error(adain, imgs, tmp_path):
    c, s1, _ = imgs
    p = tmp_path / "mask.png"
    Image.new("L", (10, 10), 255).save(p)
    with pytest.raises(ConfigError, match="resize the mask"):
        adain.stylize_tensor(c, s1, mask=str(p))


def test_preserve_color_keeps_content_chroma(adain, imgs):
    c, s1, _ = imgs
    out = adain.stylize_tensor(c, s1, preserve_color=True)
    plain = adain.stylize_tensor(c, s1)
    yo, yc, yp = rgb_to_ycbcr(out), rgb_to_ycbcr(c), rgb_to_ycbcr(plain)
    assert mse(yo[:, 1:], yc[:, 1:]) < 0.1 * mse(yp[:, 1:], yc[:, 1:])
    assert mse(yo[:, :1], yp[:, :1]) < 1e-3


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["adain", "wct", "microast", "style-swap", "magenta"])
@pytest.mark.parametrize("size", [(131, 257), (8, 8), (12, 700)])
def test_output_keeps_exact_size(method, size, imgs):
    c, s1, _ = imgs
    st = Stylizer(method, device="cpu", style_size=128)
    x = F.interpolate(c, size=size, mode="bilinear", align_corners=False)
    out = st.stylize_tensor(x, s1)
    assert out.shape[-2:] == size
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("method", "options"),
    [("adain", {}), ("adain", {"encoder": "vgg19", "depth": "relu3_1"}), ("wct", {}), ("wct", {"encoder": "vgg19"}),
     ("style-swap", {}), ("microast", {}), ("magenta", {})],
)
def test_tiny_and_thin_styles_work(method, options, imgs):
    """Styles with a side under 64 px (1x1, 8x8, 300x2, and 4000x30, which style_size shrinks to 512x4) are upscaled
    for encoding; they crashed inside the encoder (reflection padding larger than the map) before."""
    c, s1, _ = imgs
    st = Stylizer(method, device="cpu", style_size=512, **options)
    x = F.interpolate(c, size=(64, 96), mode="area")
    for h, w in [(1, 1), (8, 8), (2, 300), (30, 4000)]:
        style = F.interpolate(s1, size=(h, w), mode="area")
        out = st.stylize_tensor(x, style)
        assert out.shape[-2:] == (64, 96) and torch.isfinite(out).all(), (h, w)


def test_fit_style_sizes():
    from impasto.pipeline import MIN_SIDE, _fit_style

    def size(h, w, style_size=512):
        return tuple(_fit_style(torch.rand(1, 3, h, w), style_size).shape[-2:])

    assert size(100, 70) == (100, 70)  # large enough: unchanged
    assert size(8, 8) == (MIN_SIDE, MIN_SIDE)
    assert size(16, 40) == (64, 160)  # aspect kept
    assert size(2, 300) == (64, 1024)  # long side capped at max(style_size, 1024): a thin style is stretched across
    assert size(2, 300, style_size=2048) == (64, 2048)
    assert size(2, 300, style_size=None) == (64, 1024)
    t = torch.rand(1, 3, 4, 4)
    assert float(_fit_style(t, 512).min()) >= 0 and float(_fit_style(t, 512).max()) <= 1  # bicubic overshoot clamped


def test_gatys_works_at_its_work_size_and_returns_the_photos_size(imgs, data_dir):
    """Gatys optimises at 512 px on the long side by default; the result has the photo's exact size (it was returned
    at 512 px); an explicit max_size sets both the work size and the output's."""
    c, s1, _ = imgs
    st = Stylizer("gatys", device="cpu", style_size=128, steps=1)
    big = F.interpolate(c, size=(400, 601), mode="bilinear", align_corners=False)
    seen = []
    orig = st.method.stylize
    st.method.stylize = lambda x, *a, **k: seen.append(tuple(x.shape[-2:])) or orig(x, *a, **k)
    out = st.stylize_tensor(big, s1, preserve_color=True)
    assert seen == [(341, 512)] and out.shape[-2:] == (400, 601)
    assert torch.isfinite(out).all()
    out = st.stylize_tensor(big, s1, max_size=300)
    assert seen[-1] == (200, 300) and out.shape[-2:] == (200, 300)


def test_max_size_keeps_aspect_ratio(adain, data_dir):
    out = adain.stylize(data_dir / "content" / "pytorch-AdaIN__chicago.jpg",
                        data_dir / "style" / "AdaAttN__udnie.jpg", max_size=200)
    src = Image.open(data_dir / "content" / "pytorch-AdaIN__chicago.jpg")
    assert max(out.size) == 200
    assert abs(out.size[0] / out.size[1] - src.size[0] / src.size[1]) < 0.01


def test_tiling_matches_untiled_and_reports_progress(adain, imgs):
    c, s1, _ = imgs
    big = F.interpolate(c, size=(300, 460), mode="bilinear", align_corners=False)
    calls = []
    tiled = adain.stylize_tensor(big, s1, tile_size=192, tile_overlap=48, progress=lambda d, t: calls.append((d, t)))
    whole = adain.stylize_tensor(big, s1, tile_size=0)
    assert tiled.shape == whole.shape
    assert calls[-1][0] == calls[-1][1] == len(tile_grid(300, 192, 48)) * len(tile_grid(460, 192, 48))
    assert float((tiled - whole).abs().mean()) < 1e-3  # measured 1e-7: aligned tiles with context match exactly


@pytest.mark.parametrize("method", ["microast", "wct"])
def test_tiling_works_for_methods_without_shared_context(method, imgs):
    # methods without content_context (MicroAST, WCT) tile with per-tile statistics: no crash, full size, and
    # each tile is a stylisation (close to the untiled image, not equal: statistics are per tile)
    c, s1, _ = imgs
    big = F.interpolate(c, size=(300, 460), mode="bilinear", align_corners=False)
    st = Stylizer(method, style_size=192, encoder="vgg19-16x") if method == "wct" else Stylizer(method, style_size=192)
    tiled = st.stylize_tensor(big, s1, tile_size=192, tile_overlap=48)
    whole = st.stylize_tensor(big, s1, tile_size=0)
    assert tiled.shape == whole.shape == big.shape
    assert mse(tiled, whole) < 0.5 * mse(whole, big)


def test_balanced_tiles_cover_with_the_same_count_and_less_work():
    from impasto.pipeline import balanced_tile

    for length, tile, ov in [(4000, 1024, 64), (3000, 1024, 64), (300, 192, 48), (1025, 1024, 64), (100, 256, 32)]:
        b = balanced_tile(length, tile, ov)
        starts = tile_grid(length, b, ov)
        assert b <= tile and len(starts) == len(tile_grid(length, tile, ov))
        assert starts[0] == 0 and starts[-1] + b >= length
        assert all(a + b - c >= ov for a, c in zip(starts, starts[1:], strict=False))
    assert balanced_tile(4000, 1024, 64) == 852  # (4000 + 4 * 64) / 5


def test_auto_tile_size_scales_with_the_full_resolution_width():
    from impasto.pipeline import AUTO_TILE_MAX, auto_tile_size

    assert auto_tile_size(64) == 1024  # the real VGG-19
    assert auto_tile_size(16) == 2048  # the distilled VGG, MicroAST: as much feature data per tile
    assert auto_tile_size(32) == 1440  # 1024 * sqrt(2), down to a multiple of 16
    assert auto_tile_size(3) == AUTO_TILE_MAX and auto_tile_size(4096) == 512
    assert all(auto_tile_size(c) % 16 == 0 for c in range(1, 300))


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("method", "options", "channels", "tiles"), [
    ("adain", {"encoder": "vgg19-16x"}, 16, 4),  # 2048 px tiles: 2 x 2
    ("adain", {"encoder": "vgg19", "depth": "relu3_1"}, 64, 9),  # 1024 px tiles: 3 x 3
    ("microast", {}, 16, 4),
])
def test_automatic_tiling_above_4_megapixels_uses_the_methods_tile_size(method, options, channels, tiles):
    st = Stylizer(method, device="cpu", style_size=128, **options)
    assert st.method.full_res_channels() == channels
    big = torch.rand(1, 3, 2100, 2100)  # 4.4 MP: just above the automatic tiling threshold
    totals = []

    def stop_after_first_tile(done: int, total: int) -> None:
        totals.append(total)
        raise _Stop  # the tile count is known after one tile; the rest of the image is not needed

    with pytest.raises(_Stop):
        st.stylize_tensor(big, torch.rand(1, 3, 128, 128), progress=stop_after_first_tile)
    assert totals == [tiles]


def test_tile_grid_covers():
    for length, tile, ov in [(1000, 256, 32), (257, 256, 32), (100, 256, 32), (4000, 1024, 64)]:
        starts = tile_grid(length, tile, ov)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + tile] = True
        assert covered.all()
        assert all(b - a <= tile - ov for a, b in zip(starts, starts[1:], strict=False))


def test_style_cache_and_input_types(imgs, data_dir):
    st = Stylizer("adain", device="cpu", style_size=128)
    c, s1, _ = imgs
    path = data_dir / "style" / "AdaAttN__udnie.jpg"
    st.stylize_tensor(c, str(path))
    st.stylize_tensor(c, str(path))
    assert st.cache_misses == 1 and st.cache_hits == 1
    pil = Image.open(data_dir / "content" / "pytorch-AdaIN__chicago.jpg").resize((120, 80))
    for content in (pil, np.asarray(pil), c[0], str(data_dir / "content" / "pytorch-AdaIN__chicago.jpg")):
        out = st.stylize(content, path, max_size=120)
        assert isinstance(out, Image.Image) and max(out.size) == 120


def test_style_cache_keys_tensor_and_array_styles_by_their_pixels(imgs):
    """A tensor or array style is cached by a hash of its pixels: the same pixels hit (also as a new object), one
    changed pixel or another dtype misses."""
    st = Stylizer("adain", device="cpu", style_size=128)
    c, s1, _ = imgs
    st.stylize_tensor(c, s1)
    st.stylize_tensor(c, s1.clone())
    assert (st.cache_misses, st.cache_hits) == (1, 1)
    edited = s1.clone()
    edited[0, 0, 0, 0] += 1e-3
    st.stylize_tensor(c, edited)
    st.stylize_tensor(c, s1.double())
    assert (st.cache_misses, st.cache_hits) == (3, 1)
    arr = (s1[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    st.stylize_tensor(c, arr)
    st.stylize_tensor(c, arr.copy())
    assert (st.cache_misses, st.cache_hits) == (4, 2)


def test_uint8_tensors_read_as_0_255_and_float_tensors_checked(adain, imgs):
    """The tensor API takes uint8 images as 0-255 (a uint8 tensor was stylized as if 0-255 were 0-1, 22.9 dB from the
    float image) and refuses float tensors that are not in [0, 1], naming the tensor, instead of clamping a 0-255
    image to white."""
    c, s1, _ = imgs
    c8, s8 = (c * 255).round().to(torch.uint8), (s1 * 255).round().to(torch.uint8)
    ref = adain.stylize_tensor(c8.float() / 255, s8.float() / 255)
    torch.testing.assert_close(adain.stylize_tensor(c8, s8), ref, rtol=0, atol=0)
    torch.testing.assert_close(adain.stylize_tensor(c8[0], s8[0]), ref, rtol=0, atol=0)
    assert isinstance(adain.stylize(c8[0], s8), Image.Image)
    with pytest.raises(ConfigError, match=r"content tensor values must be in \[0, 1\].*divide it by 255"):
        adain.stylize_tensor(c * 255, s1)
    with pytest.raises(ConfigError, match="style tensor values"):
        adain.stylize_tensor(c, s1 * 255)
    with pytest.raises(ConfigError, match="NaN"):
        adain.stylize_tensor(c.clone().index_fill_(2, torch.tensor([3]), float("nan")), s1)
    with pytest.raises(ConfigError, match="dtype torch.int64"):
        adain.stylize_tensor(c8.long(), s1)
    slightly = adain.stylize_tensor((c * 1.02 - 0.01), s1)  # resampling overshoot: clamped, not refused
    assert slightly.shape == ref.shape


def test_tensor_api_empty_batch_and_inputs_that_require_grad(adain, imgs):
    # an empty batch was a raw "torch.cat(): expected a non-empty list" ValueError; an input with requires_grad
    # gave a UserWarning about converting it to a scalar
    import warnings

    c, s1, _ = imgs
    with pytest.raises(ConfigError, match=r"content batch is empty \(0 images\)"):
        adain.stylize_tensor(c[:0], s1)
    x = c.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = adain.stylize_tensor(x, s1)
    assert not out.requires_grad and x.grad is None
    torch.testing.assert_close(out, adain.stylize_tensor(c, s1), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"style_weights": [1, 2]}, "style weight"),
        ({"style_weights": [-1]}, "non-negative"),
        ({"max_size": 4}, "max_size"),
        ({"tile_size": 64}, "tile_size"),
    ],
)
def test_bad_options(adain, imgs, kwargs, match):
    c, s1, _ = imgs
    with pytest.raises(ConfigError, match=match):
        adain.stylize_tensor(c, s1, **kwargs)


def test_unknown_method_and_option():
    with pytest.raises(ConfigError, match="known methods: .*adain"):
        Stylizer("no-such-method")
    with pytest.raises(ConfigError, match="valid options"):
        Stylizer("adain", bogus=1)
    with pytest.raises(ConfigError, match="encoder"):
        Stylizer("adain", encoder="resnet")
    with pytest.raises(ConfigError, match="matching must be one of"):
        Stylizer("style-swap", matching="fft")
    with pytest.raises(ConfigError, match="stride=1"):
        Stylizer("style-swap", matching="correlation", stride=2)


@pytest.mark.slow
def test_4000x3000_photo_in_bounded_memory(tmp_path, data_dir):
    """A 12-megapixel photo stylises through tiles in well under 8 GiB (measured in a fresh process)."""
    import subprocess
    import sys

    big = tmp_path / "big.jpg"
    Image.open(data_dir / "content" / "pytorch-AdaIN__chicago.jpg").convert("RGB").resize((4000, 3000)).save(big)
    code = f"""
import resource, torch
torch.set_num_threads(2)
from impasto.pipeline import Stylizer
out = Stylizer("adain", device="cpu").stylize({str(big)!r}, {str(data_dir / "style" / "AdaAttN__udnie.jpg")!r})
assert out.size == (4000, 3000), out.size
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    peak_gb = int(res.stdout.split("PEAK_KB")[1]) / 2**20
    print(f"4000x3000 adain peak RSS {peak_gb:.2f} GiB")
    assert peak_gb < 8


def test_api_checks_shapes_before_allocating(monkeypatch) -> None:
    """Batches, empty and huge tensors and huge arrays are refused from their shape, before any copy or work."""
    from impasto.errors import ImageError
    from impasto.io.images import load_image
    from impasto.pipeline import _as_tensor

    with pytest.raises(ConfigError, match="batch of 2 images"):
        _as_tensor(torch.rand(2, 3, 8, 8), "content")
    with pytest.raises(ConfigError, match=r"empty \(0 x 8 pixels\)"):
        _as_tensor(torch.rand(1, 3, 0, 8), "content")
    huge = torch.zeros(1, 1, 1, 1).expand(1, 3, 60000, 60000)  # a view: no 43 GB behind it
    with pytest.raises(ConfigError, match="60000 x 60000 = 3600 megapixels"):
        _as_tensor(huge, "content")
    arr = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(20000, 20000, 3), strides=(0, 0, 0))
    with pytest.raises(ImageError, match="20000x20000"):
        load_image(arr)


@pytest.mark.weights
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_very_thin_image_runs_in_bounded_time_and_memory(weights_dir, style_path, tmp_path) -> None:
    """A 1 x 5000 photo took 64 s and 5.3 GB (upscaled to 64 x 320000); now 64 x 4096, and the output is 1 x 5000."""
    import subprocess
    import sys

    script = (
        "import re, numpy as np\n"
        "from impasto import Stylizer\n"
        "st = Stylizer('adain', precision='fp32')\n"
        f"out = st.stylize(np.full((1, 5000, 3), 128, np.uint8), {str(style_path)!r})\n"
        # VmHWM: this process's peak (ru_maxrss would include the forking pytest process's, kept across exec)
        "hwm = int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\n"
        "print(out.size, hwm // 1024)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    size, peak_mb = r.stdout.rsplit(" ", 1)
    assert size.strip() == "(5000, 1)" and int(peak_mb) < 800, r.stdout


def test_mask_tensor_with_nan_is_refused() -> None:
    from impasto.pipeline import Stylizer

    with pytest.raises(ConfigError, match="NaN"):
        Stylizer._load_mask(torch.full((4, 4), float("nan")), (4, 4))
