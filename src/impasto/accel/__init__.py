"""Where impasto's speed lives: one seam between the plain networks and the ways to run them fast.

The networks (:mod:`impasto.encoders`, :mod:`impasto.decoders`, :mod:`impasto.models`) are plain PyTorch modules,
the same in training and inference. A backend changes how a network runs, never what it computes:

===============  =====================================================================================================
backend          what it does
===============  =====================================================================================================
``eager``        the modules' own ``forward``: the reference, on every device and precision
``fused``        CPU inference forwards built from exact faster kernels (:mod:`impasto.accel.fused`,
                 :mod:`impasto.accel.kernels`: ReLU fused into oneDNN's convolution, up-sampling folded into the next
                 conv, no padded copies); with autograd on, or off the CPU, each module runs its own forward
``compile``      ``torch.compile`` of each network (inductor): compiled at the first call of each new input shape
                 (tens of seconds on 2 cores), worth it for long videos and batch jobs
``onnxruntime``  each network exported once to ONNX (dynamic sizes, cached on disk) and run by onnxruntime's CPU
                 provider in float32 (:mod:`impasto.accel.ort`; ``pip install "impasto[export]"``)
``auto``         ``fused`` on a CPU whose PyTorch has oneDNN (tested there by tests/accel), else ``eager``
===============  =====================================================================================================

:func:`prepare` applies a backend to a module in place (as ``nn.Module.compile`` does) and :func:`accelerate` to
every network a method holds; :class:`impasto.pipeline.Stylizer` does the latter with its ``backend`` argument
(CLI: ``--backend``). Outputs of ``fused`` match ``eager`` to float rounding (bf16: about 1/300 of the pixel range,
as any two bf16 paths); ``compile`` likewise. Measured speeds: benchmarks/README.md ("Backends").
"""

from __future__ import annotations

import copy
import itertools
import shutil
from typing import Any

import torch
from torch import nn

from impasto.errors import ConfigError

__all__ = ["BACKENDS", "accelerate", "available", "backend_of", "prepare", "prepared", "resolve_backend"]

#: backend name -> one line for --help and errors
BACKENDS: dict[str, str] = {
    "auto": "fused on a CPU with oneDNN, else eager",
    "eager": "the plain modules (reference)",
    "fused": "exact faster CPU kernels (oneDNN fused convs)",
    "compile": "torch.compile (slow first call per input size)",
    "onnxruntime": "ONNX graphs run by onnxruntime, float32 (exported once, cached)",
}


def available(backend: str, device: str | torch.device = "cpu") -> str | None:
    """None if ``backend`` can run on ``device`` here, else the reason it cannot."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    dev = torch.device(device).type
    if backend == "fused":
        from impasto.accel.kernels import _FUSED_CONV

        if dev != "cpu":
            return f"the fused backend runs on the CPU only (device is {dev}); use eager or compile"
        if _FUSED_CONV is None:
            return "this PyTorch build has no oneDNN fused convolution; use eager"
    if backend == "compile":
        if not hasattr(torch, "compile"):
            return "this PyTorch has no torch.compile; use eager"
        if dev == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
            return "torch.compile's CPU backend needs a C++ compiler (none on PATH: install g++); use fused or eager"
    if backend == "onnxruntime":
        if dev != "cpu":
            return f"the onnxruntime backend runs on the CPU only (device is {dev}); use eager or compile"
        from impasto.accel.ort import check_available
        from impasto.errors import MissingExtraError

        try:
            check_available()
        except MissingExtraError as exc:
            return str(exc)
    return None


def resolve_backend(backend: str, device: str | torch.device = "cpu") -> str:
    """``auto`` -> the backend to use on ``device``; any other name is checked (ConfigError saying why it cannot
    run here) and returned."""
    if backend == "auto":
        return "fused" if available("fused", device) is None else "eager"
    reason = available(backend, device)
    if reason is not None:
        raise ConfigError(f"backend {backend!r}: {reason}")
    return backend


def _networks() -> tuple[type[nn.Module], ...]:
    """The classes a backend treats as one network (compiled as a whole; their submodules are not visited)."""
    from impasto.decoders.vgg import VGGDecoder
    from impasto.encoders.vgg import VGGEncoder
    from impasto.models.microast import MicroASTDecoder, MicroASTEncoder, MicroASTModulator

    return VGGEncoder, VGGDecoder, MicroASTEncoder, MicroASTDecoder, MicroASTModulator


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        m.__dict__.pop("forward", None)  # a fused forward installed on the instance
        m.__dict__.pop("_accel_derived", None)
        m.__dict__.pop("_impasto_backend", None)
        m.__dict__.pop("_ort", None)  # onnxruntime sessions
        m._compiled_call_impl = None


def _compile(module: nn.Module, networks: tuple[type[nn.Module], ...]) -> None:
    if isinstance(module, networks):
        module.compile(dynamic=False)
        return
    for child in module.children():
        _compile(child, networks)


def prepare(module: nn.Module, backend: str = "auto") -> nn.Module:
    """Run ``module`` (and its submodules) with ``backend`` from now on; in place, returns ``module``.

    A module prepared before is reset first, so ``prepare(m, "eager")`` gives back the plain forwards. The
    parameters, state dict and training behaviour are untouched.
    """
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    name = resolve_backend(backend, device)
    _reset(module)
    if name == "fused":
        from impasto.accel import fused

        fused.prepare(module)
    elif name == "compile":
        _compile(module, _networks())
    elif name == "onnxruntime":
        from impasto.accel import ort

        ort.prepare(module)
    module.__dict__["_impasto_backend"] = name
    return module


def prepared(module: nn.Module, backend: str = "auto") -> nn.Module:
    """A copy of ``module`` that shares its parameters and buffers (no memory cost), prepared with ``backend``;
    ``module`` itself is unchanged (for the shared modules of :mod:`impasto.backbones`)."""
    memo: dict[int, Any] = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    for m in module.modules():  # what a backend installed is not copied (prepare installs its own)
        for key in ("forward", "_compiled_call_impl", "_accel_derived", "_ort"):
            if m.__dict__.get(key) is not None:
                memo[id(m.__dict__[key])] = None
    return prepare(copy.deepcopy(module, memo), backend)


def backend_of(module: nn.Module) -> str:
    """The backend ``module`` was prepared with (``eager`` if never)."""
    return module.__dict__.get("_impasto_backend", "eager")


def accelerate(method: Any, backend: str = "auto") -> str:
    """Run every network held by ``method`` (an :class:`impasto.methods.base.Method`: its ``nn.Module`` attributes,
    and those in its dict/list attributes) with ``backend``; returns the resolved backend name.

    The loaders share frozen encoders and decoders between methods (:mod:`impasto.backbones`), so the method gets
    its own copy of each sharing the parameters (:func:`prepared`) and only that copy is prepared.
    """
    name = resolve_backend(backend, getattr(method, "device", "cpu"))
    views: dict[int, nn.Module] = {}

    def view(module: nn.Module) -> nn.Module:
        if id(module) not in views:
            views[id(module)] = prepared(module, name)
        return views[id(module)]

    for attr, value in list(vars(method).items()):
        if isinstance(value, nn.Module):
            setattr(method, attr, view(value))
        elif isinstance(value, dict) and any(isinstance(v, nn.Module) for v in value.values()):
            setattr(method, attr, {k: view(v) if isinstance(v, nn.Module) else v for k, v in value.items()})
        elif isinstance(value, list | tuple) and any(isinstance(v, nn.Module) for v in value):
            setattr(method, attr, type(value)(view(v) if isinstance(v, nn.Module) else v for v in value))
    return name
