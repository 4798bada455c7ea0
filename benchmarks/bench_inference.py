"""Inference speed and memory benchmark of impasto's methods, each time against a lower bound from the same run.

Usage (the numbers in ``benchmarks/results/inference.md`` come from the first line)::

    python benchmarks/bench_inference.py --quick
    python benchmarks/bench_inference.py --cases adain-16x,microast --sizes 512 --repeats 5 --out /tmp/bench

For every case (method, options, image size) a fresh Python process (``--worker``) loads the model, then
measures, through the public :class:`impasto.pipeline.Stylizer` API only:

* ``time``: median of N runs of ``Stylizer.stylize_tensor`` after a warm-up run, with the style already cached
  (N = 1 for sides above 1024; a case whose warm-up run takes longer than ``--long-s`` is timed by that run
  alone, whose first-call overhead is then a few percent at most);
* ``enc uncached`` / ``enc cached``: ``Stylizer.encode_style`` after ``st._cache.clear()`` / on a cache hit;
* ``FLOPs``: 2 x the multiply-adds of every convolution (forward and, for Gatys, backward) and matrix product
  actually executed, counted by :class:`FlopCounter` (``torch.utils.flop_counter.FlopCounterMode``, a
  ``TorchDispatchMode``: it sees ``nn.Conv2d``/``nn.Linear`` modules and functional ``F.conv2d``/``@``/``torch.mm``
  calls alike; forward convs count their nonzero weights only, oneDNN's fused conv counts as a conv) during the
  warm-up run; Magenta's int8 ONNX graph is counted from its weight shapes (:func:`magenta_transform_flops`);
* ``bytes moved``: the bytes of every ATen op's tensor arguments and results (numel x element size; views move
  nothing), summed over the same run by :class:`BytesCounter`: an estimate of the memory traffic that assumes no
  cache reuse between ops;
* ``bound`` (roofline) ``= max(FLOPs / F, bytes / B)`` with ``F`` the FLOP/s of a large well-shaped convolution
  (1 x 128 x 256 x 256, 3x3, 128 -> 128, in the case's precision; the faster of a channels-first module and a
  channels-last conv, :func:`conv_throughput`) and ``B`` the bytes/s of a 256 MiB ``dst.copy_(src)`` (read +
  write, :func:`copy_bandwidth`), both measured in the same process right before and after the case (the better
  of the two: the machine is shared, so the bound follows its load); ``by`` says which term is the larger, and
  ``ratio = time / bound``;
* ``peak MB``: the resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) during the
  timed stylisation runs minus the resident set just before them (model, inputs and cached style loaded);
  ``ru_maxrss`` where the reset is not possible.

Per-part times (encoder / transform / decoder ...) come from forward hooks on the method's modules and from
wrapping its transform functions in the worker process (no library file is changed); they explain where the
time goes when a method is far from its bound. The parent process writes ``inference.md`` and ``inference.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import gc
import importlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMPASTO_SHARED_DIR", ROOT.parent / "shared"))
DEFAULT_CONTENT = SHARED / "data" / "content" / "pytorch-AdaIN__chicago.jpg"
DEFAULT_STYLE = SHARED / "data" / "style" / "AdaAttN__udnie.jpg"
RESULT_TAG = "BENCH_RESULT "

#: Reference numbers measured on this machine with the peers' public code (2 threads), from the benchmark issue:
#: (method label, size) -> (seconds, peak MB or None).
REFERENCES: dict[tuple[str, int], tuple[float, float | None]] = {
    ("magenta (public ONNX)", 512): (0.128, None),
    ("microast (public code)", 512): (0.20, None),
    ("microast (public code)", 1024): (1.15, None),
    ("wct 5 levels vgg19-16x (public code)", 512): (0.96, None),
    ("wct 5 levels vgg19-16x (public code)", 1024): (5.9, None),
    ("wct 3 levels vgg19 (public code)", 512): (3.2, None),
    ("wct 3 levels vgg19 (public code)", 1024): (16.6, 6100.0),
    ("style-swap (public PyTorch port)", 512): (10.7, 4000.0),
}


# ---------------------------------------------------------------------------------------------------------------
# Counting FLOPs and bytes moved
# ---------------------------------------------------------------------------------------------------------------
def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _conv_flops_nonzero(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, transposed: bool) -> int:
    """FLOPs (2 per multiply-add) of one forward convolution, as ``torch.utils.flop_counter`` counts them, scaled
    by the share of nonzero weights: the structural zeros of rewritten convs (an unrolled conv to RGB, the
    block-diagonal form of a grouped conv, phase kernels of an up-sampling conv) are executed but are not work
    the method needs."""
    flops = conv_flop_count(list(x.shape), list(w.shape), list(out.shape), transposed=transposed)
    if w.layout != torch.strided:  # an opaque (e.g. oneDNN-blocked) weight: all of it
        return flops
    return flops * int(torch.count_nonzero(w)) // max(w.numel(), 1)


def _aten_conv_flops(x: Any, w: Any, _bias: Any, _stride: Any, _padding: Any, _dilation: Any, transposed: Any,
                     *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    return _conv_flops_nonzero(x, w, out_val, bool(transposed))


def _pointwise_conv_flops(x: Any, w: Any, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """oneDNN's conv with a fused activation (``mkldnn._convolution_pointwise``, what impasto's fused CPU convs
    and torch.compile's CPU backend call): a plain forward conv."""
    return _conv_flops_nonzero(x, w, out_val, False)


def _mv_flops(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    """``mv(a, x)`` / ``addmv(y, a, x)``: 2 FLOPs per element of the matrix."""
    a = args[0] if args[0].dim() == 2 else args[1]
    return 2 * a.numel()


for _f in (_aten_conv_flops, _pointwise_conv_flops, _mv_flops):
    _f._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode hands these the tensors, not their shapes


def _custom_flop_formulas() -> dict[Any, Any]:
    """FlopCounterMode's formulas overridden or added here: forward convs count their nonzero weights only,
    oneDNN's fused conv counts as a conv, and matrix-vector products are counted (FlopCounterMode skips them)."""
    aten = torch.ops.aten
    mapping: dict[Any, Any] = {
        aten.convolution: _aten_conv_flops,
        aten._convolution: _aten_conv_flops,
        aten.mv: _mv_flops,
        aten.addmv: _mv_flops,
    }
    fused = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if fused is not None:
        mapping[fused] = _pointwise_conv_flops
    return mapping


#: op name -> kind in the FLOP breakdowns
_FLOP_KINDS = {
    "convolution": "conv",
    "_convolution": "conv",
    "_convolution_pointwise": "conv",
    "convolution_backward": "conv_backward",
    "mm": "matmul",
    "addmm": "matmul",
    "bmm": "matmul",
    "baddbmm": "matmul",
    "mv": "matmul",
    "addmv": "matmul",
}


class FlopCounter(FlopCounterMode):
    """``torch.utils.flop_counter.FlopCounterMode`` (FLOPs = 2 x multiply-adds of every convolution, forward and
    backward, and matrix product executed, seen at the ATen dispatch level: ``nn.Conv2d``/``nn.Linear`` and
    functional ``F.conv2d``/``@``/``torch.mm`` alike; onnxruntime graphs are not), with the formulas of
    :func:`_custom_flop_formulas`, no printed table, and each op's FLOPs also attributed to the innermost
    :class:`PartTimer` part active (``by_part``; ``other`` outside any part). ``total``: all FLOPs; ``by_kind``:
    conv / conv_backward / matmul. Element-wise ops, pooling, padding, im2col and eigendecompositions count 0.
    """

    def __init__(self, parts: PartTimer | None = None) -> None:
        super().__init__(display=False, custom_mapping=_custom_flop_formulas())
        self.parts = parts
        self.by_part: Counter[str] = Counter()

    def __enter__(self) -> FlopCounter:
        self.by_part.clear()
        super().__enter__()
        return self

    @property
    def total(self) -> int:
        return int(self.get_total_flops())

    @property
    def by_kind(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for op, n in self.get_flop_counts().get("Global", {}).items():
            name = getattr(op, "__name__", str(op))
            kinds[_FLOP_KINDS.get(name, name)] += int(n)
        return kinds

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        # FlopCounterMode's per-op hook (torch 2.1+): the op's FLOPs are what it adds to the "Global" counts
        counts = self.flop_counts["Global"]
        before = counts.get(func_packet, 0)
        out = super()._count_flops(func_packet, out, args, kwargs)
        added = counts.get(func_packet, 0) - before
        if added:
            self.by_part[self.parts.current if self.parts is not None else "other"] += int(added)
        return out


#: ops whose tensor arguments marked as written (``Tensor(a!)``) are only written, not read
_WRITE_ONLY_OPS = {"copy_", "fill_", "zero_", "normal_", "uniform_", "random_", "bernoulli_", "exponential_"}
#: ops that allocate or change metadata only: no data moved
_NO_TRAFFIC_OPS = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "resize_", "resize_as_", "set_",
    "_local_scalar_dense", "lift_fresh", "_to_dense",
}


def _tensors_nbytes(value: Any, seen: set[int] | None = None) -> int:
    """Sum of numel * element_size over the tensors in ``value`` (a tensor, a list of them, ...), each tensor
    object once when ``seen`` is given."""
    total = 0
    for t in tree_leaves(value):
        if isinstance(t, torch.Tensor):
            if seen is not None:
                if id(t) in seen:
                    continue
                seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def op_bytes(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> tuple[int, int]:
    """(bytes read, bytes written) of one ATen call, estimated from its tensor arguments and results: every
    tensor argument is read once, every tensor result written once, numel * element_size each (logical
    elements, whatever the storage; a tensor passed twice to one op is read once). Views and aliases (results
    annotated ``Tensor(a)``: view, permute, slice, expand, detach...), allocations and metadata ops move nothing;
    an argument the op only writes (``out=``, the destination of ``copy_``/``fill_``/``zero_``) is not read; an
    in-place op's argument is read and written."""
    schema = getattr(func, "_schema", None)
    name = getattr(getattr(func, "overloadpacket", None), "__name__", str(func))
    if name in _NO_TRAFFIC_OPS:
        return 0, 0
    if schema is not None and any(
        r.alias_info is not None and not r.alias_info.is_write for r in schema.returns
    ):
        return 0, 0  # a view of an input
    seen: set[int] = set()
    read = 0
    if schema is None:
        read = _tensors_nbytes((args, kwargs), seen)
    else:
        write_only = name in _WRITE_ONLY_OPS
        for i, a in enumerate(schema.arguments):
            if i < len(args) and not a.kwarg_only:
                value = args[i]
            elif a.name in kwargs:
                value = kwargs[a.name]
            else:
                continue
            info = a.alias_info
            if info is not None and info.is_write and (a.kwarg_only or write_only):
                continue
            read += _tensors_nbytes(value, seen)
    return read, _tensors_nbytes(out, set())


class BytesCounter(TorchDispatchMode):
    """Estimate the memory traffic of everything executed inside ``with BytesCounter():``: the bytes of every ATen
    op's tensor arguments and results (:func:`op_bytes`), summed over the run. This assumes no cache reuse between
    ops (each op reads its inputs from memory and writes its outputs back): an over-estimate for maps that stay in
    cache, an under-estimate for ops that read their input several times (a conv's im2col, a large matrix
    product's blocks). ``read`` / ``written`` / ``total`` in bytes; ``by_part`` as :class:`FlopCounter`'s.

    Enter it inside (after) a :class:`FlopCounter`: it then sees the ops the program calls, not
    FlopCounterMode's decompositions of them, nor the ``count_nonzero`` of its conv formulas.
    """

    def __init__(self, parts: PartTimer | None = None) -> None:
        super().__init__()
        self.parts = parts
        self.read = 0
        self.written = 0
        self.ops = 0
        self.by_part: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self.read + self.written

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        r, w = op_bytes(func, args, kwargs, out)
        if r or w:
            self.read += r
            self.written += w
            self.ops += 1
            self.by_part[self.parts.current if self.parts is not None else "other"] += r + w
        return out


@contextlib.contextmanager
def count_work(parts: PartTimer | None = None) -> Iterator[tuple[FlopCounter, BytesCounter]]:
    """``with count_work(timer) as (flops, traffic):`` both counters, in the order that keeps them apart."""
    with FlopCounter(parts) as fc, BytesCounter(parts) as bc:
        yield fc, bc


def style_swap_matching_flops(
    content_hw: tuple[int, int],
    style_hw: tuple[int, int],
    channels: int,
    patch_size: int = 3,
    stride: int = 1,
    style_stride: int = 1,
) -> int:
    """Analytic FLOPs of style-swap's patch matching: 2 x content patches x style patches x C*k*k (2 FLOPs per
    multiply-add, as FlopCounterMode counts the products).

    content_hw / style_hw: the feature-map sizes (h, w) at the swap layer. Content patches are counted as the
    transform takes them (the map padded at the bottom/right to a multiple of the stride).
    """
    k = patch_size
    ch, cw = content_hw
    n_content = (math.ceil((ch - k) / stride) + 1) * (math.ceil((cw - k) / stride) + 1)
    n_style = ((style_hw[0] - k) // style_stride + 1) * ((style_hw[1] - k) // style_stride + 1)
    return 2 * n_content * n_style * channels * k * k


#: Output resolution (fraction of the input side) of each conv of Magenta's transform network (Ghiasi et al.
#: 2017, ``transformer/{contract,residual,expand}``: 9x9 conv, two stride-2 convs, 5 residual blocks at 1/4,
#: then nearest x2 upsampling before expand/conv1 and expand/conv2).
_MAGENTA_SCALE = {
    "contract/conv1": 1.0,
    "contract/conv2": 0.5,
    "contract/conv3": 0.25,
    "residual": 0.25,
    "expand/conv1": 0.5,
    "expand/conv2": 1.0,
    "expand/conv3": 1.0,
}


def onnx_weight_shapes(path: str | Path) -> dict[str, list[int]]:
    """Names and dims of the 4-d initializers of an ONNX file (read with impasto's minimal protobuf reader)."""
    from impasto.models.magenta import _fields, _read_varint

    model = Path(path).read_bytes()
    graph = next(p for n, w, _, p in _fields(model) if n == 7 and w == 2)
    shapes = {}
    for num, wire, _, tensor in _fields(graph):
        if num != 5 or wire != 2:  # GraphProto.initializer
            continue
        dims: list[int] = []
        name = ""
        for n, w, raw, p in _fields(tensor):
            if n == 1 and w == 0:  # TensorProto.dims (unpacked)
                dims.append(_read_varint(raw, 1)[0])
            elif n == 1 and w == 2:  # packed
                pos = 0
                while pos < len(p):
                    v, pos = _read_varint(p, pos)
                    dims.append(v)
            elif n == 8 and w == 2:
                name = p.decode()
        if len(dims) == 4:
            shapes[name] = dims
    return shapes


def magenta_transform_flops(height: int, width: int, path: str | Path) -> int:
    """FLOPs (2 x multiply-adds) of Magenta's transform network on an H x W content (padded to a multiple of 4),
    from the weight shapes in the ONNX file; the conditional-instance-norm 1x1 convs of the 100-d style vector
    are ignored."""
    h, w = -(-height // 4) * 4, -(-width // 4) * 4
    total = 0
    for name, dims in onnx_weight_shapes(path).items():
        if not name.startswith("transformer/") or not name.endswith("/weights"):
            continue
        key = next((k for k in _MAGENTA_SCALE if k in name), None)
        if key is None:
            raise ValueError(f"unexpected Magenta weight {name}")
        s = _MAGENTA_SCALE[key]
        total += round(h * s) * round(w * s) * _numel(dims)  # dims = Cout x Cin x k x k
    return 2 * total


# ---------------------------------------------------------------------------------------------------------------
# Timing the parts of a method
# ---------------------------------------------------------------------------------------------------------------
class PartTimer:
    """Inclusive wall time and call count of named parts: modules (forward hooks) and wrapped functions."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, float]] = []
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._handles: list[Any] = []
        self._patched: list[tuple[Any, str, Any]] = []

    @property
    def current(self) -> str:
        return self._stack[-1][0] if self._stack else "other"

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def enter(self, name: str) -> None:
        self._stack.append((name, time.perf_counter()))

    def exit(self) -> None:
        name, t0 = self._stack.pop()
        self.seconds[name] += time.perf_counter() - t0
        self.calls[name] += 1

    def add_module(self, name: str, module: nn.Module) -> None:
        """Time ``module(...)`` calls (forward hooks) and, for impasto's VGG encoders, ``module.encode(...)``,
        which calls ``forward`` directly (no hooks)."""
        self._handles.append(module.register_forward_pre_hook(lambda m, a: self.enter(name)))
        self._handles.append(module.register_forward_hook(lambda m, a, o: self.exit()))
        if callable(getattr(module, "encode", None)):
            self.add_function(module, "encode", name)

    def add_function(self, owner: Any, attr: str, name: str) -> None:
        """Replace ``owner.attr`` (a module-level function or an instance's method) by a timed wrapper until
        :meth:`close`."""
        fn = getattr(owner, attr)
        own = attr in vars(owner)  # a module function, or an attribute set on this instance

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()

        setattr(owner, attr, timed)
        self._patched.append((owner, attr, fn if own else None))

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        for owner, attr, fn in reversed(self._patched):
            if fn is None:  # a bound method shadowed on the instance: remove the shadow
                delattr(owner, attr)
            else:
                setattr(owner, attr, fn)
        self._handles.clear()
        self._patched.clear()


def attach_parts(timer: PartTimer, stylizer: Any) -> None:
    """Register the modules and transform functions of a Stylizer's method with ``timer`` (by method name)."""
    import impasto.methods.adain as m_adain
    import impasto.methods.style_swap as m_swap
    import impasto.methods.wct as m_wct

    t_swap = importlib.import_module("impasto.transforms.style_swap")  # the package re-exports a same-named function
    m = stylizer.method
    name = stylizer.name
    if name == "adain":
        timer.add_module("encoder", m.encoder)
        timer.add_module("decoder", m.decoder)
        timer.add_function(m_adain, "adain", "transform")
        timer.add_function(m_adain, "blend_features", "blend")
    elif name == "wct":
        for enc in m.encoders.values():
            timer.add_module("encoder", enc)
        for dec in m.decoders.values():
            timer.add_module("decoder", dec)
        timer.add_function(m_wct, "wct", "transform")
        timer.add_function(m_wct, "wct_style_stats", "style stats")
        timer.add_function(m_wct, "blend_features", "blend")
    elif name == "style-swap":
        timer.add_module("encoder", m.encoder)
        timer.add_module("decoder", m.decoder)
        timer.add_function(m_swap, "style_swap", "swap")
        timer.add_function(t_swap, "_best_match", "match")
        timer.add_function(t_swap, "_best_match_reranked", "match")  # bf16 matching with exact re-scoring
        timer.add_function(t_swap, "_correlation_match", "match")  # the default at stride 1
        timer.add_function(m_swap, "style_swap_patches", "patches")
        timer.add_function(m_swap, "blend_features", "blend")
    elif name in ("sanet", "iecontraast"):
        timer.add_module("encoder", m.encoder)
        timer.add_module("transform", m.transform)
        if m.skips is not None:
            timer.add_module("skips", m.skips)
        timer.add_module("decoder", m.decoder)
    elif name == "microast":
        timer.add_module("encoder", m.model.content_encoder)
        timer.add_module("style encoder", m.model.style_encoder)
        timer.add_module("modulator", m.model.modulator)
        timer.add_module("decoder", m.model.decoder)
    elif name == "gatys":
        timer.add_module("encoder", m.encoder)


# ---------------------------------------------------------------------------------------------------------------
# Machine measurements
# ---------------------------------------------------------------------------------------------------------------
def conv_throughput(repeats: int = 3, size: int = 256, channels: int = 128, precision: str = "fp32") -> float:
    """FLOP/s (2 per multiply-add) of a 3x3 ``channels -> channels`` convolution on 1 x channels x size x size in
    float32 or bf16 (``precision`` as the Stylizer's): the best of ``repeats`` runs of each of two forms, the
    module on a channels-first float32 input (under bf16 autocast for bf16) and the conv on a channels-last input
    with its weights already in the precision's dtype, as impasto's methods run it. The faster form sets the bound
    (on this machine the channels-last one, by 5-20%: a bound from the slower form would flatter every ratio)."""
    x = torch.randn(1, channels, size, size)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x_cl = x.to(dtype).contiguous(memory_format=torch.channels_last)
    w_cl = conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * size * size * channels * channels * 9
    best = math.inf
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad():
        for run in (lambda: conv(x), lambda: torch.nn.functional.conv2d(x_cl, w_cl, padding=1)):
            with amp:
                run()
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    run()
                    best = min(best, time.perf_counter() - t0)
    return flops / best


def matmul_throughput(repeats: int = 3, n: int = 2048, k: int = 2304, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s (2 per multiply-add) of an (n x k) @ (k x n) matrix product in ``dtype`` (best of ``repeats``);
    k = 256 * 3 * 3 as in the style-swap matching at relu3_1."""
    a, b = torch.randn(n, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n * n * k / best


def copy_bandwidth(repeats: int = 5, mib: int = 256) -> float:
    """Memory bandwidth in bytes/s: ``dst.copy_(src)`` of two ``mib`` MiB float32 tensors (both touched first),
    best of ``repeats``, counting the bytes read and written (2 x ``mib`` MiB per copy), on the threads
    ``torch.set_num_threads`` gives."""
    n = max(1, mib * 2**20 // 4)
    src = torch.ones(n)
    dst = torch.zeros(n)
    dst.copy_(src)
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    del src, dst
    return 2 * n * 4 / best


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kb() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r


def trim_memory() -> None:
    """Collect garbage and give freed heap pages back to the OS (glibc ``malloc_trim``)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak resident memory above a baseline, for one block: ``with PeakMemory() as pm: ...; pm.peak_mb``."""

    def __init__(self) -> None:
        self.baseline_kb = 0
        self.peak_mb = float("nan")
        self.exact = False

    def __enter__(self) -> PeakMemory:
        trim_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.exact = True
        except OSError:
            self.exact = False
        self.baseline_kb = _status_kb("VmRSS") or _maxrss_kb()
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kb("VmHWM") if self.exact else None
        self.peak_mb = ((hwm if hwm is not None else _maxrss_kb()) - self.baseline_kb) / 1024


# ---------------------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One benchmark case: a Stylizer method with options on a W x H content; repeats = timed runs."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    width: int = 512
    height: int = 512
    repeats: int = 3
    gatys_steps: int | None = None
    precision: str = "fp32"

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


#: label -> (method, options): the configurations of the benchmark issue.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "adain-16x": ("adain", {"encoder": "vgg19-16x"}),
    "adain-vgg19-r31": ("adain", {"encoder": "vgg19", "depth": "relu3_1"}),
    "wct-16x": ("wct", {"encoder": "vgg19-16x"}),
    "wct-vgg19": ("wct", {"encoder": "vgg19"}),
    "style-swap": ("style-swap", {"encoder": "vgg19"}),
    "style-swap-16x": ("style-swap", {"encoder": "vgg19-16x"}),
    "sanet": ("sanet", {}),
    "microast": ("microast", {}),
    "magenta": ("magenta", {}),
    "gatys": ("gatys", {"encoder": "vgg19"}),
}

#: label -> sizes run by default (square sides, or "4000x3000"). 4000x3000 is tiled by the Stylizer (> 4 MP; tile
#: side per method: ``impasto.pipeline.auto_tile_size``).
DEFAULT_SIZES: dict[str, list[str]] = {
    "adain-16x": ["512", "1024", "4000x3000"],
    "adain-vgg19-r31": ["512", "1024"],
    "wct-16x": ["512", "1024"],
    "wct-vgg19": ["512", "1024"],
    "style-swap": ["512", "1024"],
    "style-swap-16x": ["512", "1024"],
    "sanet": ["512", "1024", "4000x3000"],
    "microast": ["512", "1024", "4000x3000"],
    "magenta": ["512", "1024", "4000x3000"],
    "gatys": ["512"],
}


def _parse_size(s: str) -> tuple[int, int]:
    if "x" in s:
        w, h = s.lower().split("x")
        return int(w), int(h)
    return int(s), int(s)


#: methods that run in one precision only: Gatys (fp32 pixel optimisation), Magenta (its own int8 ONNX graph)
SINGLE_PRECISION = {"gatys": "fp32", "magenta": "fp32"}


def build_cases(
    labels: Sequence[str], sizes: Sequence[str] | None, repeats: int, precisions: Sequence[str] = ("bf16", "fp32")
) -> list[Case]:
    """Cases for the given config labels, each in every precision the method has; sizes None = each config's
    defaults. Sides above 1024 run once (a single run at 1024 px varied by up to 2x between runs on a machine
    with AMX, so 1024 gets ``repeats`` runs too)."""
    cases = []
    for label in labels:
        if label not in CONFIGS:
            raise SystemExit(f"unknown case {label!r}; known: {', '.join(CONFIGS)}")
        method, options = CONFIGS[label]
        precs = [SINGLE_PRECISION[method]] if method in SINGLE_PRECISION else list(precisions)
        for s in sizes or DEFAULT_SIZES[label]:
            w, h = _parse_size(s)
            big = max(w, h) > 1024
            for prec in precs:
                if method == "gatys":
                    cases.append(Case(label, method, dict(options), w, h, 1, gatys_steps=1, precision=prec))
                else:
                    cases.append(Case(label, method, dict(options), w, h, 1 if big else repeats, precision=prec))
    return cases


def load_rgb(path: str | Path, width: int, height: int) -> torch.Tensor:
    """An image file resized to exactly width x height: 1 x 3 x H x W float in [0, 1]."""
    from PIL import Image

    from impasto.io.images import image_to_tensor

    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BICUBIC)
        return image_to_tensor(img)


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_case(
    case: Case,
    content_path: str | Path = DEFAULT_CONTENT,
    style_path: str | Path = DEFAULT_STYLE,
    threads: int = 2,
    enc_repeats: int = 3,
    long_s: float = 5.0,
    throughput_repeats: int = 2,
    style_size: int = 512,
    calib_size: int = 256,
    save_dir: str | None = None,
    bw_mib: int = 256,
) -> dict[str, Any]:
    """Measure one case in this process (see the module docstring); returns a flat dict of results. With
    ``save_dir``, the last output is saved there (float16) for the parent's PSNR of bf16 against fp32."""
    from impasto.pipeline import AUTO_TILE_PIXELS, Stylizer, auto_tile_size
    from impasto.runtime import reuse_freed_memory

    torch.set_num_threads(threads)
    res: dict[str, Any] = {
        "label": case.label,
        "method": case.method,
        "options": case.options,
        "size": case.size,
        "pixels": case.width * case.height,
        "precision": case.precision,
    }
    res["loadavg"] = _loadavg()
    # the roofline bound uses the conv rate of the case's own precision (int8 Magenta: the float32 rate) and the
    # copy bandwidth, both measured in this process right before and after the case
    rate_pre = conv_throughput(throughput_repeats, calib_size, precision=case.precision)
    bw_pre = copy_bandwidth(throughput_repeats + 1, bw_mib)

    t0 = time.perf_counter()
    opts = dict(case.options)
    if case.gatys_steps is not None:
        opts["steps"] = case.gatys_steps
    reuse_freed_memory()  # as the impasto command does (the library leaves malloc alone)
    st = Stylizer(case.method, device="cpu", precision=case.precision, style_size=style_size, **opts)
    res["load_s"] = time.perf_counter() - t0
    res["describe"] = st.describe()
    content = load_rgb(content_path, case.width, case.height)
    from PIL import Image

    with Image.open(style_path) as im:
        sw, sh = im.size
    scale = min(1.0, style_size / max(sw, sh))
    style = load_rgb(style_path, max(1, round(sw * scale)), max(1, round(sh * scale)))
    res["style_size"] = f"{style.shape[-1]}x{style.shape[-2]}"
    res["tiled"] = case.width * case.height > AUTO_TILE_PIXELS
    res["tile_size"] = auto_tile_size(st.method.full_res_channels()) if res["tiled"] else 0

    timer = PartTimer()
    attach_parts(timer, st)
    encoder_calls = [0]
    gatys_hook = None
    if case.method == "gatys":
        gatys_hook = st.method.encoder.register_forward_pre_hook(
            lambda m, a: encoder_calls.__setitem__(0, encoder_calls[0] + 1)
        )
    try:
        # -- style encoding: the first (cold, counted) call, then uncached and cached timings
        with PeakMemory() as pm_enc, count_work(timer) as (fc_enc, bc_enc):
            st.encode_style(style)
        res["enc_peak_mb"] = pm_enc.peak_mb
        res["enc_flops"] = fc_enc.total
        res["enc_bytes"] = bc_enc.total
        unc, cached = [], []
        for _ in range(enc_repeats):
            st._cache.clear()
            t0 = time.perf_counter()
            st.encode_style(style)
            unc.append(time.perf_counter() - t0)
        for _ in range(enc_repeats):
            t0 = time.perf_counter()
            st.encode_style(style)
            cached.append(time.perf_counter() - t0)
        res["enc_uncached_s"], res["enc_cached_s"] = _median(unc), _median(cached)
        code = st.encode_style(style)
        if case.method == "style-swap":
            res["style_patches"] = int(code.num_patches)
            res["style_code_mb"] = code.nbytes / 2**20

        # -- stylisation: counted warm-up run, then timed runs (all with the style cached)
        timer.reset()
        encoder_calls[0] = 0
        times = []
        with PeakMemory() as pm:
            with count_work(timer) as (fc, bc):
                t0 = time.perf_counter()
                out = st.stylize_tensor(content, style)
                first = time.perf_counter() - t0
            calls_first = encoder_calls[0]
            counted_parts = dict(timer.seconds)
            timer.reset()
            n_timed = case.repeats if first <= long_s else 0
            for _ in range(n_timed):
                t0 = time.perf_counter()
                out = st.stylize_tensor(content, style)
                times.append(time.perf_counter() - t0)
        parts = {k: v / n_timed for k, v in timer.seconds.items()} if n_timed else counted_parts
        if not n_timed:
            times = [first]
        res.update(
            time_s=_median(times),
            times=times,
            first_run_s=first,
            timed_runs=len(times),
            peak_mb=pm.peak_mb,
            peak_exact=pm.exact,
            flops=fc.total,
            flops_by_kind=dict(fc.by_kind),
            flops_by_part=dict(fc.by_part),
            bytes=bc.total,
            bytes_read=bc.read,
            bytes_written=bc.written,
            bytes_by_part=dict(bc.by_part),
            parts_s=parts,
            out_shape=list(out.shape),
        )
        if case.method == "gatys":
            res["iterations"] = max(1, calls_first - 1)  # one encoder pass for the content features
        if case.method == "magenta":
            from impasto import weights

            path = weights.resolve("magenta-transform")
            res["flops"] = magenta_transform_flops(case.height, case.width, path)
            res["flops_by_kind"] = {"int8 conv (onnx)": res["flops"]}
            # the bytes counted are those of the PyTorch ops around the ONNX graph only
            res["bytes_note"] = "torch ops only, not the onnxruntime graph"
            if res["tiled"]:
                res["flops_note"] = "untiled count"
        if case.method == "style-swap":
            m = st.method
            with torch.no_grad():
                fs = m.encoder.encode(style)
            # the content features as the method sees them (the map each tile produces); untiled here
            hc = math.ceil(case.height / 4) if "relu3" in m.depth else None
            wc = math.ceil(case.width / 4) if "relu3" in m.depth else None
            if hc is not None:
                res["match_flops_analytic"] = style_swap_matching_flops(
                    (hc, wc),
                    tuple(fs.shape[-2:]),
                    fs.shape[1],
                    m.config.patch_size,
                    m.config.stride,
                    m.config.style_stride,
                )
            res["match_flops_counted"] = fc.by_part.get("match", 0)
            if case.precision == "bf16" and case.width * case.height <= 512 * 512:
                res.update(pick_agreement(fs, m.encoder.encode(content), m.config.patch_size))
        if save_dir:
            torch.save(out.half(), Path(save_dir) / f"{case.label}_{case.size}_{case.precision}.pt")
    finally:
        if gatys_hook is not None:
            gatys_hook.remove()
        timer.close()
    rate_post = conv_throughput(1, calib_size, precision=case.precision)
    bw_post = copy_bandwidth(throughput_repeats + 1, bw_mib)
    res["conv_flops_per_s_pre"], res["conv_flops_per_s_post"] = rate_pre, rate_post
    res["conv_flops_per_s"] = max(rate_pre, rate_post)
    res["copy_bytes_per_s_pre"], res["copy_bytes_per_s_post"] = bw_pre, bw_post
    res["copy_bytes_per_s"] = max(bw_pre, bw_post)
    return res


def pick_agreement(style_feat: torch.Tensor, content_feat: torch.Tensor, patch_size: int) -> dict[str, float]:
    """Share of content patches whose style-swap pick differs from the exact fp32 argmax of the direct matching:
    the correlation algorithm (fp32), and bf16 direct matching without and with the exact re-scoring of the 4
    best bf16 candidates."""
    import torch.nn.functional as F

    from impasto.transforms.style_swap import (
        _best_match,
        _best_match_reranked,
        _correlation_match,
        style_swap_patches,
    )

    with torch.no_grad():
        p = style_swap_patches(style_feat.float(), patch_size)
        cols = F.unfold(content_feat.float(), patch_size)[0]
        exact = _best_match(cols, p.filters.reshape(p.num_patches, -1), 4096)
        low = p.filters.reshape(p.num_patches, -1).bfloat16()
        plain = _best_match(cols.bfloat16(), low, 4096)
        reranked = _best_match_reranked(cols, low, p, 4096, 4)
        corr = _correlation_match(content_feat.float(), p, 256.0)
    return {
        "picks_changed_correlation": float((corr != exact).float().mean()),
        "picks_changed_plain_bf16": float((plain != exact).float().mean()),
        "picks_changed_reranked": float((reranked != exact).float().mean()),
    }


def roofline(flops: float, nbytes: float, flop_rate: float, bandwidth: float) -> tuple[float, float, float, str]:
    """(bound s, compute term s, memory term s, which term bounds: 'compute' or 'memory'):
    bound = max(flops / flop_rate, nbytes / bandwidth); NaN where there is nothing counted."""
    comp = flops / flop_rate if flops else 0.0
    mem = nbytes / bandwidth if nbytes else 0.0
    if not comp and not mem:
        return float("nan"), float("nan"), float("nan"), "-"
    return max(comp, mem), comp, mem, ("compute" if comp >= mem else "memory")


def derive(res: dict[str, Any], rate: float | None = None, bandwidth: float | None = None) -> dict[str, Any]:
    """Add the roofline bound (max of FLOPs / compute rate and bytes moved / copy bandwidth, both measured in the
    case's process), ratio = time / bound, which term bounds it, and the per-iteration / matching figures."""
    r = dict(res)
    rate = rate or r["conv_flops_per_s"]
    bw = bandwidth or r["copy_bytes_per_s"]
    per = r.get("iterations") or 1
    r["time_per_unit_s"] = r["time_s"] / per
    r["flops_per_unit"] = r["flops"] / per
    r["bytes_per_unit"] = r.get("bytes", 0) / per
    r["bound_s"], r["compute_bound_s"], r["memory_bound_s"], r["bound_by"] = roofline(
        r["flops_per_unit"], r["bytes_per_unit"], rate, bw
    )
    r["ratio"] = r["time_per_unit_s"] / r["bound_s"] if r["bound_s"] > 0 else float("nan")
    r["enc_bound_s"] = roofline(r.get("enc_flops", 0), r.get("enc_bytes", 0), rate, bw)[0]
    if r["method"] == "style-swap":
        ps = r.get("parts_s", {})
        # the goal is stated against the matching FLOPs of the paper's conv formulation (analytic), compute only
        mm = r.get("match_flops_analytic") or r.get("match_flops_counted") or 0
        r["match_bound_s"] = mm / rate
        r["match_s"] = ps.get("match", float("nan"))
        r["swap_s"] = ps.get("swap", float("nan"))
        r["match_ratio"] = r["match_s"] / r["match_bound_s"] if mm else float("nan")
        r["swap_ratio"] = r["swap_s"] / r["match_bound_s"] if mm else float("nan")
    return r


# ---------------------------------------------------------------------------------------------------------------
# Running cases in fresh processes, writing the results
# ---------------------------------------------------------------------------------------------------------------
def run_in_subprocess(case: Case, args: argparse.Namespace, timeout: float = 1800.0) -> dict[str, Any]:
    """Run one case with ``--worker`` in a fresh interpreter (so peak memory is per case); returns its dict."""
    env = dict(os.environ)
    env.setdefault("IMPASTO_WEIGHTS_DIR", str(SHARED / "weights"))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    payload = json.dumps(
        {
            "case": asdict(case),
            "content": str(args.content),
            "style": str(args.style),
            "threads": args.threads,
            "long_s": args.long_s,
            "enc_repeats": args.enc_repeats,
            "style_size": args.style_size,
            "calib_size": args.calib_size,
            "bw_mib": args.bw_mib,
            "save_dir": args.save_dir,
        }
    )
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", payload]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"label": case.label, "method": case.method, "size": case.size, "error": f"timeout {timeout}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {
        "label": case.label,
        "method": case.method,
        "size": case.size,
        "error": f"worker exited {proc.returncode}: {' | '.join(tail)}",
    }


def add_psnr(rows: Sequence[dict[str, Any]], save_dir: Path) -> None:
    """Set ``psnr_vs_fp32`` on each bf16 row whose fp32 twin ran: PSNR (dB, images in [0, 1]) of its output."""
    for r in rows:
        if r.get("precision") != "bf16" or "error" in r:
            continue
        a = save_dir / f"{r['label']}_{r['size']}_bf16.pt"
        b = save_dir / f"{r['label']}_{r['size']}_fp32.pt"
        if a.is_file() and b.is_file():
            mse = float(((torch.load(a).float() - torch.load(b).float()) ** 2).mean())
            r["psnr_vs_fp32"] = 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def _opt_str(opts: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in opts.items()) or "-"


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


CSV_FIELDS = [
    "label",
    "method",
    "options",
    "precision",
    "size",
    "tiled",
    "tile_size",
    "timed_runs",
    "time_s",
    "time_per_unit_s",
    "iterations",
    "first_run_s",
    "peak_mb",
    "enc_peak_mb",
    "flops",
    "flops_per_unit",
    "bytes",
    "bytes_per_unit",
    "bytes_read",
    "bytes_written",
    "conv_flops_per_s",
    "copy_bytes_per_s",
    "compute_bound_s",
    "memory_bound_s",
    "bound_s",
    "bound_by",
    "ratio",
    "enc_uncached_s",
    "enc_cached_s",
    "enc_flops",
    "enc_bytes",
    "enc_bound_s",
    "load_s",
    "match_flops_counted",
    "match_flops_analytic",
    "match_s",
    "swap_s",
    "match_bound_s",
    "match_ratio",
    "swap_ratio",
    "style_patches",
    "style_code_mb",
    "psnr_vs_fp32",
    "picks_changed_plain_bf16",
    "picks_changed_reranked",
    "parts_s",
    "flops_by_kind",
    "flops_by_part",
    "bytes_by_part",
    "bytes_note",
    "loadavg",
    "shim",
    "describe",
    "error",
]


def csv_cell(v: Any) -> Any:
    """One CSV cell: dicts and lists as JSON (floats in dicts rounded to 4 places), floats to 6 significant digits,
    None as empty."""
    if isinstance(v, dict):
        return json.dumps({a: (round(b, 4) if isinstance(b, float) else b) for a, b in v.items()})
    if isinstance(v, list):
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def write_rows(rows: Sequence[dict[str, Any]], path: Path, fields: Sequence[str],
               override: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """``rows`` as a CSV of ``fields`` (:func:`csv_cell`); ``override(row)`` gives cells that replace the default."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell(r.get(k)) for k in fields} | (override(r) if override else {}))


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    write_rows(rows, path, CSV_FIELDS, lambda r: {"options": _opt_str(r.get("options", {}))})


def _find(rows: Sequence[dict[str, Any]], label: str, size: str, precision: str | None = None) -> dict[str, Any] | None:
    """The row of (label, size) in ``precision``; None = the fastest precision that ran (the goals use that:
    it is what ``--precision auto`` picks on a machine with native bf16)."""
    found = [
        r for r in rows
        if r.get("label") == label and r.get("size") == size and "error" not in r
        and (precision is None or r.get("precision") == precision)
    ]
    return min(found, key=lambda r: r["time_s"], default=None)


def goals(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The benchmark issue's goals, each with the measured numbers and 'met' / 'NOT met'."""
    out = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    ff = [
        r for r in rows
        if "error" not in r and r["method"] not in ("gatys", "magenta", "style-swap") and math.isfinite(r["ratio"])
    ]
    worst = max(ff, key=lambda r: r["ratio"], default=None)
    if worst:
        bad = [
            f"{r['label']} {r['precision']} {r['size']} {r['ratio']:.2f}x ({r['bound_by']})"
            for r in ff if r["ratio"] > 1.5
        ]
        mem = [r for r in ff if r["bound_by"] == "memory"]
        out.append(
            "- Feed-forward methods within 1.5x of their roofline bound (max of FLOPs / the conv rate of the row's "
            "precision and estimated bytes moved / the copy bandwidth, both measured in the case's process): "
            f"{verdict(not bad)} (worst {worst['label']} {worst['precision']} {worst['size']} {worst['ratio']:.2f}x, "
            f"{worst['bound_by']}-bound"
            + (f"; over 1.5x: {', '.join(bad)}" if bad else "")
            + f"; {len(mem)} of {len(ff)} rows memory-bound)."
        )
        under = [f"{r['label']} {r['precision']} {r['size']} {r['ratio']:.2f}x" for r in ff if r["ratio"] < 1]
        if under:
            out.append(
                "- Below their bound (the byte count assumes no cache reuse between ops, so it over-estimates the "
                f"traffic of maps that stay in cache): {', '.join(under)}."
            )
    sw = [r for r in rows if "error" not in r and r["method"] == "style-swap" and "match_ratio" in r]
    if sw:
        txt = ", ".join(
            f"{r['label']} {r['precision']} {r['size']} matching {r['match_ratio']:.2f}x (whole swap "
            f"{r['swap_ratio']:.2f}x)"
            for r in sw
        )
        out.append(
            f"- Style-swap patch matching within 2x of its FLOPs (analytic, conv formulation; compute rate): "
            f"{verdict(all(r['match_ratio'] <= 2 for r in sw))} ({txt})."
        )
    a, mg = _find(rows, "adain-16x", "512x512"), _find(rows, "magenta", "512x512")
    if a and mg:
        for size in ("512x512", "1024x1024", "4000x3000"):
            a, mg = _find(rows, "adain-16x", size), _find(rows, "magenta", size)
            if a and mg:
                fp = _find(rows, "adain-16x", size, "fp32")
                out.append(
                    f"- adain on vgg19-16x faster than Magenta at {size}: "
                    f"{verdict(a['time_s'] < mg['time_s'])} ({a['time_s']:.3f} s ({a['precision']}) vs "
                    f"{mg['time_s']:.3f} s, same run"
                    + (f"; fp32: {fp['time_s']:.3f} s" if fp and fp is not a else "")
                    + ")."
                )
    mg = _find(rows, "magenta", "512x512")
    cal = mg["time_s"] / REFERENCES[("magenta (public ONNX)", 512)][0] if mg else None
    if cal:
        out.append(
            f"- Load factor of this run: Magenta took {mg['time_s']:.3f} s vs 0.128 s in the reference "
            f"measurement, i.e. {cal:.2f}x; the WCT and style-swap reference figures are compared below both raw "
            "and scaled by it."
        )
    for label, ref_label in (
        ("wct-16x", "wct 5 levels vgg19-16x (public code)"),
        ("wct-vgg19", "wct 3 levels vgg19 (public code)"),
    ):
        for side in (512, 1024):
            r = _find(rows, label, f"{side}x{side}")
            ref = REFERENCES.get((ref_label, side))
            if r and ref:
                target = ref[0] / 2
                txt = f"{r['time_s']:.2f} s ({r['precision']}) vs target {target:.2f} s (reference {ref[0]} s)"
                fp = _find(rows, label, f"{side}x{side}", "fp32")
                if fp and fp is not r:
                    txt += f"; fp32: {fp['time_s']:.2f} s"
                if cal:
                    txt += f"; scaled by the load factor: {r['time_s'] / cal:.2f} s"
                out.append(
                    f"- {label} at {side} at least 2x faster than {ref_label}: "
                    f"{verdict(r['time_s'] <= target)} raw, "
                    f"{verdict(bool(cal) and r['time_s'] / cal <= target)} load-scaled ({txt})."
                )
    for size in dict.fromkeys(x["size"] for x in rows if x.get("label") == "style-swap" and "error" not in x):
        r = _find(rows, "style-swap", size)
        if r["size"] == "512x512":
            txt = f"{r['time_s']:.2f} s ({r['precision']})" + (
                f", load-scaled {r['time_s'] / cal:.2f} s" if cal else ""
            )
            fp = _find(rows, "style-swap", size, "fp32")
            if fp and fp is not r:
                txt += f"; fp32: {fp['time_s']:.2f} s"
            out.append(
                f"- style-swap under 5 s at 512 px: {verdict(r['time_s'] < 5)} raw, "
                f"{verdict(bool(cal) and r['time_s'] / cal < 5)} load-scaled ({txt}; public port 10.7 s, "
                "4.0 GB)."
            )
        else:
            out.append(
                f"- style-swap runs at {r['size']}: **met** ({r['time_s']:.1f} s, peak "
                f"{r['peak_mb']:.0f} MB above the loaded model; the public port cannot run at 1024)."
            )
    return out


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, command: str, meta: dict[str, Any]) -> None:
    L = [
        "# impasto inference benchmark",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"- Date: {meta['date']}; machine: {meta['cpu']}, {meta['threads']} threads (`torch.set_num_threads`), "
        f"torch {meta['torch']}, Python {meta['python']}, OMP_WAIT_POLICY {meta['omp']}; impasto at commit "
        f"{meta['commit']}.",
        f"- Compute rate: conv throughput (1x128x{meta['calib_size']}x{meta['calib_size']}, 3x3, 128->128; the "
        "faster of a channels-first module and a channels-last conv, see `conv_throughput`; 2 FLOPs per "
        f"multiply-add), float32: run start {meta['rate_start'] / 1e9:.1f} GFLOP/s, run end "
        f"{meta['rate_end'] / 1e9:.1f} GFLOP/s, best of all cases {meta['rate_best'] / 1e9:.1f} GFLOP/s; bf16: run "
        f"start {meta['rate_start_bf16'] / 1e9:.1f}, run end {meta['rate_end_bf16'] / 1e9:.1f} GFLOP/s; matmul "
        f"({meta['mm_n']}x2304 @ 2304x{meta['mm_n']}) {meta['mm_rate'] / 1e9:.1f} GFLOP/s float32, "
        f"{meta['mm_rate_bf16'] / 1e9:.1f} GFLOP/s bfloat16.",
        f"- Memory bandwidth: `dst.copy_(src)` of {meta['bw_mib']} MiB float32 tensors, read + write bytes, best "
        f"of 5 (`copy_bandwidth`): run start {meta['bw_start'] / 1e9:.1f} GB/s, run end {meta['bw_end'] / 1e9:.1f} "
        "GB/s.",
        f"- Load average (1 min) at start / end: {meta['load_start']} / {meta['load_end']} "
        "(the machine is shared: every bound uses the conv rate and copy bandwidth measured inside the case's own "
        "process, right before and after it, the better of the two).",
        f"- Content `{meta['content']}` resized to each size; style `{meta['style']}` (Stylizer style_size "
        f"{meta['style_size']}), cached unless noted. Wall time of the whole run: "
        f"{meta['wall_s'] / 60:.1f} min.",
        "",
        "time = median of the timed runs of `Stylizer.stylize_tensor` after a warm-up run (style cached; `runs` = "
        "how many; one for sides above 1024; a case whose warm-up run exceeds 5 s is timed by that run alone); "
        "peak MB = resident-memory high-water mark during those runs "
        "above the loaded model, inputs and cached style (fresh process per case); GFLOPs = 2 x multiply-adds of "
        "all convolutions and matrix products executed (`torch.utils.flop_counter.FlopCounterMode`; convs count "
        "their nonzero weights; tile overlaps included); GB moved = bytes of every ATen op's tensor inputs and "
        "outputs summed over the run (an estimate assuming no cache reuse between ops; views move nothing); "
        "compute s = GFLOPs / the conv rate of the case's precision (bf16 rows: the bf16 rate); memory s = GB "
        "moved / the copy bandwidth; bound = the larger of the two (roofline), `by` = which; ratio = time / "
        "bound; enc = `encode_style` uncached (cache cleared) and cached (hit); prec = the "
        "Stylizer's `precision` (`auto` picks bf16 on this CPU, which has AVX512-BF16); PSNR = the bf16 output "
        "against the fp32 output of the same case (dB, pixels in [0, 1]). Magenta: FLOPs from its ONNX weights, "
        "bytes of the PyTorch ops around the ONNX graph only.",
        "",
        "| method | options | prec | size | runs | time s | peak MB | GFLOPs | GB moved | compute s | memory s "
        "| bound s | by | ratio | enc uncached s | enc cached ms | PSNR vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            L.append(
                f"| {r['label']} | {_opt_str(r.get('options', {}))} | {r.get('precision', '-')} | {r['size']} | - "
                f"| error: {r['error'][:80]} | | | | | | | | | | | |"
            )
            continue
        size = r["size"] + (f" (tiled, {r.get('tile_size') or 1024} px)" if r.get("tiled") else "")
        t = _fmt(r["time_per_unit_s"], 3)
        gf = _fmt(r["flops_per_unit"] / 1e9, 1)
        gb = _fmt(r["bytes_per_unit"] / 1e9, 2)
        if r.get("iterations"):
            t += f" per iteration ({r['iterations']} in {r['time_s']:.1f} s)"
            gf += " per iteration"
            gb += " per iteration"
        opts = _opt_str(r.get("options", {}))
        prec = r.get("precision", "-")
        if r["method"] == "magenta":
            opts, prec = "-", "int8 ONNX"
        L.append(
            f"| {r['label']} | {opts} | {prec} | {size} | {r['timed_runs']} | {t} | {_fmt(r['peak_mb'], 0)} | "
            f"{gf} | {gb} | {_fmt(r['compute_bound_s'], 3)} | {_fmt(r['memory_bound_s'], 3)} | "
            f"{_fmt(r['bound_s'], 3)} | {r['bound_by']} | {_fmt(r['ratio'], 2)} | {_fmt(r['enc_uncached_s'], 3)} | "
            f"{_fmt(r['enc_cached_s'] * 1000, 1)} | {_fmt(r.get('psnr_vs_fp32'), 1)} |"
        )
    L += [
        "",
        "Where the time goes (seconds per run; inclusive: `match` is inside `swap`; `other` = time outside "
        "the listed parts: tiling, blending, padding, clamping, copies):",
        "",
        "| method | prec | size | parts (s) | GFLOPs by part | GB moved by part |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r or not r.get("parts_s"):
            continue
        ps = dict(r["parts_s"])
        top = sum(v for k, v in ps.items() if k not in ("match",))
        ps["other"] = max(0.0, r["time_s"] - top)
        parts = ", ".join(f"{k} {v:.3f}" for k, v in ps.items())
        fp = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in r.get("flops_by_part", {}).items())
        bp = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in r.get("bytes_by_part", {}).items())
        L.append(f"| {r['label']} | {r.get('precision', '-')} | {r['size']} | {parts} | {fp} | {bp} |")
    sw = [r for r in rows if "error" not in r and r["method"] == "style-swap"]
    if sw:
        L += [
            "",
            "Style-swap matching. The matching FLOPs of the paper's conv formulation are 2 x content patches x "
            "style patches x C*k*k (analytic); bound = those / the case's conv rate (compute only), ratio = "
            "matching s / bound. impasto's default `correlation` algorithm (stride 1) executes about 1/9 of them "
            "(counted: its C^T S products, block edges included) plus k*k shifted sums, in float32 whatever the "
            "precision:",
            "",
            "| case | prec | size | style patches | matching GFLOPs executed (conv formulation) | matching s | swap s "
            "| bound s "
            "| matching ratio | swap ratio | style code MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sw:
            L.append(
                f"| {r['label']} | {r.get('precision', '-')} | {r['size']} | {r.get('style_patches', '-')} | "
                f"{r.get('match_flops_counted', 0) / 1e9:.1f} "
                f"({_fmt((r.get('match_flops_analytic') or 0) / 1e9, 1)}) "
                f"| {_fmt(r.get('match_s'), 2)} | {_fmt(r.get('swap_s'), 2)} | {_fmt(r.get('match_bound_s'), 2)} | "
                f"{_fmt(r.get('match_ratio'), 2)} | {_fmt(r.get('swap_ratio'), 2)} | "
                f"{_fmt(r.get('style_code_mb'), 0)} |"
            )
        picks = [r for r in sw if "picks_changed_reranked" in r]
        if picks:
            L += ["", "Picks against the exact fp32 argmax of the direct (conv) matching (share of content patches "
                  "whose pick changes): "
                  + "; ".join(f"{r['label']} {r['size']}: correlation (the default) "
                              f"{100 * r['picks_changed_correlation']:.3f}%" for r in picks if
                              "picks_changed_correlation" in r) + "."]
            L += ["", "bf16 direct matching (used only with stride > 1) against the exact fp32 argmax: "
                  + "; ".join(
                      f"{r['label']} {r['size']}: plain bf16 argmax {100 * r['picks_changed_plain_bf16']:.2f}%, "
                      "with the exact re-scoring of the 4 best bf16 candidates "
                      f"{100 * r['picks_changed_reranked']:.3f}%"
                      for r in picks) + "."]
    L += [
        "",
        "Reference numbers (measured earlier on this machine with the peers' public code, 2 threads):",
        "",
        "| reference | size | time s | peak MB |",
        "|---|---|---|---|",
    ]
    for (name, side), (t, mb) in REFERENCES.items():
        L.append(f"| {name} | {side} | {t} | {_fmt(mb, 0)} |")
    notes = []
    for r in rows:
        small = _find(rows, r.get("label", ""), "512x512")
        first = r is _find(rows, r.get("label", ""), r.get("size", ""), "fp32")  # one note per label and size
        if r.get("tiled") and first and small and small["flops"] and r["method"] != "magenta":
            ideal = small["flops"] * r["pixels"] / small["pixels"]
            notes.append(
                f"- {r['label']} {r['size']}: the tiles (at most {r.get('tile_size') or 1024} px, 64 px overlap, "
                "plus context margins or a "
                "whole-image context pass) "
                f"executed {r['flops'] / 1e9:.0f} GFLOPs, {r['flops'] / ideal:.2f}x the {ideal / 1e9:.0f} GFLOPs of "
                "the image processed untiled (the 512 case scaled by the pixel count)."
            )
    if notes:
        L += ["", "Notes:", ""] + notes
    L += ["", "## Goals", ""] + goals(rows) + [""]
    path.write_text("\n".join(L))


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} visible cores)"
    return platform.processor() or "unknown CPU"


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes under src/" if dirty.stdout.strip() else "")


def _loadavg() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return f"{os.getloadavg()[0]:.1f}"
    return "-"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 timed runs up to 1024 px (default 5), 1 above; 3 encodings")
    p.add_argument("--cases", default=",".join(CONFIGS), help=f"comma-separated, from: {', '.join(CONFIGS)}")
    p.add_argument("--sizes", default=None, help="comma-separated sides or WxH (default: per case)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs for sides <= 1024")
    p.add_argument("--enc-repeats", type=int, default=None)
    p.add_argument("--long-s", type=float, default=5.0, help="runs longer than this are timed once")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--style-size", type=int, default=512, help="Stylizer style_size (long side of the style)")
    p.add_argument(
        "--omp-wait-policy",
        default=None,
        choices=["active", "passive"],
        help="OMP_WAIT_POLICY for the workers (default: inherited); passive stops idle OpenMP threads from "
        "spinning, which matters when other processes share the cores",
    )
    p.add_argument("--calib-size", type=int, default=256, help="side of the 128-channel throughput conv")
    p.add_argument("--bw-mib", type=int, default=256, help="MiB of each tensor of the bandwidth copy")
    p.add_argument("--content", default=str(DEFAULT_CONTENT))
    p.add_argument("--style", default=str(DEFAULT_STYLE))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="inference", help="base name of the .md/.csv written to --out")
    p.add_argument("--precisions", default="bf16,fp32", help="comma-separated Stylizer precisions to run")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:  # one case in this fresh process; print its result as one JSON line
        spec = json.loads(args.worker)
        res = run_case(
            Case(**spec["case"]),
            spec["content"],
            spec["style"],
            threads=spec["threads"],
            enc_repeats=spec["enc_repeats"],
            long_s=spec["long_s"],
            style_size=spec["style_size"],
            calib_size=spec["calib_size"],
            save_dir=spec.get("save_dir"),
            bw_mib=spec.get("bw_mib", 256),
        )
        print(RESULT_TAG + json.dumps(res, default=float), flush=True)
        return 0

    repeats = args.repeats or (3 if args.quick else 5)
    args.enc_repeats = args.enc_repeats or (3 if args.quick else 5)
    labels = [s.strip() for s in args.cases.split(",") if s.strip()]
    sizes = [s.strip() for s in args.sizes.split(",")] if args.sizes else None
    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    cases = build_cases(labels, sizes, repeats, precisions)
    save = tempfile.TemporaryDirectory(prefix="impasto-bench-")
    args.save_dir = save.name
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(
        shlex.quote(a)
        for a in [
            os.path.relpath(Path(__file__).resolve(), Path.cwd()),
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    if "IMPASTO_WEIGHTS_DIR" in os.environ:
        command = f"IMPASTO_WEIGHTS_DIR={os.environ['IMPASTO_WEIGHTS_DIR']} " + command
    t_start = time.perf_counter()
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": _cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_start": _loadavg(),
        "commit": _git_commit(),
        "content": Path(args.content).name,
        "style": Path(args.style).name,
        "style_size": args.style_size,
        "calib_size": args.calib_size,
        "omp": args.omp_wait_policy or os.environ.get("OMP_WAIT_POLICY") or "unset (libgomp default: spin, then sleep)",
    }
    meta["rate_start"] = conv_throughput(5, args.calib_size)
    meta["rate_start_bf16"] = conv_throughput(5, args.calib_size, precision="bf16")
    meta["bw_mib"] = args.bw_mib
    meta["bw_start"] = copy_bandwidth(5, args.bw_mib)
    meta["mm_n"] = 8 * args.calib_size
    meta["mm_rate"] = matmul_throughput(3, n=meta["mm_n"])
    meta["mm_rate_bf16"] = matmul_throughput(3, n=meta["mm_n"], dtype=torch.bfloat16)
    print(
        f"conv throughput {meta['rate_start'] / 1e9:.1f} GFLOP/s, matmul {meta['mm_rate'] / 1e9:.1f} GFLOP/s, "
        f"copy bandwidth {meta['bw_start'] / 1e9:.1f} GB/s; "
        f"{len(cases)} cases",
        flush=True,
    )
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        res = run_in_subprocess(case, args)
        if "error" not in res:
            res = derive(res)
            print(
                f"{case.label:16s} {case.size:>10s} {case.precision}  {res['time_per_unit_s']:8.3f} s  "
                f"peak {res['peak_mb']:7.0f} MB"
                f"  {res['flops_per_unit'] / 1e9:8.1f} GFLOP {res['bytes_per_unit'] / 1e9:6.2f} GB  "
                f"ratio {res['ratio']:5.2f} ({res['bound_by']})  "
                f"enc {res['enc_uncached_s']:.3f}/{res['enc_cached_s'] * 1e3:.1f}ms  "
                f"[{time.perf_counter() - t0:.0f} s wall]",
                flush=True,
            )
        else:
            print(f"{case.label:16s} {case.size:>10s}  ERROR {res['error']}", flush=True)
        res.setdefault("options", case.options)
        rows.append(res)
    add_psnr(rows, Path(args.save_dir))
    save.cleanup()
    meta["rate_end"] = conv_throughput(3, args.calib_size)
    meta["rate_end_bf16"] = conv_throughput(3, args.calib_size, precision="bf16")
    meta["bw_end"] = copy_bandwidth(5, args.bw_mib)
    meta["rate_best"] = max(
        [meta["rate_start"], meta["rate_end"]]
        + [r["conv_flops_per_s"] for r in rows if "conv_flops_per_s" in r and r.get("precision") == "fp32"]
    )
    meta["load_end"] = _loadavg()
    meta["wall_s"] = time.perf_counter() - t_start
    write_csv(rows, out_dir / f"{args.name}.csv")
    write_markdown(rows, out_dir / f"{args.name}.md", command, meta)
    print(f"wrote {out_dir / (args.name + '.md')} and .csv ({meta['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
