"""impasto's built-in training tasks (registered on import): adain, sanet, iecontraast, refine-encoder,
style-swap-inverse."""

from __future__ import annotations

from impasto.training.tasks import adain, iecontraast, refine, sanet, style_swap_inverse

__all__ = ["adain", "iecontraast", "refine", "sanet", "style_swap_inverse"]
