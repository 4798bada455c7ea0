"""Held-out activation loss of style-swap inverse networks: does training improve on the reconstruction decoder?

For fixed images (the first N photos and paintings of the data folders, resized to 256 px on the short side and
centre-cropped to 256 x 256, while training saw random 128 px crops), every group of 2 photos + 2 paintings gives
the 8 activations of the training task (2 natural photo maps, 2 natural painting maps, 4 style swaps). Each
decoder is scored by the task's loss, mean ||E(g(a)) - a||^2 (Chen & Schmidt 2016, eq. 5 without TV), split into
natural and swapped activations. The pretrained relu3_1 reconstruction decoder (the training's initialisation)
is the baseline.

    python scripts/eval_style_swap_inverse.py runs/style_swap_inverse/model.pt --photos 8 --paintings 8
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", help="model files written by `impasto train style-swap-inverse`")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--paintings", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    data = Path(args.data)
    photos = torch.cat([square(f, args.size) for f in iter_image_files([str(data / "content")])[: args.photos]])
    paintings = torch.cat([square(f, args.size) for f in iter_image_files([str(data / "style")])[: args.paintings]])
    n = min(photos.shape[0], paintings.shape[0]) // 2 * 2
    photos, paintings = photos[:n], paintings[:n]
    encoder = load_encoder("vgg19", "relu3_1")
    rows = [("pretrained relu3_1 reconstruction decoder (step 0)", load_decoder("vgg19", "relu3_1"))]
    for m in args.models:
        ck = load_impasto_checkpoint(m)
        rows.append((f"{m} (step {ck.get('step', '?')})", load_model_decoder(ck, m)))
    print(f"{n} photos x {n} paintings in groups of 2 + 2 ({n // 2 * 8} activations), {args.size} px, vgg19 relu3_1")
    print("| decoder | natural | swapped | all |")
    print("|---|---|---|---|")
    for name, dec in rows:
        r = activation_losses(dec.eval(), encoder, photos, paintings)
        print(f"| {name} | {r['natural']:.4f} | {r['swapped']:.4f} | {r['all']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ImpastoError as exc:  # a missing model file or weights: the message says what to do
        sys.exit(f"error: {exc}")
