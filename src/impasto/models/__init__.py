"""impasto.models: pretrained peer models that run here (MicroAST in PyTorch, Magenta via onnxruntime)."""

from __future__ import annotations

from impasto.models.magenta import MagentaPeer
from impasto.models.microast import MicroAST, MicroASTStyle, load_microast, mix_styles

__all__ = ["MagentaPeer", "MicroAST", "MicroASTStyle", "load_microast", "mix_styles"]
