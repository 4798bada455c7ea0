"""impasto: arbitrary artistic style transfer (inference, training, evaluation)."""

from __future__ import annotations

__version__ = "0.1.0"

from impasto.errors import ConfigError, ImageError, ImpastoError, VideoError, WeightsError

#: The method ``impasto stylize``, ``Stylizer()``, the video and bulk tools and the web page use when none is named:
#: the one of impasto's own trained models that measures best on the validation split (docs/models.md).
DEFAULT_METHOD = "sanet"

__all__ = [
    "DEFAULT_METHOD",
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
