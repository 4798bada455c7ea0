"""Encoders with named layers: the real normalised VGG-19 and the 16x distilled VGG-19 (see impasto.backbones)."""

from __future__ import annotations

from impasto.encoders.vgg import LAYER_NAMES, VGGEncoder, layer_index

__all__ = ["LAYER_NAMES", "VGGEncoder", "layer_index"]
