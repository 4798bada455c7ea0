"""Image input/output: the only place impasto reads or writes image files.

``load_image`` turns any file, bytes, PIL image or array into an upright 8-bit RGB image (or
``ImageError`` with a message saying what to do), ``save_image`` writes atomically, and
``atomic_write`` / ``atomic_path`` make any other output all-or-nothing.
"""

from __future__ import annotations

from impasto.io.atomic import atomic_path, atomic_write
from impasto.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SAVE_EXTENSIONS,
    image_to_tensor,
    iter_image_files,
    load_image,
    load_tensor,
    resize_max,
    resize_short,
    save_image,
    tensor_to_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "SAVE_EXTENSIONS",
    "atomic_path",
    "atomic_write",
    "image_to_tensor",
    "iter_image_files",
    "load_image",
    "load_tensor",
    "resize_max",
    "resize_short",
    "save_image",
    "tensor_to_image",
]
