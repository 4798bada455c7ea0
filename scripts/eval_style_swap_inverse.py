"""Held-out activation loss of style-swap inverse networks: does training improve on the reconstruction decoder?

For fixed images (the first N photos and paintings of the data folders, resized to 256 px on the short side and
centre-cropped to 256 x 256, while training saw random 128 px crops), every group of 2 photos + 2 paintings gives
the 8 activations of the training task (2 natural photo maps, 2 natural painting maps, 4 style swaps). Each
decoder is scored by the task's loss, mean ||E(g(a)) - a||^2 (Chen & Schmidt 2016, eq. 5 without TV), split into
natural and swapped activations. The pretrained relu3_1 reconstruction decoder (the training's initialisation)
is the baseline.

    python scripts/eval_style_swap_inverse.py runs/style_swap_inverse/model.pt --photos 8 --paintings 8

With ``--pairs N`` it instead measures what a user sees, on impasto's validation split (``docs/models``; no
inverse network trains on it): N photo-painting pairs at ``--size`` px (long side), the style-swap image of
each decoder (``D(swap(E(photo), E(painting)))``, as ``impasto stylize -m style-swap`` makes it), scored by
sharpness (mean Sobel gradient magnitude), the swapped-activation loss of that image, edge correlation with the
photo and the grid score, plus each decoder's reconstruction PSNR of the photo itself; every model is compared
with the reconstruction decoder pair by pair (Wilcoxon signed-rank). ``--out`` writes quality.md, quality.csv and
a side-by-side sheet:

    python scripts/eval_style_swap_inverse.py docs/training/style_swap_inverse/model.pt --pairs 48 --out DIR
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from impasto.backbones import load_decoder, load_encoder
from impasto.errors import ImpastoError
from impasto.io.images import iter_image_files, load_tensor
from impasto.methods.adain import load_model_decoder
from impasto.methods.common import load_impasto_checkpoint
from impasto.training.tasks.style_swap_inverse import swap_activations
from impasto.transforms.style_swap import style_swap, style_swap_patches

ROOT = Path(__file__).resolve().parents[1]


def square(path: Path, side: int) -> torch.Tensor:
    """An image resized to ``side`` on its short side and centre-cropped to side x side: 1 x 3 x side x side."""
    x = load_tensor(path)
    h, w = x.shape[-2:]
    s = side / min(h, w)
    x = F.interpolate(x, size=(max(side, round(h * s)), max(side, round(w * s))), mode="area")
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    return x[..., top : top + side, left : left + side]


@torch.no_grad()
def activation_losses(decoder: torch.nn.Module, encoder: torch.nn.Module, photos: torch.Tensor,
                      paintings: torch.Tensor, depth: str = "relu3_1") -> dict[str, float]:
    """Mean activation loss over groups of 2 photos + 2 paintings (natural and swapped activations apart)."""
    nat, swp = [], []
    for i in range(0, photos.shape[0] - 1, 2):
        c, s = photos[i : i + 2], paintings[i : i + 2]
        a = swap_activations(encoder, c, s, depth)
        err = ((encoder.encode(decoder(a, size=tuple(c.shape[-2:])), depth) - a) ** 2).flatten(1).mean(1)
        nat += err[:4].tolist()
        swp += err[4:].tolist()
    return {"natural": sum(nat) / len(nat), "swapped": sum(swp) / len(swp), "all": (sum(nat) + sum(swp))
            / (len(nat) + len(swp))}


@torch.no_grad()
def pair_rows(decoders: list[tuple[str, torch.nn.Module]], encoder: torch.nn.Module, photos: list[torch.Tensor],
              paintings: list[torch.Tensor], pairs: list[tuple[int, int]], depth: str = "relu3_1", keep: int = 0
              ) -> tuple[list[dict], list[list[torch.Tensor]]]:
    """One row per decoder and pair: sharpness, swapped-activation loss, edges and grid of the style-swap image,
    and the decoder's reconstruction PSNR of the photo. Images 1 x 3 x H x W in [0, 1]. Also returns, for the
    first ``keep`` pairs, [photo, painting, each decoder's style-swap image] (for the picture sheet)."""
    from impasto.evaluation.metrics import edge_correlation, psnr, sharpness
    from impasto.evaluation.quality import grid_to_noise

    rows, kept = [], []
    for k, (i, j) in enumerate(pairs):
        c, s = photos[i], paintings[j]
        fc = encoder.encode(c, depth)
        target = style_swap(fc, style_swap_patches(encoder.encode(s, depth), 3))
        size = tuple(c.shape[-2:])
        photo_sharpness = float(sharpness(c)[0])
        images = [c, s]
        for label, dec in decoders:
            out = dec(target, size=size).clamp(0, 1)
            rec = dec(fc, size=size).clamp(0, 1)
            images.append(out)
            rows.append({
                "decoder": label, "photo": i, "painting": j,
                "sharpness": float(sharpness(out)[0]), "photo_sharpness": photo_sharpness,
                "swap_loss": float(((encoder.encode(out, depth) - target) ** 2).mean()),
                "edges": float(edge_correlation(out, c)[0]), "grid": float(grid_to_noise(out)[0]),
                "reconstruction_psnr": float(psnr(rec, c)[0]),
            })
        if k < keep:
            kept.append(images)
    return rows, kept


MEASURES = (("sharpness", True), ("swap_loss", False), ("edges", True), ("grid", False),
            ("reconstruction_psnr", True))


def paired_table(rows: list[dict], a: str, b: str) -> list[str]:
    """Markdown lines: medians of decoder a and b over the same pairs, how often a is better, Wilcoxon p."""
    from scipy.stats import wilcoxon

    def values(label: str, key: str) -> list[float]:
        return [r[key] for r in sorted((r for r in rows if r["decoder"] == label),
                                       key=lambda r: (r["photo"], r["painting"]))]

    lines = [f"| measure | median {a} | median {b} | {a} better in | p |", "|---|---|---|---|---|"]
    for key, higher in MEASURES:
        va, vb = values(a, key), values(b, key)
        better = sum((x > y) if higher else (x < y) for x, y in zip(va, vb, strict=True))
        p = wilcoxon(va, vb).pvalue if any(x != y for x, y in zip(va, vb, strict=True)) else 1.0
        lines.append(f"| {key} ({'higher' if higher else 'lower'} is better) | {statistics.median(va):.4g} | "
                     f"{statistics.median(vb):.4g} | {better}/{len(va)} | {p:.3g} |")
    return lines


def validation_report(args: argparse.Namespace, decoders: list[tuple[str, torch.nn.Module]],
                      encoder: torch.nn.Module, argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_models import SPLIT, make_pairs, read_split, resize_long

    photo_files, painting_files = read_split(SPLIT, Path(args.data) / "corpus")
    photos = [resize_long(load_tensor(p), args.size) for p in photo_files]
    paintings = [resize_long(load_tensor(p), args.size) for p in painting_files]
    pairs = make_pairs(len(photos), len(paintings), args.pairs)
    rows, sheet = pair_rows(decoders, encoder, photos, paintings, pairs, keep=4 if args.out else 0)
    base = decoders[0][0]
    lines = [f"Command: `IMPASTO_WEIGHTS_DIR=../shared/weights python scripts/eval_style_swap_inverse.py "
             f"{' '.join(argv)}`", "",
             f"{len(pairs)} validation pairs ({len(photos)} photos x {len(paintings)} paintings of "
             f"docs/models/validation_split.txt) at {args.size} px, vgg19 relu3_1, 3 x 3 patches. Median photo "
             f"sharpness {statistics.median(r['photo_sharpness'] for r in rows if r['decoder'] == base):.4g}.", ""]
    for label, _ in decoders[1:]:
        lines += [f"**{label}** vs **{base}**, paired over the same pairs (Wilcoxon signed-rank, two-sided):", "",
                  *paired_table(rows, label, base), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.md").write_text(text)
        with open(out / "quality.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        write_sheet(sheet, out / "sheet.jpg")
    return 0


def write_sheet(rows: list[list[torch.Tensor]], path: Path, side: int = 256) -> None:
    """A JPEG with one row of centre squares per pair (photo, painting, each decoder's style-swap image)."""
    import numpy as np
    from eval_models import centre_square
    from PIL import Image

    sheet = np.concatenate([np.concatenate([centre_square(x, side) for x in row], axis=1) for row in rows])
    tmp = path.with_suffix(".tmp.jpg")
    Image.fromarray(sheet).save(tmp, quality=92)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", help="model files written by `impasto train style-swap-inverse`")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--paintings", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--pairs", type=int, help="score N validation pairs of style-swap images instead (see above)")
    p.add_argument("--out", help="with --pairs: folder for quality.md, quality.csv and sheet.jpg")
    args = p.parse_args(argv)
    if args.pairs is not None and args.pairs < 1:
        p.error("--pairs must be >= 1")
    torch.manual_seed(0)
    encoder = load_encoder("vgg19", "relu3_1")
    rows = [("pretrained relu3_1 reconstruction decoder (step 0)", "reconstruction decoder",
             load_decoder("vgg19", "relu3_1"))]
    for m in args.models:
        ck = load_impasto_checkpoint(m)
        step = ck.get("step", "?")
        rows.append((f"{m} (step {step})", f"inverse net step {step}", load_model_decoder(ck, m)))
    if args.pairs:
        return validation_report(args, [(short, d.eval()) for _, short, d in rows], encoder,
                                 sys.argv[1:] if argv is None else argv)
    data = Path(args.data)
    photos = torch.cat([square(f, args.size) for f in iter_image_files([str(data / "content")])[: args.photos]])
    paintings = torch.cat([square(f, args.size) for f in iter_image_files([str(data / "style")])[: args.paintings]])
    n = min(photos.shape[0], paintings.shape[0]) // 2 * 2
    photos, paintings = photos[:n], paintings[:n]
    print(f"{n} photos x {n} paintings in groups of 2 + 2 ({n // 2 * 8} activations), {args.size} px, vgg19 relu3_1")
    print("| decoder | natural | swapped | all |")
    print("|---|---|---|---|")
    for name, _, dec in rows:
        r = activation_losses(dec.eval(), encoder, photos, paintings)
        print(f"| {name} | {r['natural']:.4f} | {r['swapped']:.4f} | {r['all']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ImpastoError as exc:  # a missing model file or weights: the message says what to do
        sys.exit(f"error: {exc}")
