"""Smoke tests of benchmarks/bench_inference.py: the MAC counter against hand counts, the analytic style-swap and
Magenta counts, the peak-memory probe, and one tiny case run in-process and through the worker subprocess."""

from __future__ import annotations

import importlib.util
import math
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


def test_mac_counter_hand_counts(bench):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)  # 1x3x8x8 -> 1x4x6x6: 36 outputs x 4 channels x (3*3*3)
    grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2)  # 1x4x6x6 -> 1x6x6x6: 216 outputs x (2*3*3)
    tconv = nn.ConvTranspose2d(6, 2, 2, stride=2)  # 216 inputs x (2*2*2)
    lin = nn.Linear(5, 7)  # 2 x 5 -> 2 x 7: 70
    with torch.no_grad(), bench.MacCounter() as mc:
        y = tconv(grouped(conv(torch.rand(1, 3, 8, 8))))
        lin(torch.rand(2, 5))
        torch.rand(3, 4) @ torch.rand(4, 2)  # 24
        torch.bmm(torch.rand(2, 3, 4), torch.rand(2, 4, 5))  # 120
        torch.rand(3, 8, 8).mean()  # no MACs
    assert y.shape == (1, 2, 12, 12)
    assert mc.by_kind["conv"] == 36 * 4 * 27 + 216 * 18 + 216 * 8
    assert mc.by_kind["matmul"] == 70 + 24 + 120
    assert mc.total == 3888 + 3888 + 1728 + 214


def test_mac_counter_sees_fused_convs(bench):
    """impasto.layers.conv2d runs oneDNN's conv with a fused ReLU on CPU inference: counted like a conv."""
    from impasto.layers import BORDER_FIX_MIN_SIDE, conv2d, reflect_conv2d

    n = BORDER_FIX_MIN_SIDE
    x, w = torch.rand(1, 8, n, n), torch.rand(16, 8, 3, 3)
    with torch.no_grad(), bench.MacCounter() as mc:
        conv2d(x, w, relu=True)  # (n-2)^2 outputs x 16 channels x 72
        reflect_conv2d(x, w, relu=True)  # n^2 outputs (border fix: its edge rows/columns are counted again)
    assert mc.by_kind["conv"] >= ((n - 2) ** 2 + n**2) * 16 * 72


def test_mac_counter_backward_and_parts(bench):
    conv = nn.Conv2d(2, 3, 3, padding=1)
    timer = bench.PartTimer()
    timer.add_module("net", conv)
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    try:
        with bench.MacCounter(timer) as mc:
            conv(x).sum().backward()
    finally:
        timer.close()
    fwd = 25 * 3 * 18
    assert mc.by_part["net"] == fwd
    assert mc.by_kind["conv_backward"] == 2 * fwd  # input and weight gradients
    assert timer.calls["net"] == 1 and timer.seconds["net"] > 0
    assert not conv._forward_hooks and not conv._forward_pre_hooks


def test_style_swap_matching_macs_equal_counted(bench):
    from impasto.transforms.style_swap import style_swap, style_swap_patches

    torch.manual_seed(0)
    content, style = torch.rand(1, 4, 9, 10), torch.rand(1, 4, 6, 7)
    for stride, style_stride in ((1, 1), (2, 1), (1, 2)):
        patches = style_swap_patches(style, 3, style_stride)
        with bench.MacCounter() as mc:
            style_swap(content, patches, stride=stride, chunk_size=5, algorithm="direct")
        expected = bench.style_swap_matching_macs((9, 10), (6, 7), 4, 3, stride, style_stride)
        assert mc.by_kind["matmul"] == expected
    # hand count, stride 2: rows (9-3)/2+1 = 4, columns padded 10 -> 11: 5; style 4 x 5 patches; C*k*k = 36
    assert bench.style_swap_matching_macs((9, 10), (6, 7), 4, 3, 2, 1) == 20 * 20 * 36
    # the correlation algorithm: one block of all 9 content rows x all 6 style rows: (9*10) x C x (6*7)
    with bench.MacCounter() as mc:
        style_swap(content, style_swap_patches(style, 3), algorithm="correlation")
    assert mc.by_kind["matmul"] == 90 * 4 * 42 < bench.style_swap_matching_macs((9, 10), (6, 7), 4, 3)


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


@pytest.mark.weights
def test_magenta_transform_macs(bench, weights_dir):
    path = weights_dir / "peers" / "arbitrary_transform.onnx"
    if not path.is_file():
        pytest.skip("Magenta ONNX files not present")
    # per pixel: 9x9 3->8, 3x3 8->16 at 1/2, 3x3 16->32 at 1/4, 10 x 3x3 32->32 at 1/4, 3x3 32->16 at 1/2,
    # 3x3 16->8, 9x9 8->3
    per_px = 1944 + 288 + 288 + 5760 + 1152 + 1152 + 1944
    assert bench.magenta_transform_macs(64, 64, path) == per_px * 64 * 64
    assert bench.magenta_transform_macs(62, 61, path) == per_px * 64 * 64  # padded to multiples of 4


@pytest.mark.bf16
@pytest.mark.weights
def test_run_case_tiny_in_process(bench, weights_dir, content_path, style_path):
    case = bench.Case("adain-16x", "adain", {"encoder": "vgg19-16x"}, 64, 48, repeats=1)
    res = bench.run_case(
        case, content_path, style_path, enc_repeats=1, throughput_repeats=1, style_size=64, calib_size=32
    )
    r = bench.derive(res)
    assert r["out_shape"] == [1, 3, 48, 64]
    assert r["timed_runs"] == 1 and r["time_s"] > 0
    # convs, and the tiny matrix products that fold the encoder's 1x1 colour conv into conv1_1 (1344 MACs here)
    assert r["macs"] > 0 and r["macs_by_kind"]["conv"] >= 0.999 * r["macs"]
    # every conv runs inside the encoder or decoder (content pass only: the style is cached)
    assert set(r["macs_by_part"]) <= {"encoder", "decoder"}
    assert r["macs_by_part"]["encoder"] > 0 and r["macs_by_part"]["decoder"] > 0
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
            "--style-size", "64", "--calib-size", "32", "--content", str(content_path),
            "--style", str(style_path), "--out", str(tmp_path), "--name", "t",
        ]
    )  # fmt: skip
    assert rc == 0
    md = (tmp_path / "t.md").read_text()
    csv_text = (tmp_path / "t.csv").read_text()
    assert "bench_inference.py" in md and "--cases microast" in md
    assert "| microast |" in md and "error" not in md
    row = csv_text.splitlines()[1]
    assert row.startswith("microast,microast,") and "64x64" in row
