"""Exceptions raised for user errors: each message says what is wrong and what to do."""

from __future__ import annotations


class ImpastoError(Exception):
    """Base class of every error caused by user input (files, options, missing weights).

    The CLI and the server print the message without a traceback.
    """


class ImageError(ImpastoError):
    """An image file cannot be read, or is unusable (corrupt, empty, too large, too small)."""


class WeightsError(ImpastoError):
    """A weight file is missing, corrupt, or in an unknown format."""


class ConfigError(ImpastoError):
    """An option or configuration value is invalid."""


class VideoError(ImpastoError):
    """A video file cannot be read or written."""


class OutputError(ImpastoError):
    """An output (image, video, checkpoint) cannot be written: full disk, no permission, ..."""


class MissingExtraError(ImpastoError):
    """A feature needs an optional dependency that is not installed; the message names the ``pip install`` to run
    (see :mod:`impasto.extras`)."""
