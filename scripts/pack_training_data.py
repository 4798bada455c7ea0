"""Pack a small copy of the training corpus to carry to a lent GPU machine (whose upload limit is 64 MiB).

Every training image (the validation split left out) is resized as training resizes it (short side ``--size``)
and one seeded ``--crop`` x ``--crop`` square is cut from it and stored as WebP under the image's own stem, so
the holdout file still applies and a crop is traceable to its source. Training on the packed folders with
``size=CROP crop=CROP`` sees the painting at the scale that ``size=512 crop=256`` sees it, one fixed window
per image instead of a new window per step.

    python scripts/pack_training_data.py --photos ../shared/data/corpus/photos \
        --paintings ../shared/data/corpus/paintings --holdout docs/models/validation_split.txt --out .gpu/data
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image

from impasto.data.datasets import list_images
from impasto.training.config import read_holdout


def pack(src: Path, dst: Path, holdout: set[str], size: int, crop: int, quality: int, seed: int) -> int:
    """Write one WebP crop per image of ``src`` not in ``holdout``; return how many were written."""
    dst.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = 0
    for path in list_images(src):
        if path.name in holdout:
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = size / min(im.size)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.resize((w, h), Image.BICUBIC)
        x, y = rng.randint(0, w - crop), rng.randint(0, h - crop)
        im.crop((x, y, x + crop, y + crop)).save(dst / f"{path.stem}.webp", "WEBP", quality=quality, method=6)
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--paintings", type=Path, required=True)
    ap.add_argument("--holdout", type=Path, required=True, help="validation split file: never packed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=512, help="short side before cropping (training's size)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    holdout = read_holdout(args.holdout)
    for name, src in (("photos", args.photos), ("paintings", args.paintings)):
        n = pack(src, args.out / name, holdout, args.size, args.crop, args.quality, args.seed)
        mib = sum(p.stat().st_size for p in (args.out / name).iterdir()) / 2**20
        print(f"{name}: {n} crops, {mib:.1f} MiB in {args.out / name}")


if __name__ == "__main__":
    main()
