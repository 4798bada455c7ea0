"""Style-transfer methods, one module each, registered by name (see :mod:`impasto.methods.base`)."""

from __future__ import annotations

from impasto.methods import adain, gatys, peers, sanet, style_swap, wct  # noqa: F401  (registration)
from impasto.methods.base import (
    Method,
    MethodConfig,
    MethodUnavailable,
    availability,
    create_method,
    get_method_class,
    method_names,
)

__all__ = [
    "Method",
    "MethodConfig",
    "MethodUnavailable",
    "availability",
    "create_method",
    "get_method_class",
    "method_names",
]
