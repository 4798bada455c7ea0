"""How much of a stylised image's edge score the painting decides: per-pair edges of the confirmatory study
(confirm/quality.csv) against the painting's texture (mean Sobel magnitude of its luminance at 512 px).

    IMPASTO_WEIGHTS_DIR=../shared/weights python docs/models/session23/texture_vs_edges.py
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))
from eval_models import SPLIT, read_split, resize_long  # noqa: E402

from impasto.evaluation.metrics import sharpness  # noqa: E402
from impasto.io.images import load_tensor  # noqa: E402


def main() -> None:
    _, paintings = read_split(SPLIT, ROOT.parent / "shared" / "data" / "corpus")
    texture = {p.name: float(sharpness(resize_long(load_tensor(p), 512))[0]) for p in paintings}
    q = sorted(texture.values())
    smooth, busy = q[len(q) // 4], q[3 * len(q) // 4]
    with open(Path(__file__).parent / "confirm" / "quality.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("edges")]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [(float(r["edges"]), texture[r["painting"]]) for r in rows if r["model"] == model]
        rho, p = spearmanr([e for e, _ in mine], [t for _, t in mine])
        print(f"{model}: Spearman {rho:.2f} (p {p:.1e}) over {len(mine)} pairs; median edges with the smoothest "
              f"quarter of paintings {statistics.median(e for e, t in mine if t <= smooth):.3f}, the busiest "
              f"quarter {statistics.median(e for e, t in mine if t >= busy):.3f}")


if __name__ == "__main__":
    main()
