"""impasto: arbitrary artistic style transfer (inference, training, evaluation)."""

from __future__ import annotations

__version__ = "0.1.0"

from impasto.errors import ConfigError, ImageError, ImpastoError, VideoError, WeightsError

__all__ = ["ConfigError", "ImageError", "ImpastoError", "VideoError", "WeightsError", "__version__"]
