"""impasto export: ONNX graphs with dynamic sizes give PyTorch's images under onnxruntime (real weights, photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.io.images import load_tensor
from impasto.pipeline import Stylizer

pytestmark = [pytest.mark.weights, pytest.mark.slow]
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript", reason="exporting needs onnx and onnxscript (pip install 'impasto[export]')")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean().clamp_min(1e-20)))


@pytest.mark.parametrize("method", ["adain", "microast", "sanet"])
def test_exported_graph_gives_pytorchs_image(method: str, tmp_path: Path, content_path: Path, style_path: Path
                                             ) -> None:
    from impasto.export import export_onnx

    files = export_onnx(method, tmp_path / f"{method}.onnx", int8=True)
    assert [f.name for f in files] == [f"{method}.onnx", f"{method}.int8.onnx"]
    st = Stylizer(method, precision="fp32")
    photo = load_tensor(content_path)
    style = F.interpolate(load_tensor(style_path), size=(300, 280), mode="area")
    fp32, int8 = (ort.InferenceSession(str(f)) for f in files)
    for size in [(192, 288), (333, 517), (512, 341)]:  # sizes the graph was not traced with, odd ones too
        c = F.interpolate(photo, size=size, mode="area")
        ref = st.stylize_tensor(c, style, alpha=0.7)
        feed = {"content": c.numpy(), "style": style.numpy(), "alpha": np.array([0.7], np.float32)}
        out = torch.from_numpy(fp32.run(None, feed)[0])
        assert out.shape == ref.shape and psnr(out, ref) >= 40, psnr(out, ref)
        q = torch.from_numpy(int8.run(None, feed)[0])
        print(f"{method} {size}: fp32 {psnr(out, ref):.1f} dB, int8 {psnr(q, ref):.1f} dB")
        assert q.shape == ref.shape and psnr(q, ref) > 20  # measured 29-32 dB: dynamic int8 keeps the picture


def test_export_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    from impasto.export import export_onnx

    with pytest.raises(ConfigError, match="supports adain, microast, sanet, iecontraast; 'wct' is not one"):
        export_onnx("wct", tmp_path / "s.onnx")
    with pytest.raises(ConfigError, match="NAME.onnx"):
        export_onnx("adain", tmp_path / "s.bin")
