"""Content kept by measures the edge loss does not train on: SSIM with the photo, the edge correlation at half the
size (256 px, both images area-downscaled), and the real VGG-19's mean-variance-normalised relu3_1 content distance
(training reads the distilled encoder only). Medians over the validation pairs, and a paired Wilcoxon test of each
model against the first.

    IMPASTO_WEIGHTS_DIR=../shared/weights python docs/models/session24/structure_check.py \
        --model sanet --model e10=sanet:runs/e10/model_500.pt [--pairs 96 --pairs-from 0] --out structure.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import wilcoxon

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))
from eval_models import SPLIT, make_pairs, parse_model, read_split, resize_long  # noqa: E402

from impasto.backbones import load_encoder  # noqa: E402
from impasto.evaluation.metrics import edge_correlation, ssim  # noqa: E402
from impasto.io.images import load_tensor  # noqa: E402
from impasto.losses import content_loss  # noqa: E402
from impasto.pipeline import Stylizer  # noqa: E402

#: (column, higher is better)
MEASURES = {"edges_512": True, "edges_256": True, "ssim": True, "vgg_relu3_1": False}


def half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="area")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="LABEL=METHOD[:CHECKPOINT] or METHOD")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--pairs-from", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    photos, paintings = read_split(SPLIT, ROOT.parent / "shared" / "data" / "corpus")
    pairs = make_pairs(len(photos), len(paintings), args.pairs_from + args.pairs)[args.pairs_from:]
    vgg = load_encoder("vgg19", "relu3_1")
    values: dict[str, dict[str, list[float]]] = {}
    for spec in args.model:
        label, method, ck = parse_model(spec)
        st = Stylizer(method, **({"checkpoint": ck} if ck else {}))
        cols: dict[str, list[float]] = {m: [] for m in MEASURES}
        for i, j in pairs:
            c = resize_long(load_tensor(photos[i]), 512)
            o = st.stylize_tensor(c, resize_long(load_tensor(paintings[j]), 512)).float().clamp(0, 1)
            cols["edges_512"].append(float(edge_correlation(o, c)[0]))
            cols["edges_256"].append(float(edge_correlation(half(o), half(c))[0]))
            cols["ssim"].append(float(ssim(o, c)[0]))
            with torch.no_grad():
                cols["vgg_relu3_1"].append(float(content_loss(vgg(o, ["relu3_1"]), vgg(c, ["relu3_1"]),
                                                              normalize=True)))
        values[label] = cols
        print(label, {m: round(statistics.median(v), 3) for m, v in cols.items()}, file=sys.stderr)
    labels = list(values)
    given = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"Command: `python docs/models/session24/structure_check.py {given}`",
             "", f"{len(pairs)} validation pairs (pairs {args.pairs_from + 1}..{args.pairs_from + len(pairs)} of the "
             "fixed sequence) at 512 px. Medians; ssim and edges higher = more of the photo kept, vgg_relu3_1 "
             "(real VGG-19, mean-variance-normalised MSE) lower = more kept.", "",
             "| model | " + " | ".join(MEASURES) + " |", "|---|" + "---|" * len(MEASURES)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{statistics.median(values[label][m]):.3f}" for m in MEASURES)
                     + " |")
    for label in labels[1:]:
        ref = labels[0]
        lines += ["", f"{label} vs {ref} (Wilcoxon signed-rank over the same pairs): pairs where {label} keeps more",
                  "", "| measure | keeps more | p |", "|---|---|---|"]
        for m, up in MEASURES.items():
            d = [a - b for a, b in zip(values[label][m], values[ref][m], strict=True)]
            better = sum((x > 0) if up else (x < 0) for x in d)
            lines.append(f"| {m} | {better}/{len(d)} | {wilcoxon(d).pvalue:.1e} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
