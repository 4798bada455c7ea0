"""Tests of impasto.transforms.style_swap against hand examples and the paper's one-hot conv formulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.transforms import StyleSwapPatches, style_swap, style_swap_features, style_swap_patches


def reference_style_swap(content: torch.Tensor, patches: StyleSwapPatches, stride: int = 1) -> torch.Tensor:
    """The paper's formulation, for tests only: conv with normalised patches, channel argmax -> one-hot,
    transposed conv with the raw patches, divided by the overlap count (transposed conv of ones).

    Needs (H - k) % stride == 0 and (W - k) % stride == 0.
    """
    k = patches.patch_size
    scores = F.conv2d(content, patches.filters, stride=stride)  # B x P x H' x W'
    onehot = F.one_hot(scores.argmax(1), patches.num_patches).permute(0, 3, 1, 2).to(content.dtype)
    out = F.conv_transpose2d(onehot, patches.raw, stride=stride)
    ones = torch.ones(1, 1, k, k, dtype=content.dtype)
    count = F.conv_transpose2d(torch.ones_like(onehot[:, :1]), ones, stride=stride)
    return out / count


def test_patches_layout() -> None:
    style = torch.randn(2, 4, 6, 7)
    p = style_swap_patches(style, patch_size=3, style_stride=2)
    assert p.num_patches == 2 * 2 * 3 and p.channels == 4 and p.patch_size == 3
    assert torch.equal(p.raw[0], style[0, :, 0:3, 0:3])
    assert torch.equal(p.raw[1], style[0, :, 0:3, 2:5])
    assert torch.equal(p.raw[3], style[0, :, 2:5, 0:3])
    assert torch.equal(p.raw[6], style[1, :, 0:3, 0:3])
    norms = p.filters.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms))


def test_hand_example_one_by_one_patches() -> None:
    # style pixels (C=2): s0=(1,0), s1=(0,2), s2=(1,1); normalised: (1,0), (0,1), (0.707,0.707)
    style = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]]).view(1, 2, 1, 3)
    content = torch.tensor([[3.0, 1.0, 1.0], [1.0, 3.0, 1.0]]).view(1, 2, 1, 3)
    # scores (3, 1, 2.83) -> s0; (1, 3, 2.83) -> s1; (1, 1, 1.41) -> s2
    out = style_swap_features(content, style, patch_size=1)
    assert torch.equal(out, style)


def test_hand_example_overlap_average() -> None:
    style = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(1, 1, 2, 3)  # p0=(1,2,4,5), p1=(2,3,5,6)
    content = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]).view(1, 1, 2, 3)
    # patch at column 0: (1,0,1,0) scores 5/|p0|=0.737 < 7/|p1|=0.814 -> p1
    # patch at column 1: (0,0,0,1) scores 5/|p0|=0.737 > 6/|p1|=0.698 -> p0
    out = style_swap_features(content, style, patch_size=2)
    expected = torch.tensor([[2.0, (3.0 + 1.0) / 2, 2.0], [5.0, (6.0 + 4.0) / 2, 5.0]]).view(1, 1, 2, 3)
    assert torch.equal(out, expected)


def test_content_equal_to_style_is_identity() -> None:
    torch.manual_seed(0)
    style = torch.randn(1, 16, 12, 10).relu()
    out = style_swap(style, style_swap_patches(style))
    assert torch.allclose(out, style, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_matches_one_hot_transposed_conv_reference(stride: int) -> None:
    torch.manual_seed(stride)
    content, style = torch.randn(2, 8, 3 + 5 * stride, 3 + 6 * stride), torch.randn(1, 8, 9, 11)
    p = style_swap_patches(style)
    out = style_swap(content, p, stride=stride)
    assert out.shape == content.shape
    assert torch.allclose(out, reference_style_swap(content, p, stride), atol=1e-5)


def test_stride_not_dividing_size_pads_edges() -> None:
    torch.manual_seed(1)
    content, style = torch.randn(1, 4, 12, 10), torch.randn(1, 4, 8, 8)
    p = style_swap_patches(style)
    out = style_swap(content, p, stride=2)  # (12 - 3) % 2 == 1: one replicated row/column
    padded = F.pad(content, (0, 1, 0, 1), mode="replicate")
    assert out.shape == content.shape
    assert torch.allclose(out, reference_style_swap(padded, p, 2)[:, :, :12, :10], atol=1e-5)


def test_chunked_equals_unchunked_exactly() -> None:
    torch.manual_seed(2)
    content, style = torch.randn(2, 6, 17, 15).relu(), torch.randn(1, 6, 11, 12).relu()
    p = style_swap_patches(style)
    for stride in (1, 2):
        full = style_swap(content, p, stride=stride, chunk_size=p.num_patches, max_memory_mb=1024)
        for chunk, mem in [(1, 1024.0), (7, 1e-3), (50, 0.05), (None, 1e-6)]:
            got = style_swap(content, p, stride=stride, chunk_size=chunk, max_memory_mb=mem)
            assert torch.equal(got, full), (stride, chunk, mem)


def test_several_style_images() -> None:
    torch.manual_seed(3)
    s1, s2 = torch.randn(1, 5, 7, 9), torch.randn(1, 5, 10, 6)
    p = style_swap_patches([s1, s2])
    cat = StyleSwapPatches.cat([style_swap_patches(s1), style_swap_patches(s2)])
    assert p.num_patches == 5 * 7 + 8 * 4
    assert torch.equal(p.raw, cat.raw) and torch.equal(p.filters, cat.filters)
    # a content equal to the second style is rebuilt from the second style's patches
    assert torch.allclose(style_swap(s2, p), s2, atol=1e-6)
    content = torch.randn(1, 5, 9, 9)
    assert torch.allclose(style_swap(content, p), reference_style_swap(content, p), atol=1e-5)


def test_bfloat16_matching_runs() -> None:
    torch.manual_seed(4)
    content, style = torch.randn(1, 8, 10, 10), torch.randn(1, 8, 10, 10)
    out = style_swap(content, style_swap_patches(style), compute_dtype=torch.bfloat16, algorithm="direct")
    assert out.shape == content.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bfloat16_rerank_recovers_the_exact_pick() -> None:
    # 1x1 patches: s1 beats s0 by 1.5e-4 in exact arithmetic, far below bf16's resolution (2^-8), so the
    # bf16 scores tie and the low-precision argmax keeps s0; re-scoring the candidates exactly picks s1
    style = torch.tensor([[1.0, 1.0], [0.0, 0.01], [0.0, 0.0], [0.0, 0.0]]).view(1, 4, 1, 2)
    content = torch.tensor([1.0, 0.02, 0.0, 0.0]).view(1, 4, 1, 1)
    p = style_swap_patches(style, patch_size=1)
    exact = style_swap(content, p)
    assert torch.equal(exact, style[..., 1:2])
    assert torch.equal(style_swap(content, p, compute_dtype=torch.bfloat16, rerank=4, algorithm="direct"), exact)
    plain = style_swap(content, p, compute_dtype=torch.bfloat16, rerank=1, algorithm="direct")
    assert torch.equal(plain, style[..., 0:1])


def test_bfloat16_rerank_matches_exact_on_correlated_features() -> None:
    torch.manual_seed(5)
    mix = torch.randn(32, 32) / 4
    feats = torch.relu(torch.einsum("dc,bchw->bdhw", mix, torch.randn(2, 32, 40, 40)) + 0.3)
    content, style = feats[:1], feats[1:]
    p = style_swap_patches(style)
    exact = style_swap(content, p)
    plain = style_swap(content, p, compute_dtype=torch.bfloat16, rerank=1, algorithm="direct")
    reranked = style_swap(content, p, compute_dtype=torch.bfloat16, rerank=4, algorithm="direct")
    changed = lambda out: ((out - exact).abs().amax(1) > 1e-6).float().mean().item()  # noqa: E731
    assert changed(plain) > 0  # plain bf16 does change picks on these features...
    assert changed(reranked) < changed(plain) / 10  # ...re-ranking 4 candidates undoes nearly all of it
    assert reranked.dtype == torch.float32


def test_style_swap_ignores_autocast() -> None:
    torch.manual_seed(6)
    content, style = torch.randn(1, 8, 12, 12), torch.randn(1, 8, 12, 12)
    p = style_swap_patches(style)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = style_swap(content, p)
    assert torch.equal(auto, style_swap(content, p))


def test_user_errors() -> None:
    p = style_swap_patches(torch.randn(1, 3, 5, 5))
    with pytest.raises(ConfigError, match="patch size"):
        style_swap(torch.randn(1, 3, 2, 8), p)
    with pytest.raises(ConfigError, match="stride"):
        style_swap(torch.randn(1, 3, 8, 8), p, stride=4)
    with pytest.raises(ConfigError, match="patch_size"):
        style_swap_patches(torch.randn(1, 3, 5, 5), patch_size=0)
    with pytest.raises(ConfigError, match="style"):
        style_swap_patches(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        style_swap(torch.randn(1, 4, 8, 8), p)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    from impasto.transforms import style_swap, style_swap_patches
    torch.set_num_threads(2)
    c, hc, hs, budget = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    algorithm = sys.argv[5]
    content = torch.randn(1, c, hc, hc).relu()
    patches = style_swap_patches(torch.randn(1, c, hs, hs).relu())
    def status_mb(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024
    before = status_mb("VmRSS")
    try:  # reset the high-water mark so that the import peak does not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    out = style_swap(content, patches, max_memory_mb=budget, algorithm=algorithm)
    peak = status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"extra_mb": peak - before, "finite": bool(torch.isfinite(out).all())}))
    """
)


def _extra_peak_mb(c: int, hc: int, hs: int, budget: float, algorithm: str = "auto") -> float:
    """Peak RSS above the RSS before the call (inputs and patches already allocated), in a fresh process.

    glibc's malloc runs with a fixed mmap threshold there, so that every large tensor is its own mapping, given
    back when freed, and the peak RSS follows the peak of the live tensors. With its default, adaptive threshold
    freed blocks are kept in the heap and reused or not depending on the order of sizes and threads, and the same
    call measured 47-151 MB from run to run (CI failed on one at 152 MB). Where the high-water mark cannot be
    reset, ru_maxrss also counts the import peak, so this can only overestimate the call's own peak.
    """
    res = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(c), str(hc), str(hs), str(budget), algorithm],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    )
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["finite"]
    return info["extra_mb"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("algorithm", ["direct", "correlation"])
def test_memory_bounded_large_content(algorithm: str) -> None:
    # 254^2 content patches x 62^2 style patches: an unchunked score map alone would take 1 GB. Measured above
    # the inputs with a 64 MB budget: direct 65.7 MB, correlation 48.6 MB (84.3 MB while each block's correlation
    # and row sums stayed alive into the next block's); the same in five runs each, to 0.2 MB
    assert _extra_peak_mb(16, 256, 64, budget=64, algorithm=algorithm) < 64 * 1.15


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_bounded_distilled_relu3_1_size() -> None:
    # 1x64x256x256 content vs 1x64x128x128 style: 1.2 TFLOP by the direct matching, about 15-80 s on 2 shared
    # cores; the unchunked score map alone would take 4.2 GB (measured: 137.7 MB above the inputs)
    assert _extra_peak_mb(64, 256, 128, budget=128, algorithm="direct") < 128 * 1.15


def test_output_is_a_constant_target() -> None:
    content = torch.randn(1, 4, 6, 6, requires_grad=True)
    out = style_swap(content, style_swap_patches(torch.randn(1, 4, 5, 5, requires_grad=True)))
    assert not out.requires_grad


def test_ties_pick_the_first_patch_in_every_chunking() -> None:
    # an all-zero content (ReLU features of a flat region) scores 0 against every style patch
    p = style_swap_patches(torch.randn(1, 3, 6, 6))
    content = torch.zeros(1, 3, 5, 7)
    expected = reference_style_swap(content, p)  # argmax returns the first maximum: patch 0 everywhere
    outs = [style_swap(content, p, chunk_size=chunk, algorithm="direct") for chunk in (None, 1, 5)]
    outs += [style_swap(content, p, algorithm="correlation", max_memory_mb=mem) for mem in (128.0, 1e-6)]
    assert torch.allclose(outs[0], expected, atol=1e-6)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_correlation_matches_direct_and_reference(k: int) -> None:
    # several style maps of different sizes, a batch of two non-square contents (no ReLU: with 1x1 patches,
    # ReLU zeros make exact ties between style pixels that point the same way, broken by rounding)
    torch.manual_seed(10 + k)
    content = torch.randn(2, 6, 13, 17)
    styles = [torch.randn(1, 6, 9, 12), torch.randn(1, 6, 11, 7)]
    p = style_swap_patches(styles, patch_size=k)
    assert p.maps is not None and len(p.maps) == 2
    corr = style_swap(content, p, algorithm="correlation")
    assert torch.allclose(corr, style_swap(content, p, algorithm="direct"), atol=1e-6)
    assert torch.allclose(corr, reference_style_swap(content, p), atol=1e-5)
    # the block size (set by the memory budget) does not change the picks
    assert torch.equal(style_swap(content, p, algorithm="correlation", max_memory_mb=1e-6), corr)


def test_correlation_picks_the_highest_normalised_score() -> None:
    # hand example, 2x2 patches on a 1-channel map (the same as test_hand_example_overlap_average)
    style = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(1, 1, 2, 3)
    content = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]).view(1, 1, 2, 3)
    out = style_swap(content, style_swap_patches(style, patch_size=2), algorithm="correlation")
    expected = torch.tensor([[2.0, (3.0 + 1.0) / 2, 2.0], [5.0, (6.0 + 4.0) / 2, 5.0]]).view(1, 1, 2, 3)
    assert torch.equal(out, expected)


def test_correlation_float64_content_stays_float64() -> None:
    torch.manual_seed(12)
    content, style = torch.randn(1, 4, 8, 9, dtype=torch.float64), torch.randn(1, 4, 7, 7, dtype=torch.float64)
    p = style_swap_patches(style)
    out = style_swap(content, p, algorithm="correlation")
    assert out.dtype == torch.float64
    assert torch.allclose(out, reference_style_swap(content, p), atol=1e-12)


def test_auto_picks_correlation_only_where_it_applies() -> None:
    torch.manual_seed(13)
    content, style = torch.randn(1, 4, 9, 9), torch.randn(1, 4, 8, 8)
    strided = style_swap_patches(style, style_stride=2)
    assert strided.maps is None  # patches at stride 2 are not all the windows of the map
    # auto falls back to direct for content stride 2 and for strided style patches, with the paper's result
    assert torch.allclose(style_swap(content, strided), reference_style_swap(content, strided), atol=1e-5)
    p = style_swap_patches(style)
    assert torch.allclose(style_swap(content, p, stride=2), reference_style_swap(content, p, 2), atol=1e-5)
    with pytest.raises(ConfigError, match="correlation"):
        style_swap(content, p, stride=2, algorithm="correlation")
    with pytest.raises(ConfigError, match="style_stride"):
        style_swap(content, strided, algorithm="correlation")
    with pytest.raises(ConfigError, match="auto"):
        style_swap(content, p, algorithm="fft")


def test_patch_maps_travel_with_the_patches() -> None:
    s1, s2 = torch.randn(2, 3, 5, 6), torch.randn(1, 3, 4, 4)
    p = style_swap_patches(s1)
    assert len(p.maps) == 2 and torch.equal(p.maps[1], s1[1:2])  # a batch of maps: one map per image
    both = StyleSwapPatches.cat([p, style_swap_patches(s2)])
    assert len(both.maps) == 3 and torch.equal(both.maps[2], s2)
    assert StyleSwapPatches.cat([p, style_swap_patches(s2, style_stride=2)]).maps is None
    assert p.to(dtype=torch.float64).maps[0].dtype == torch.float64
    assert p.nbytes == (p.raw.numel() + p.norms.numel() + s1.numel()) * 4


def test_keep_better_rows_is_the_argmax_of_all_blocks() -> None:
    # small integer scores make many ties, within a block and across blocks; the running max over blocks must
    # give argmax's answer over the concatenation (the first maximal column), whichever rows improve in a block
    from impasto.transforms.style_swap import _keep_better_rows

    torch.manual_seed(14)
    for widths in ([5, 3, 7], [1, 1, 1, 1], [9]):
        blocks = [torch.randint(0, 4, (6, n)).float() for n in widths]
        best_val = torch.full((6,), -torch.inf)
        best_idx = torch.zeros(6, dtype=torch.long)
        base = 0
        for blk in blocks:
            _keep_better_rows(best_val, best_idx, blk, base)
            base += blk.shape[1]
        whole = torch.cat(blocks, 1)
        assert torch.equal(best_idx, whole.argmax(1))
        assert torch.equal(best_val, whole.amax(1))
