"""impasto.augment.StyleAugment: a picklable, reproducible style-augmentation transform for DataLoader workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from impasto.augment import StyleAugment
from impasto.errors import ConfigError

pytestmark = pytest.mark.weights


class Photos(Dataset):
    def __init__(self, paths: list[Path], transform: StyleAugment) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = Image.open(self.paths[i]).convert("RGB").resize((64, 48))
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
        return self.transform(x)


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "content").glob("*.jpg"))[:6]


def test_pil_and_tensors_keep_type_and_shape(weights_dir: Path, data_dir: Path, content_path: Path) -> None:
    aug = StyleAugment(data_dir / "style", p=1.0, alpha=1.0, style_size=128, seed=0)
    img = Image.open(content_path).convert("RGB").resize((80, 60))
    out = aug(img)
    assert isinstance(out, Image.Image) and out.size == img.size and np.asarray(out).std() > 0
    assert not np.array_equal(np.asarray(out), np.asarray(img))
    x = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)
    y = aug(x)  # uint8 in, uint8 out
    assert y.dtype == torch.uint8 and y.shape == x.shape
    b = aug(torch.rand(2, 3, 40, 50))
    assert b.shape == (2, 3, 40, 50) and b.dtype == torch.float32 and 0 <= b.min() and b.max() <= 1
    never = StyleAugment(data_dir / "style", p=0.0, seed=0)
    t = torch.rand(3, 20, 30)
    assert torch.equal(never(t), t)  # p = 0: untouched (and no model is loaded)
    assert never._stylizer is None
    weak = StyleAugment(data_dir / "style", p=1.0, alpha=0.0, style_size=128, seed=0)
    z = weak(torch.rand(1, 3, 64, 64) * 0.5 + 0.25)
    assert z.shape == (1, 3, 64, 64)


def test_bad_arguments_are_clear(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="p must be in"):
        StyleAugment(data_dir / "style", p=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        StyleAugment(data_dir / "style", alpha=(0.8, 0.2))
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no images"):
        StyleAugment(tmp_path / "empty")
    with pytest.raises(ConfigError, match="3 colour channels"):
        StyleAugment(data_dir / "style", p=1.0)(torch.rand(1, 4, 8, 8))


def test_dataloader_workers_are_reproducible_and_picklable(weights_dir: Path, data_dir: Path,
                                                           photos: list[Path], fork_safe) -> None:
    """Two workers, each loading its own model; the same DataLoader seed gives the same augmented batches."""
    aug = StyleAugment(data_dir / "style", p=0.5, alpha=(0.3, 1.0), style_size=96)
    aug(torch.rand(3, 16, 16))  # used once here: the model must not travel to the workers
    state = pickle.dumps(aug)
    assert len(state) < 100_000  # settings and file names only

    def run() -> torch.Tensor:
        loader = DataLoader(Photos(photos, aug), batch_size=3, num_workers=2,
                            generator=torch.Generator().manual_seed(7))
        return torch.cat(list(loader))

    a, b = run(), run()
    assert torch.equal(a, b)
    plain = torch.stack([Photos(photos, lambda x: x)[i] for i in range(len(photos))])
    changed = [not torch.equal(a[i], plain[i]) for i in range(len(photos))]
    assert 0 < sum(changed) < len(photos)  # p = 0.5: some restyled, some not (fixed by the seed)
    other = torch.cat(list(DataLoader(Photos(photos, aug), batch_size=3, num_workers=2,
                                      generator=torch.Generator().manual_seed(8))))
    assert not torch.equal(a, other)
