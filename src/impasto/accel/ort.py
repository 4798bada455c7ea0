"""The ``onnxruntime`` backend: each network exported once to ONNX (dynamic height and width) and run by
onnxruntime's CPU provider in float32.

A network's graph is exported at its first call for each call signature (the encoder's requested layers, the
decoder without an input map folded in, MicroAST's decoder at alpha 1) and cached on disk under
``IMPASTO_CACHE_DIR`` (default ``~/.cache/impasto``)/``onnx``, named by the hash of the class, the signature and the
parameters, so a later process loads it without exporting. Calls the graphs do not cover (autograd, another
device, other arguments) run the module's own forward. Needs ``pip install "impasto[export]"`` (onnx, onnxscript,
onnxruntime).
"""

from __future__ import annotations

import hashlib
import os
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from impasto.errors import ConfigError
from impasto.extras import check_extra, require_extra

_LOCK = threading.Lock()  # one export or session start at a time


def cache_dir() -> Path:
    """Where exported graphs are kept: ``$IMPASTO_CACHE_DIR/onnx`` or ``~/.cache/impasto/onnx``."""
    env = os.environ.get("IMPASTO_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "impasto"
    return root / "onnx"


def check_available() -> None:
    """Raise MissingExtraError (naming ``pip install "impasto[export]"``) unless onnx, onnxscript and onnxruntime
    are installed."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        check_extra(module, "export", "the onnxruntime backend")


def _fingerprint(module: nn.Module, signature: tuple) -> str:
    cls = type(module)
    h = hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}|{signature}|{torch.__version__}".encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


class _Graph(nn.Module):
    """What is exported: ``fn(module, *inputs)`` (the module's plain computation for one call signature)."""

    def __init__(self, module: nn.Module, fn: Callable[..., tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return self.fn(self.module, *inputs)


class _Runner:
    """One onnxruntime session per (module, call signature), exported or loaded on first use."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.sessions: dict[tuple, Any] = {}

    def session(self, signature: tuple, fn: Callable[..., tuple[Tensor, ...]], example: tuple[Tensor, ...],
                dynamic: list[dict[int, str]]) -> Any:
        if signature in self.sessions:
            return self.sessions[signature]
        ort = require_extra("onnxruntime", "export", "the onnxruntime backend")
        with _LOCK:
            path = cache_dir() / f"{type(self.module).__name__}-{_fingerprint(self.module, signature)}.onnx"
            if not path.is_file():
                _export(_Graph(self.module, fn), example, dynamic, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self.sessions[signature] = sess
        return sess

    def run(self, signature: tuple, fn: Callable[..., tuple[Tensor, ...]], inputs: tuple[Tensor, ...],
            dynamic: list[dict[int, str]]) -> list[Tensor]:
        sess = self.session(signature, fn, inputs, dynamic)
        feed = {i.name: np.ascontiguousarray(x.detach().float().cpu().numpy()) for i, x in
                zip(sess.get_inputs(), inputs, strict=True)}
        return [torch.from_numpy(o) for o in sess.run(None, feed)]


def _export(graph: _Graph, example: tuple[Tensor, ...], dynamic: list[dict[int, str]], path: Path) -> None:
    from impasto.io.atomic import atomic_path

    require_extra("onnxscript", "export", "the onnxruntime backend")
    names = [f"input{i}" for i in range(len(example))]
    # traced at 64 x 64 whatever the first call's size: an odd size makes torch.export derive relations between the
    # dimensions (ceil-mode pooling) that it then refuses; the graph runs at any size
    example = tuple(torch.zeros(*x.shape[:2], 64, 64) if d else x for x, d in zip(example, dynamic, strict=True))
    dims: dict[str, Any] = {}
    shapes = []
    for d in dynamic:
        shapes.append({axis: dims.setdefault(name, torch.export.Dim(name, min=2, max=8192)) for axis, name in d.items()}
                      or None)
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):  # a float32 graph, whatever the caller's autocast
            program = torch.onnx.export(graph.eval(), example, input_names=names, dynamo=True, verbose=False,
                                        dynamic_shapes={"inputs": tuple(shapes)})
    except Exception as exc:  # torch.export's errors have no common base class
        cause = exc.__cause__ or exc
        why = f"{type(cause).__name__}: {str(cause).splitlines()[0][:300]}"
        raise ConfigError(f"the onnxruntime backend could not export {type(graph.module).__name__} ({why}); "
                          "use --backend fused or eager") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        program.save(str(tmp))


def _plain(module: nn.Module) -> Callable[..., Any]:
    return type(module).forward.__get__(module)


def _covered(*tensors: Tensor) -> bool:
    return all(t.device.type == "cpu" for t in tensors) and not torch.is_grad_enabled()


# ----------------------------------------------------------------------------------------------------------------
# the forwards installed on each network
# ----------------------------------------------------------------------------------------------------------------
def _encoder_forward(self: Any, x: Tensor, layers: Any = None) -> dict[str, Tensor]:
    if not _covered(x):
        return _plain(self)(x, layers)
    wanted = tuple(sorted(set(layers) if layers is not None else {self.depth}))
    self._check_layers(wanted)

    def fn(m: nn.Module, img: Tensor) -> tuple[Tensor, ...]:
        out = type(m).forward(m, img, wanted)
        return tuple(out[k] for k in wanted)

    outs = self._ort.run(("encode", wanted), fn, (x.float(),), [{2: "height", 3: "width"}])
    return {k: v.to(x.dtype) for k, v in zip(wanted, outs, strict=True)}


def _decoder_forward(self: Any, feat: Tensor, size: Any = None, in_affine: Any = None, adds: Any = None) -> Tensor:
    if not _covered(feat) or in_affine is not None or adds:
        return _plain(self)(feat, size, in_affine, adds)
    from impasto.decoders.vgg import _fit

    (out,) = self._ort.run(("decode",), lambda m, f: (type(m).forward(m, f),), (feat.float(),),
                           [{2: "height", 3: "width"}])
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        out = _fit(out, size)
    return out.to(feat.dtype)


def _microast_encoder_forward(self: Any, x: Tensor) -> tuple[Tensor, Tensor]:
    if not _covered(x):
        return _plain(self)(x)
    f1, f2 = self._ort.run(("encode",), lambda m, img: tuple(type(m).forward(m, img)), (x.float(),),
                           [{2: "height", 3: "width"}])
    return f1.to(x.dtype), f2.to(x.dtype)


def _microast_decoder_forward(self: Any, c2: Tensor, style: Any, alpha: float = 1.0) -> Tensor:
    if not _covered(c2) or alpha != 1.0 or style.batch_size != c2.shape[0]:
        return _plain(self)(c2, style, alpha)
    from impasto.models.microast import MicroASTStyle

    fields = list(style.tensors())

    def fn(m: nn.Module, c: Tensor, *codes: Tensor) -> tuple[Tensor, ...]:
        return (type(m).forward(m, c, MicroASTStyle(**dict(zip(fields, codes, strict=True))), 1.0),)

    codes = tuple(v.float() for v in style.tensors().values())
    (out,) = self._ort.run(("decode", tuple(fields)), fn, (c2.float(), *codes),
                           [{2: "height", 3: "width"}] + [{}] * len(codes))
    return out.to(c2.dtype)


def _modulator_forward(self: Any, f1: Tensor, f2: Tensor) -> tuple[Tensor, ...]:
    if not _covered(f1, f2):
        return _plain(self)(f1, f2)
    outs = self._ort.run(("modulate",), lambda m, a, b: tuple(type(m).forward(m, a, b)), (f1.float(), f2.float()),
                         [{2: "height", 3: "width"}, {2: "height2", 3: "width2"}])
    return tuple(o.to(f1.dtype) for o in outs)


def prepare(module: nn.Module) -> int:
    """Install the onnxruntime forwards on the networks in ``module`` (in place); returns how many."""
    from impasto.decoders.vgg import VGGDecoder
    from impasto.encoders.vgg import VGGEncoder
    from impasto.models.microast import MicroASTDecoder, MicroASTEncoder, MicroASTModulator

    check_available()
    forwards: list[tuple[type[nn.Module], Callable[..., Any]]] = [
        (VGGEncoder, _encoder_forward), (VGGDecoder, _decoder_forward), (MicroASTEncoder, _microast_encoder_forward),
        (MicroASTDecoder, _microast_decoder_forward), (MicroASTModulator, _modulator_forward),
    ]
    count = 0
    for m in module.modules():
        fwd = next((f for cls, f in forwards if isinstance(m, cls)), None)
        if fwd is not None:
            m.__dict__["_ort"] = _Runner(m)
            m.forward = types.MethodType(fwd, m)
            count += 1
    return count
