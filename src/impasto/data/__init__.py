"""impasto.data: image-folder datasets, endless resumable samplers, batch arrangements."""

from __future__ import annotations

from impasto.data.arrangement import iecontra_arrange, iecontra_contrast_sets, iecontra_indices
from impasto.data.datasets import IMAGE_EXTENSIONS, ImageFolderDataset, SeededCropStream, list_images
from impasto.data.samplers import InfiniteSampler, epoch_permutation, mix_seed

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "InfiniteSampler",
    "SeededCropStream",
    "epoch_permutation",
    "iecontra_arrange",
    "iecontra_contrast_sets",
    "iecontra_indices",
    "list_images",
    "mix_seed",
]
