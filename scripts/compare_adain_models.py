"""Compare two AdaIN model files on the evaluation's study 3 (style losses, Magenta retrieval, SSIM, edges, grid
artefacts), with labels of your choice (``impasto evaluate --studies 3`` calls its two models classic/balanced).

    IMPASTO_WEIGHTS_DIR=../shared/weights python scripts/compare_adain_models.py OLD.pt NEW.pt \\
        --labels "step 3000,step 9000" --out docs/evaluation/adain_longer --max-size 256

Writes ``report.md``, ``study3_summary.csv``, ``study3_pairs.csv`` and ``study3_grid.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from impasto.evaluation.studies import make_context, study_trained_adain

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", help="AdaIN model.pt (first column)")
    ap.add_argument("second", help="AdaIN model.pt (second column)")
    ap.add_argument("--labels", default="first,second", help="two comma-separated labels")
    ap.add_argument("--out", required=True)
    ap.add_argument("--content", default=str(DATA / "content"))
    ap.add_argument("--style", default=str(DATA / "style"))
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    labels = tuple(x.strip() for x in a.labels.split(","))
    if len(labels) != 2:
        ap.error(f"--labels needs two labels, got {a.labels!r}")
    torch.set_num_threads(a.threads)
    ctx = make_context(a.content, a.style, ["adain"], pairs=a.pairs, seed=a.seed, max_size=a.max_size)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = study_trained_adain(ctx, out, a.first, a.second, labels=labels)
    command = "python " + " ".join(shlex.quote(x) for x in ["scripts/compare_adain_models.py", *sys.argv[1:]])
    (out / "report.md").write_text(f"# AdaIN models compared\n\nCommand:\n\n```\n{command}\n```\n\n"
                                   + res["markdown"] + "\n")
    print(res["markdown"])


if __name__ == "__main__":
    main()
