"""Plot the loss terms of training runs (their ``log.jsonl``) against the step, one panel per term.

    python scripts/plot_logs.py --out docs/models/curves_sanet.png sanet=docs/models/sanet/log.jsonl \\
        iecontraast=docs/models/iecontraast/log.jsonl:2000

``LABEL=LOG[:OFFSET]``: OFFSET is added to the run's steps (a run started from another run's step OFFSET).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=LOG[:OFFSET]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--smooth", type=int, default=8, help="moving average over this many log lines")
    args = ap.parse_args()
    runs = []
    for spec in args.runs:
        label, _, rest = spec.partition("=")
        path, _, offset = rest.partition(":")
        runs.append((label, read(path), int(offset or 0)))
    terms = sorted({k for _, recs, _ in runs for r in recs for k in r.get("losses", {})})
    cols = min(4, len(terms))
    rows = (len(terms) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms, strict=False):
        for i, (label, recs, offset) in enumerate(runs):
            pts = [(r["step"] + offset, r["losses"][term]) for r in recs if term in r.get("losses", {})]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            k = max(1, args.smooth)
            sm = [sum(ys[max(0, i - k + 1): i + 1]) / len(ys[max(0, i - k + 1): i + 1]) for i in range(len(ys))]
            ax.plot(xs, sm, label=label, color=f"C{i}")
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
