"""Measure stylisation models on impasto's validation split (issue 21): style moved, edges kept, grid, retrieval.

Every model stylises the same pairs of validation photos and paintings (docs/models/validation_split.txt, never
trained on) at 512 px (long side), in one run. Per pair: ``moved`` (impasto.evaluation.quality.style_moved, real
VGG-19 relu1_1..relu3_1), ``edges`` (Sobel edge correlation with the photo), ``grid`` (16-pixel grid energy over
its chance level) and the Magenta style-retrieval rank of the painting used among the 48 validation paintings.
Writes ``OUT/quality.csv`` (one row per model and pair), ``OUT/quality.md`` (medians) and, with ``--grids``, a
6 x 6 grid of validation pairs at 256 px per model (``OUT/grid_LABEL.jpg``).

    IMPASTO_WEIGHTS_DIR=../shared/weights python scripts/eval_models.py --out docs/models \\
        --model adain --model sanet --model iecontraast --model magenta --model microast --pairs 96 --grids

A model is ``LABEL=METHOD[:CHECKPOINT]`` or just ``METHOD`` (label = method). Outputs are deterministic, so a
candidate can be paired with a model measured in an earlier run without stylising again: ``--with-rows`` adds that
run's ``quality.csv`` rows (made with the same split, pairs, size and video settings) to the ``--compare`` tests:

    python scripts/eval_models.py --out runs/eval --model next=sanet:runs/sanet/model.pt --video ../shared/data/video \
        --with-rows docs/models/session17/quality.csv --compare next,sanet
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from impasto.backbones import load_encoder
from impasto.evaluation.metrics import edge_correlation
from impasto.evaluation.quality import STYLE_LAYERS, grid_to_noise, style_moved
from impasto.evaluation.retrieval import MagentaStyleEncoder, retrieval_rate
from impasto.io.images import load_tensor
from impasto.pipeline import Stylizer

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ROOT / "docs" / "models" / "validation_split.txt"


def read_split(path: Path, corpus: Path) -> tuple[list[Path], list[Path]]:
    photos, paintings = [], []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            (photos if line.startswith("photos/") else paintings).append(corpus / line)
    return photos, paintings


def make_pairs(n_photos: int, n_paintings: int, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` (photo, painting) pairs: each photo in turn with paintings drawn from repeated permutations."""
    g = torch.Generator().manual_seed(seed)
    perm: list[int] = []
    while len(perm) < n:
        perm += torch.randperm(n_paintings, generator=g).tolist()
    return [(i % n_photos, perm[i]) for i in range(n)]


def resize_long(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = size / max(h, w)
    if s >= 1:
        return x
    return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")


def parse_model(spec: str) -> tuple[str, str, str | None]:
    label, _, rest = spec.partition("=")
    if not rest:
        rest = label
    method, _, ck = rest.partition(":")
    return label, method, ck or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="LABEL=METHOD[:CHECKPOINT] or METHOD")
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "data" / "corpus"))
    ap.add_argument("--split", default=str(SPLIT))
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--pairs-from", type=int, default=0, metavar="K",
                    help="skip the first K pairs of the fixed sequence: a study on pairs no earlier run has seen "
                         "(--pairs 288 --pairs-from 96 measures pairs 97..384)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--grids", action="store_true", help="also write a 6 x 6 grid at 256 px per model")
    ap.add_argument("--video", help="folder of clips: warping error per model, clip and painting (no smoothing)")
    ap.add_argument("--video-styles", type=int, default=8, help="validation paintings per clip")
    ap.add_argument("--video-styles-from", type=int, default=0, metavar="K",
                    help="skip the first K validation paintings for the clips: a video study on clip-painting "
                         "pairs no earlier run has seen (--video-styles 16 --video-styles-from 8: paintings 9..24)")
    ap.add_argument("--video-frames", type=int, default=12)
    ap.add_argument("--video-size", type=int, default=256)
    ap.add_argument("--self-edges", action="store_true",
                    help="also stylise every validation photo with itself as the style: the edge correlation a "
                         "model keeps when there is no style to transfer (its decoder's ceiling)")
    ap.add_argument("--compare", action="append", default=[],
                    help="A,B: paired comparison of two labels (Wilcoxon signed-rank over the same pairs)")
    ap.add_argument("--with-rows", action="append", default=[], metavar="CSV",
                    help="quality.csv of an earlier run with the same settings: its models join --compare")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not args.model and not args.with_rows:
        ap.error("give at least one --model to measure (or --with-rows to compare earlier runs)")
    earlier = [r for path in args.with_rows for r in read_rows(Path(path))]
    measured, now = {r["model"] for r in earlier}, {parse_model(m)[0] for m in args.model}
    again = measured & now
    if again:
        ap.error(f"{', '.join(sorted(again))}: measured now and in --with-rows; give the new model another label "
                 "(LABEL=METHOD[:CHECKPOINT])")
    for spec in args.compare:
        labels = spec.split(",")
        known = measured | now
        if len(labels) != 2 or not set(labels) <= known:
            ap.error(f"--compare {spec}: give two labels of measured models, A,B (known: {', '.join(sorted(known))})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos, paintings = read_split(Path(args.split), Path(args.corpus))
    if args.pairs_from < 0 or args.pairs < 1:
        ap.error("--pairs must be >= 1 and --pairs-from >= 0")
    if args.video_styles < 1 or not 0 <= args.video_styles_from <= len(paintings) - args.video_styles:
        ap.error(f"--video-styles must be >= 1 and --video-styles-from >= 0, together at most the "
                 f"{len(paintings)} validation paintings")
    pairs = make_pairs(len(photos), len(paintings), args.pairs_from + args.pairs)[args.pairs_from:]
    rows, summary = measure(args, out, photos, paintings, pairs) if args.model else ([], [])
    write_report(args, argv, out, rows, summary, earlier, (len(photos), len(paintings), len(pairs)))
    return 0


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier run's quality.csv, empty cells dropped (a pair row has no clip, a clip row no photo)."""
    if not path.is_file():
        raise SystemExit(f"--with-rows {path}: no such file; give the quality.csv an earlier eval_models run wrote")
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def measure(args: argparse.Namespace, out: Path, photos: list[Path], paintings: list[Path],
            pairs: list[tuple[int, int]]) -> tuple[list[dict], list[dict]]:
    """Stylise the pairs (and clips) with every ``--model``: per-pair rows and per-model medians."""
    contents = [resize_long(load_tensor(p), args.size) for p in photos]
    styles = [resize_long(load_tensor(p), args.size) for p in paintings]
    vgg = load_encoder("vgg19", "relu3_1")

    def encode(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return vgg(x, list(STYLE_LAYERS))

    magenta = MagentaStyleEncoder()
    gallery = magenta.embed(styles)
    rows, summary = [], []
    for spec in args.model:
        label, method, ck = parse_model(spec)
        opts = {"checkpoint": ck} if ck else {}
        st = Stylizer(method, precision=args.precision, **opts)
        outs, t0 = [], time.perf_counter()
        for k, (i, j) in enumerate(pairs):
            img = st.stylize_tensor(contents[i], styles[j])
            outs.append(img.float().clamp(0, 1))
            print(f"\r{label}: {k + 1}/{len(pairs)}", end="", file=sys.stderr)
        secs = (time.perf_counter() - t0) / len(pairs)
        print(file=sys.stderr)
        emb = magenta.embed(outs)
        ret = retrieval_rate(emb, gallery, [j for _, j in pairs])
        for k, (i, j) in enumerate(pairs):
            o = outs[k]
            rows.append({
                "model": label, "method": method, "checkpoint": ck or "", "photo": photos[i].name,
                "painting": paintings[j].name,
                "moved": float(style_moved(encode, o, contents[i], styles[j])[0]),
                "edges": float(edge_correlation(o, contents[i])[0]),
                "grid": float(grid_to_noise(o)[0]),
                "retrieval_rank": int(ret["rank"][k]),
            })
        mine = [r for r in rows if r["model"] == label]
        summary.append({
            "model": label, "moved": statistics.median(r["moved"] for r in mine),
            "edges": statistics.median(r["edges"] for r in mine),
            "grid": statistics.median(r["grid"] for r in mine),
            "top1": ret["top1"], "top5": ret["top5"], "sec": secs,
        })
        if args.self_edges:
            summary[-1]["self_edges"] = statistics.median(
                float(edge_correlation(st.stylize_tensor(c, c).float().clamp(0, 1), c)[0]) for c in contents)
        print(summary[-1], file=sys.stderr)
        if args.grids:
            write_grid(st, photos, paintings, out / f"grid_{label}.jpg")
        if args.video:
            for r in video_rows(st, label, Path(args.video), paintings, args):
                rows.append(r)
            werr = [r["warping_error"] for r in rows if r["model"] == label and "warping_error" in r]
            summary[-1]["warping"] = statistics.median(werr)
    return rows, summary


def write_report(args: argparse.Namespace, argv: list[str] | None, out: Path, rows: list[dict],
                 summary: list[dict], earlier: list[dict], sizes: tuple[int, int, int]) -> None:
    """``OUT/quality.csv`` (this run's rows) and ``OUT/quality.md`` (medians, paired tests, the command);
    ``sizes`` = (photos, paintings, pairs)."""
    n_photos, n_paintings, n_pairs = sizes
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "quality.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    cmd = "python scripts/eval_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `IMPASTO_WEIGHTS_DIR=../shared/weights {cmd}`", "",
             f"Validation split {Path(args.split).name}: {n_pairs} pairs"
             + (f" (pairs {args.pairs_from + 1}..{args.pairs_from + n_pairs} of the fixed sequence)"
                if args.pairs_from else "") + f" of {n_photos} photos x "
             f"{n_paintings} paintings at {args.size} px, precision {args.precision}. Medians over pairs; "
             "retrieval among the 48 validation paintings (Magenta style encoder)."]
    if summary:
        lines += ["", "| model | moved | edges | grid | retrieval top-1 | top-5 | s/image |",
                  "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['moved']:.3f} | {s['edges']:.3f} | {s['grid']:.1f} | {s['top1']:.3f} "
                     f"| {s['top5']:.3f} | {s['sec']:.2f} |")
    if args.self_edges and summary:
        lines += ["", f"Edges kept with no style to transfer: median edge correlation of each of the {n_photos} "
                  "validation photos stylised with itself as the style (the ceiling of the edges column).", "",
                  "| model | self-stylised edges |", "|---|---|"]
        lines += [f"| {s['model']} | {s['self_edges']:.3f} |" for s in summary]
    if args.video and summary:
        first = args.video_styles_from
        video_from = f" ({first + 1}..{first + args.video_styles} of the split)" if first else ""
        lines += ["", f"Temporal stability: median warping error (L1, RGB in [0, 1]; lower = steadier) of "
                  f"{args.video_frames} frames at {args.video_size} px, every clip x {args.video_styles} validation "
                  f"paintings{video_from}, each frame stylised alone.", "", "| model | warping error |", "|---|---|"]
        lines += [f"| {s['model']} | {s['warping']:.4f} |" for s in summary]
    if args.with_rows:
        lines += ["", "Paired against rows of earlier runs (same settings; outputs are deterministic): "
                  + ", ".join(f"`{p}`" for p in args.with_rows)]
    for spec in args.compare:
        lines += ["", *paired(rows + earlier, *spec.split(","))]
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def video_rows(st: Stylizer, label: str, video: Path, paintings: list[Path], args: argparse.Namespace
               ) -> list[dict]:
    """Warping error of every clip in ``video`` x ``--video-styles`` validation paintings, skipping the first
    ``--video-styles-from``."""
    from impasto.evaluation.studies import _clips, _frames
    from impasto.temporal import warping_error

    out = []
    for clip in _clips(video):
        frames = _frames(clip, args.video_frames, args.video_size)
        xs = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in frames]
        for p in paintings[args.video_styles_from:][: args.video_styles]:
            style = resize_long(load_tensor(p), args.size)
            outs = [st.stylize_tensor(x, style)[0].permute(1, 2, 0).float().clamp(0, 1).numpy() for x in xs]
            out.append({"model": label, "clip": clip.name, "painting": p.name,
                        "warping_error": warping_error(outs, frames)})
    return out


def paired(rows: list[dict], a: str, b: str) -> list[str]:
    """Markdown lines: paired medians and Wilcoxon signed-rank p-values of model a vs b on the same pairs."""
    from scipy.stats import wilcoxon

    def by_key(label: str, key: str, pair_keys: tuple[str, ...]) -> dict:
        return {tuple(r[k] for k in pair_keys): float(r[key]) for r in rows if r["model"] == label and key in r}

    lines = [f"Paired comparison {a} vs {b} (Wilcoxon signed-rank, two-sided, over the same pairs; the last column "
             "tests the mean difference per painting instead, since pairs that share a painting are not "
             "independent):", "",
             f"| measure | n | median {a} | median {b} | {a} better in | worse in | p | p by painting |",
             "|---" * 8 + "|"]
    for key, pk, higher in (("moved", ("photo", "painting"), True), ("edges", ("photo", "painting"), True),
                            ("retrieval_rank", ("photo", "painting"), False),
                            ("warping_error", ("clip", "painting"), False)):
        xa, xb = by_key(a, key, pk), by_key(b, key, pk)
        common = sorted(set(xa) & set(xb))
        if len(common) < 5:
            continue
        va, vb = np.array([xa[k] for k in common]), np.array([xb[k] for k in common])
        diff = va - vb if higher else vb - va
        p = wilcoxon(va, vb).pvalue if np.any(va != vb) else 1.0
        per: dict[str, list[float]] = {}
        for k, d in zip(common, diff, strict=True):
            per.setdefault(k[-1], []).append(d)  # k[-1] is the painting for both pair and clip keys
        dp = np.array([np.mean(v) for v in per.values()])
        pp = wilcoxon(dp).pvalue if len(dp) >= 5 and np.any(dp != 0) else 1.0
        lines.append(f"| {key} ({'higher' if higher else 'lower'} is better) | {len(common)} | {np.median(va):.4g} "
                     f"| {np.median(vb):.4g} | {int((diff > 0).sum())}/{len(common)} | {int((diff < 0).sum())} "
                     f"| {p:.3g} | {pp:.3g} ({len(dp)}) |")
    return lines


def centre_square(x: torch.Tensor, cell: int) -> np.ndarray:
    """The centre square of a 1 x 3 x H x W image in [0, 1], resized to cell x cell: a uint8 H x W x 3 tile."""
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = F.interpolate(x.float(), size=(cell, cell), mode="area")
    return (x[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def write_grid(st: Stylizer, photos: list[Path], paintings: list[Path], path: Path, n: int = 6, size: int = 256
               ) -> None:
    """Rows: n validation photos; columns: n validation paintings; first row/column the originals."""
    from PIL import Image

    cell = size
    ph = [photos[round(k * (len(photos) - 1) / (n - 1))] for k in range(n)]
    pa = [paintings[round(k * (len(paintings) - 1) / (n - 1))] for k in range(n)]

    canvas = np.full(((n + 1) * cell, (n + 1) * cell, 3), 255, np.uint8)
    cs = [resize_long(load_tensor(p), size) for p in ph]
    ss = [resize_long(load_tensor(p), size) for p in pa]
    for j, s in enumerate(ss):
        canvas[:cell, (j + 1) * cell:(j + 2) * cell] = centre_square(s, cell)
    for i, c in enumerate(cs):
        canvas[(i + 1) * cell:(i + 2) * cell, :cell] = centre_square(c, cell)
        for j, s in enumerate(ss):
            tile = centre_square(st.stylize_tensor(c, s), cell)
            canvas[(i + 1) * cell:(i + 2) * cell, (j + 1) * cell:(j + 2) * cell] = tile
    Image.fromarray(canvas).save(path, quality=88, optimize=True)


if __name__ == "__main__":
    raise SystemExit(main())
