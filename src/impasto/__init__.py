"""impasto: arbitrary artistic style transfer (inference, training, evaluation)."""

from __future__ import annotations

__version__ = "0.1.0"

from impasto.errors import ConfigError, ImageError, ImpastoError, VideoError, WeightsError

__all__ = [
    "ConfigError",
    "ImageError",
    "ImpastoError",
    "Stylizer",
    "VideoError",
    "WeightsError",
    "__version__",
]


def __getattr__(name: str):  # lazy: importing impasto stays cheap; Stylizer pulls in torch models
    if name == "Stylizer":
        from impasto.pipeline import Stylizer

        return Stylizer
    raise AttributeError(name)
