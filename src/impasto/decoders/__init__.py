"""Decoders mirroring VGG-topology encoders."""

from __future__ import annotations

from impasto.decoders.vgg import VGGDecoder

__all__ = ["VGGDecoder"]
