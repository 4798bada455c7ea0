"""Export impasto's feed-forward models to ONNX for deployment (onnxruntime, onnxruntime-web, mobile runtimes).

``impasto export adain -o adain.onnx`` (or microast, sanet, iecontraast) writes one graph with inputs ``content``
(1 x 3 x H x W, RGB in [0, 1]), ``style`` (1 x 3 x H' x W') and ``alpha`` (1 value in [0, 1], the style strength)
and output ``image`` (1 x 3 x H x W in [0, 1]); H, W, H', W' are dynamic (16 to 4096 px; from 32 px for SANet and
IEContraAST). The graph is the plain PyTorch module path of the method (backend ``eager``; the faster CPU forms of
:mod:`impasto.accel` compute the same values), exported with ``torch.onnx.export(dynamo=True)``; ``--int8`` adds a
dynamically quantised copy (onnxruntime's ``quantize_dynamic``: int8 weights, activations quantised at run time).

Needs the ``onnx`` and ``onnxscript`` packages (``pip install "impasto[export]"``) to export, and ``onnxruntime``
(in the same extra) for ``--int8`` and to check or run the result.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impasto.errors import ConfigError
from impasto.extras import check_extra, extra_error
from impasto.io.atomic import atomic_path

EXPORTABLE = ("adain", "microast", "sanet", "iecontraast")
#: smallest image side a graph takes where it is not 16 px: SANet's relu5_1 (1/16 scale) needs 2 x 2 positions for
#: its mean-variance normalisation
MIN_SIDE = {"sanet": 32, "iecontraast": 32}
__all__ = ["EXPORTABLE", "export_onnx", "export_module"]


class AdaINGraph(nn.Module):
    """content, style, alpha -> image with the encoder and decoder of an AdaIN method (the exported graph)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        from impasto.transforms.stats import adain, mean_std

        fc = self.encoder.encode(content)
        t = adain(fc, *mean_std(self.encoder.encode(style)))
        t = alpha * t + (1 - alpha) * fc
        # the encoder pools in ceil mode, so the decoder's map is never smaller than the photo: crop (as VGGDecoder
        # does for a given size, written here without a shape test so that it stays in the dynamic graph)
        out = self.decoder(t)[..., : content.shape[-2], : content.shape[-1]]
        return out.clamp(0, 1)


class SANetGraph(nn.Module):
    """content, style, alpha -> image with a SANet-family method (SANet, IEContraAST): attention at relu4_1 and
    relu5_1 over every style position (no query chunks, so the graph has no size-dependent loop)."""

    def __init__(self, encoder: nn.Module, transform: nn.Module, decoder: nn.Module,
                 skips: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.transform, self.decoder, self.skips = encoder, transform, decoder, skips

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        from impasto.transforms.skips import sanet_layers
        from impasto.transforms.stats import adain_features

        layers = sanet_layers(self.skips)
        fc, fs = self.encoder(content, layers), self.encoder(style, layers)
        t = self.transform(fc["relu4_1"], fs["relu4_1"], fc["relu5_1"], fs["relu5_1"])
        t = alpha * t + (1 - alpha) * fc["relu4_1"]
        adds = None
        if self.skips is not None:  # as SANet.stylize: each skip's AdaIN target blended by alpha
            adds = self.skips({n: alpha * adain_features(fc[n], fs[n]) + (1 - alpha) * fc[n]
                               for n in self.skips.layers})
        out = self.decoder(t, adds=adds)[..., : content.shape[-2], : content.shape[-1]]  # crop, as AdaINGraph
        return out.clamp(0, 1)


class MicroASTGraph(nn.Module):
    """content, style, alpha -> image with the pretrained MicroAST (its style code interpolated by alpha)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        import dataclasses

        from impasto.models.microast import STRIDE, MicroASTStyle

        s, c = self.model.encode_style(style), self.model.encode_style(content)
        # mix_styles([s, c], [alpha, 1 - alpha]) with alpha as a graph input (a tensor, not a Python float)
        code = MicroASTStyle(**{f.name: alpha * getattr(s, f.name) + (1 - alpha) * getattr(c, f.name)
                                for f in dataclasses.fields(MicroASTStyle)})
        # MicroAST.forward's reflection padding to a multiple of STRIDE, written for any size (it skips the pad
        # when none is needed, a branch the exported graph would keep for every size)
        h, w = content.shape[-2], content.shape[-1]
        eh, ew = (-h) % STRIDE, (-w) % STRIDE
        top, left = eh // 2, ew // 2
        padded = nn.functional.pad(content, (left, ew - left, top, eh - top), mode="reflect")
        _, c2 = self.model.content_encoder(padded)
        out = self.model.decoder(c2, code, 1.0)
        return out[:, :, top : top + h, left : left + w].clamp(0, 1)


def export_module(method: str, **options: Any) -> nn.Module:
    """The module :func:`export_onnx` exports for ``method`` (built from a float32 CPU Stylizer), in eval mode."""
    from impasto.pipeline import Stylizer

    if method not in EXPORTABLE:
        raise ConfigError(f"impasto export supports {', '.join(EXPORTABLE)}; {method!r} is not one of them "
                          "(optimisation methods and WCT's eigendecompositions have no ONNX graph)")
    m = Stylizer(method, device="cpu", precision="fp32", backend="eager", **options).method
    if method == "adain":
        graph: nn.Module = AdaINGraph(m.encoder, m.decoder)
    elif method == "microast":
        graph = MicroASTGraph(m.model)
    else:
        transform = copy.deepcopy(m.transform)
        transform.query_chunk = None  # one attention product per level: no loop over chunks in the graph
        graph = SANetGraph(m.encoder, transform, m.decoder, m.skips)
    return graph.eval()


def export_onnx(method: str, path: str | os.PathLike, int8: bool = False, opset: int = 18,
                **options: Any) -> list[Path]:
    """Write ``method`` as an ONNX graph at ``path`` (and ``NAME.int8.onnx`` with ``int8``); returns the files."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise extra_error(exc, "export") from None
    if int8:  # before the export, which takes a while
        check_extra("onnxruntime", "export", "--int8 (onnxruntime's quantisation)")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"-o {path}: name the file NAME.onnx")
    graph = export_module(method, **options)
    content, style = torch.rand(1, 3, 200, 264), torch.rand(1, 3, 232, 216)
    alpha = torch.ones(1)
    lo = MIN_SIDE.get(method, 16)
    h, w = torch.export.Dim("height", min=lo, max=4096), torch.export.Dim("width", min=lo, max=4096)
    hs, ws = torch.export.Dim("style_height", min=lo, max=4096), torch.export.Dim("style_width", min=lo, max=4096)
    program = torch.onnx.export(  # the plain modules (backend eager)
        graph, (content, style, alpha), input_names=["content", "style", "alpha"], output_names=["image"],
        dynamic_shapes={"content": {2: h, 3: w}, "style": {2: hs, 3: ws}, "alpha": None},
        opset_version=opset, dynamo=True, verbose=False,
    )
    with atomic_path(path) as tmp:
        program.save(str(tmp))
    files = [path]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = path.with_suffix(".int8.onnx")
        with atomic_path(q) as tmp:
            quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
        files.append(q)
    return files
