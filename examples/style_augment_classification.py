"""Style augmentation in a classifier's data pipeline, and its throughput per DataLoader worker.

A small image-classification set (default: the photos of ../shared/data/content, labelled portrait vs landscape by
their shape, so that the example needs no extra data) is loaded at 128 px through a DataLoader whose transform is
``impasto.augment.StyleAugment``: half the images are restyled on the fly with a random painting of
../shared/data/style (AdaIN, random strength 0.3-1). A tiny CNN trains for one epoch on the result, and the script
prints images per second with 1..N workers.

    IMPASTO_WEIGHTS_DIR=../shared/weights python examples/style_augment_classification.py --workers 1 2

With your own data: ``--data FOLDER`` (one sub-folder per class) ``--styles PAINTINGS``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from impasto.augment import StyleAugment

ROOT = Path(__file__).resolve().parents[1]


class Images(Dataset):
    """(image tensor 3 x size x size in [0, 1], label); labels from sub-folders, or portrait/landscape."""

    def __init__(self, folder: Path, size: int, transform) -> None:
        subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
        if subdirs:
            self.items = [(p, k) for k, d in enumerate(subdirs) for p in sorted(d.glob("*.*"))]
        else:
            self.items = []
            for p in sorted(folder.glob("*.*")):
                with Image.open(p) as im:
                    self.items.append((p, int(im.width >= im.height)))
        self.size, self.transform = size, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        img = Image.open(path).convert("RGB").resize((self.size, self.size), Image.BICUBIC)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
        return self.transform(x), label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "content"))
    ap.add_argument("--styles", default=str(ROOT.parent / "shared" / "data" / "style"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--p", type=float, default=0.5)
    args = ap.parse_args()
    aug = StyleAugment(args.styles, p=args.p, alpha=(0.3, 1.0), method="adain", style_size=256)
    ds = Images(Path(args.data), args.size, aug)
    n_classes = max(k for _, k in ds.items) + 1
    print(f"{len(ds)} images, {n_classes} classes, {aug}")
    for workers in args.workers:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 16, 5, 4), nn.ReLU(), nn.Conv2d(16, 32, 3, 2), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_classes))
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(0), persistent_workers=False)
        t0, seen, loss = time.perf_counter(), 0, float("nan")
        for x, y in loader:
            out = net(x)
            step_loss = nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            step_loss.backward()
            opt.step()
            seen, loss = seen + len(y), step_loss.item()
        dt = time.perf_counter() - t0
        print(f"{workers} worker(s): {seen / dt:.1f} images/s ({seen / dt / workers:.1f} per worker), "
              f"one epoch in {dt:.1f} s (model loading included), last loss {loss:.3f}")


if __name__ == "__main__":
    main()
