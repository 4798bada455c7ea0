"""At which scale were issue 21's quoted numbers measured? Edges and moved of the first N validation pairs, 5 ways.

The issue quotes edges of magenta 0.71, microast 0.83, adain 0.71-0.76 and moved of magenta 0.46, microast 0.49,
adain 0.29-0.38; impasto's protocol (stylise at 512 px, measure at 512 px) gives other numbers. From the repository
root: ``IMPASTO_WEIGHTS_DIR=../shared/weights python docs/models/session21/measure_scales.py 24 magenta sanet``.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]  # the repository
sys.path.insert(0, str(ROOT / "scripts"))
from eval_models import make_pairs, read_split, resize_long  # noqa: E402

from impasto.backbones import load_encoder  # noqa: E402
from impasto.evaluation.metrics import _gaussian_window, edge_correlation  # noqa: E402
from impasto.evaluation.quality import STYLE_LAYERS, style_moved  # noqa: E402
from impasto.io.images import load_tensor  # noqa: E402
from impasto.pipeline import Stylizer  # noqa: E402


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 1 x 3 x H x W image."""
    k = int(2 * round(3 * sigma) + 1)
    g = _gaussian_window(k, sigma, torch.float32, x.device)
    x = F.pad(x, (k // 2,) * 4, mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, g.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)


def main() -> None:
    torch.set_num_threads(1)
    photos, paintings = read_split(ROOT / "docs/models/validation_split.txt", ROOT.parent / "shared/data/corpus")
    pairs = make_pairs(len(photos), len(paintings), 96)[: int(sys.argv[1])]
    vgg = load_encoder("vgg19", "relu3_1")

    def encode(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return vgg(x, list(STYLE_LAYERS))

    for method in sys.argv[2:]:
        st = Stylizer(method, precision="auto")
        r: dict[str, list[float]] = {k: [] for k in ("edges@512", "edges@512->256", "edges@512->128", "edges@512 blur1",
                                                     "edges@256", "moved@512", "moved@512->256", "moved@256")}
        for i, j in pairs:
            c, s = resize_long(load_tensor(photos[i]), 512), resize_long(load_tensor(paintings[j]), 512)
            c2, s2 = resize_long(c, 256), resize_long(s, 256)
            with torch.no_grad():
                o = st.stylize_tensor(c, s).float().clamp(0, 1)
                o2 = st.stylize_tensor(c2, s2).float().clamp(0, 1)
                o_256, o_128 = resize_long(o, 256), resize_long(o, 128)
                r["edges@512"].append(float(edge_correlation(o, c)))
                r["edges@512->256"].append(float(edge_correlation(o_256, c2)))
                r["edges@512->128"].append(float(edge_correlation(o_128, resize_long(c, 128))))
                r["edges@512 blur1"].append(float(edge_correlation(blur(o, 1.0), blur(c, 1.0))))
                r["edges@256"].append(float(edge_correlation(o2, c2)))
                r["moved@512"].append(float(style_moved(encode, o, c, s)))
                r["moved@512->256"].append(float(style_moved(encode, o_256, c2, s2)))
                r["moved@256"].append(float(style_moved(encode, o2, c2, s2)))
        print(method, "  ".join(f"{k}={statistics.median(v):.3f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
