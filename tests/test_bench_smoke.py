"""Smoke tests of benchmarks/bench_inference.py (the FLOP and byte counters against hand counts, the analytic
style-swap and Magenta counts, the roofline, the peak-memory probe, one tiny case run in-process and through the
worker subprocess) and of benchmarks/bench_backends.py (one tiny case, old code against new, in one process)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_inference.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_inference"] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def test_flop_counter_hand_counts(bench):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)  # 1x3x8x8 -> 1x4x6x6: 36 outputs x 4 channels x (3*3*3) MACs
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2)  # 1x4x6x6 -> 1x6x6x6: 216 outputs x (2*3*3)
    tconv = nn.ConvTranspose2d(6, 2, 2, stride=2)  # 216 inputs x (2*2*2)
    lin = nn.Linear(5, 7)  # 2 x 5 -> 2 x 7: 70
    with torch.no_grad(), bench.FlopCounter() as fc:
        y = tconv(grouped(conv(torch.rand(1, 3, 8, 8))))
        lin(torch.rand(2, 5))
        torch.rand(3, 4) @ torch.rand(4, 2)  # 24
        torch.bmm(torch.rand(2, 3, 4), torch.rand(2, 4, 5))  # 120
        torch.mv(torch.rand(3, 4), torch.rand(4))  # 12 (FlopCounterMode alone skips mv)
        torch.rand(3, 8, 8).mean()  # no FLOPs
    assert y.shape == (1, 2, 12, 12)
    # FLOPs = 2 x multiply-adds
    assert fc.by_kind["conv"] == 2 * (36 * 4 * 27 + 216 * 18 + 216 * 8)
    assert fc.by_kind["matmul"] == 2 * (70 + 24 + 120 + 12)
    assert fc.total == 2 * (3888 + 3888 + 1728 + 226)
    assert fc.by_part == {"other": fc.total}


def test_flop_counter_fused_conv_and_structural_zeros(bench):
    """oneDNN's conv with a fused ReLU (impasto's fused CPU convs) counts as a conv; zero weights do not count."""
    x, w = torch.rand(1, 8, 10, 10), torch.rand(16, 8, 3, 3)
    w_half = w.clone()
    w_half[8:] = 0  # half the filters are structural zeros
    fused = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    with torch.no_grad(), bench.FlopCounter() as fc:
        torch.nn.functional.conv2d(x, w_half)  # 8 x 8 outputs x 16 channels x 72, half of them zero
        if fused is not None and torch.backends.mkldnn.is_available():
            fused(x, w, None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
    full = 2 * 64 * 16 * 72
    assert fc.by_kind["conv"] == full // 2 + (full if fused is not None and torch.backends.mkldnn.is_available()
                                              else 0)


def test_flop_counter_backward_and_parts(bench):
    conv = nn.Conv2d(2, 3, 3, padding=1)
    timer = bench.PartTimer()
    timer.add_module("net", conv)
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    try:
        with bench.count_work(timer) as (fc, bc):
            conv(x).sum().backward()
    finally:
        timer.close()
    fwd = 2 * 25 * 3 * 18
    assert fc.by_part["net"] == fwd
    assert fc.by_kind["conv_backward"] == 2 * fwd  # input and weight gradients
    assert bc.by_part["net"] > 0 and bc.total >= bc.by_part["net"]
    assert timer.calls["net"] == 1 and timer.seconds["net"] > 0
    assert not conv._forward_hooks and not conv._forward_pre_hooks


def test_bytes_counter_hand_counts(bench):
    x, y = torch.rand(1000), torch.empty(1000)
    with bench.BytesCounter() as bc:
        x + 1  # read 4000, write 4000
        x.relu_()  # in place: read and write 4000
        y.copy_(x)  # the destination is written only: 4000 + 4000
        x.view(10, 100).t()  # views: nothing
        torch.add(x, x, out=y)  # x read once, out= written only: 4000 + 4000
        x.bfloat16()  # read 4000, write 2000
    assert bc.read == 5 * 4000
    assert bc.written == 4 * 4000 + 2000
    assert bc.total == bc.by_part["other"]


def test_style_swap_matching_flops_equal_counted(bench):
    from impasto.transforms.style_swap import style_swap, style_swap_patches

    torch.manual_seed(0)
    content, style = torch.rand(1, 4, 9, 10), torch.rand(1, 4, 6, 7)
    for stride, style_stride in ((1, 1), (2, 1), (1, 2)):
        patches = style_swap_patches(style, 3, style_stride)
        with bench.FlopCounter() as fc:
            style_swap(content, patches, stride=stride, chunk_size=5, algorithm="direct")
        expected = bench.style_swap_matching_flops((9, 10), (6, 7), 4, 3, stride, style_stride)
        assert fc.by_kind["matmul"] == expected
    # hand count, stride 2: rows (9-3)/2+1 = 4, columns padded 10 -> 11: 5; style 4 x 5 patches; C*k*k = 36
    assert bench.style_swap_matching_flops((9, 10), (6, 7), 4, 3, 2, 1) == 2 * 20 * 20 * 36
    # the correlation algorithm: one block of all 9 content rows x all 6 style rows: (9*10) x C x (6*7)
    with bench.FlopCounter() as fc:
        style_swap(content, style_swap_patches(style, 3), algorithm="correlation")
    assert fc.by_kind["matmul"] == 2 * 90 * 4 * 42 < bench.style_swap_matching_flops((9, 10), (6, 7), 4, 3)


def test_roofline_picks_the_larger_term(bench):
    assert bench.roofline(2e9, 1e9, 1e9, 1e9) == (2.0, 2.0, 1.0, "compute")
    assert bench.roofline(1e9, 4e9, 1e9, 2e9) == (2.0, 1.0, 2.0, "memory")
    assert bench.roofline(0, 0, 1e9, 1e9)[3] == "-"


def test_peak_memory_sees_a_temporary(bench):
    with bench.PeakMemory() as pm:
        a = torch.ones(40 * 2**20 // 4)  # 40 MB, touched
        del a
    if not pm.exact:
        pytest.skip("VmHWM cannot be reset here")
    assert 30 < pm.peak_mb < 200


def test_throughput_is_positive(bench):
    assert bench.conv_throughput(1, size=32, channels=16) > 0
    assert bench.matmul_throughput(1, n=64, k=64) > 0
    assert bench.copy_bandwidth(2, mib=1) > 0


@pytest.mark.weights
def test_magenta_transform_flops(bench, weights_dir):
    path = weights_dir / "peers" / "arbitrary_transform.onnx"
    if not path.is_file():
        pytest.skip("Magenta ONNX files not present")
    # per pixel: 9x9 3->8, 3x3 8->16 at 1/2, 3x3 16->32 at 1/4, 10 x 3x3 32->32 at 1/4, 3x3 32->16 at 1/2,
    # 3x3 16->8, 9x9 8->3 (multiply-adds; FLOPs = 2x)
    per_px = 1944 + 288 + 288 + 5760 + 1152 + 1152 + 1944
    assert bench.magenta_transform_flops(64, 64, path) == 2 * per_px * 64 * 64
    assert bench.magenta_transform_flops(62, 61, path) == 2 * per_px * 64 * 64  # padded to multiples of 4


@pytest.mark.bf16
@pytest.mark.weights
def test_run_case_tiny_in_process(bench, weights_dir, content_path, style_path):
    case = bench.Case("adain-16x", "adain", {"encoder": "vgg19-16x"}, 64, 48, repeats=1)
    res = bench.run_case(
        case, content_path, style_path, enc_repeats=1, throughput_repeats=1, style_size=64, calib_size=32, bw_mib=4
    )
    r = bench.derive(res)
    assert r["out_shape"] == [1, 3, 48, 64]
    assert r["timed_runs"] == 1 and r["time_s"] > 0
    # convs, and the tiny matrix products that fold the encoder's 1x1 colour conv into conv1_1 (2688 FLOPs here)
    assert r["flops"] > 0 and r["flops_by_kind"]["conv"] >= 0.999 * r["flops"]
    # every conv runs inside the encoder or decoder (content pass only: the style is cached)
    assert set(r["flops_by_part"]) <= {"encoder", "decoder"}
    assert r["flops_by_part"]["encoder"] > 0 and r["flops_by_part"]["decoder"] > 0
    # bytes moved: at least the input image read and the output written, more inside the networks
    assert r["bytes"] > 2 * 3 * 48 * 64 * 4 and r["bytes_by_part"]["encoder"] > 0
    assert r["conv_flops_per_s"] > 0 and r["copy_bytes_per_s"] > 0
    assert r["bound_by"] in ("compute", "memory")
    assert r["bound_s"] == max(r["compute_bound_s"], r["memory_bound_s"])
    assert math.isfinite(r["ratio"]) and r["ratio"] > 0
    # both encoder timings are measured (their order is not asserted: one run at 64 px is noise on a loaded machine)
    assert r["enc_uncached_s"] > 0 and r["enc_cached_s"] >= 0
    assert math.isfinite(r["peak_mb"])


@pytest.mark.bf16
@pytest.mark.weights
def test_main_worker_writes_tables(bench, weights_dir, content_path, style_path, tmp_path):
    rc = bench.main(
        [
            "--cases", "microast", "--sizes", "64", "--repeats", "1", "--enc-repeats", "1",
            "--style-size", "64", "--calib-size", "32", "--bw-mib", "4", "--content", str(content_path),
            "--style", str(style_path), "--out", str(tmp_path), "--name", "t",
        ]
    )  # fmt: skip
    assert rc == 0
    md = (tmp_path / "t.md").read_text()
    csv_text = (tmp_path / "t.csv").read_text()
    assert "bench_inference.py" in md and "--cases microast" in md
    assert "| microast |" in md and "error" not in md
    assert "roofline" in md and "GB moved" in md
    row = csv_text.splitlines()[1]
    assert row.startswith("microast,microast,") and "64x64" in row


# ---------------------------------------------------------------------------------------------------------------
# benchmarks/bench_backends.py
# ---------------------------------------------------------------------------------------------------------------
BACKENDS = BENCH.parent / "bench_backends.py"


@pytest.fixture(scope="module")
def backends_bench():
    spec = importlib.util.spec_from_file_location("bench_backends", BACKENDS)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_backends"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_backends_rewrites_package_refs(backends_bench):
    lines = [
        ("from impasto.layers import conv2d", "from impasto_old.layers import conv2d"),
        ("import impasto.methods.adain as m", "import impasto_old.methods.adain as m"),
        ("from impasto import Stylizer", "from impasto_old import Stylizer"),
        ("import impasto", "import impasto_old"),
        ("x = impasto.pipeline", "x = impasto_old.pipeline"),
        ("mods = ['impasto.training.tasks.adain']", "mods = ['impasto_old.training.tasks.adain']"),
        ("import impasto_extra", "import impasto_extra"),
        ("from .base import y", "from .base import y"),  # relative imports stay
    ]
    src = "\n".join(a for a, _ in lines)
    assert backends_bench.rewrite_package_refs(src) == "\n".join(b for _, b in lines)
    assert backends_bench.halves_ratio([1.0, 9.0, 2.0, 2.0]) == 2.0 / 5.0
    assert backends_bench.iqr_rel([1.0]) == 0.0


@pytest.mark.weights
def test_backends_old_head_against_new_tiny(weights_dir, content_path, style_path, tmp_path):
    """bench_backends.py end to end at 64 px, one round, one case, the old code = HEAD (a fresh process: the
    old package is imported from a temporary folder). About 5-15 s."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH.parents[1], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    cmd = [
        sys.executable, str(BACKENDS), "--old", "HEAD", "--cases", "adain-16x", "--sizes", "64", "--rounds", "1",
        "--precisions", "fp32", "--style-size", "64", "--content", str(content_path), "--style", str(style_path),
        "--out", str(tmp_path), "--name", "t",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    md = (tmp_path / "t.md").read_text()
    assert "bench_backends.py" in md and "--old HEAD" in md and "impasto_old" in md
    row = next(line for line in md.splitlines() if line.startswith("| adain-16x | fp32 | 64x64 |"))
    assert "error" not in row and ("PASS" in row or "FAIL" in row)
    csv_rows = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_rows[0].startswith("label,method,") and csv_rows[1].startswith("adain-16x,adain,")
