"""impasto.models: pretrained peer models that run here (MicroAST in PyTorch, Magenta via onnxruntime)."""

from __future__ import annotations

from typing import Any

from impasto.models.microast import MicroAST, MicroASTStyle, load_microast, mix_styles

__all__ = ["MagentaPeer", "MicroAST", "MicroASTStyle", "load_microast", "mix_styles"]


def __getattr__(name: str) -> Any:  # lazy: MagentaPeer needs the [peers] extra (onnxruntime, OpenCV)
    if name == "MagentaPeer":
        from impasto.models.magenta import MagentaPeer

        return MagentaPeer
    raise AttributeError(f"module 'impasto.models' has no attribute {name!r}")
