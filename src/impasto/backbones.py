"""Backbones: which weight files give an encoder or a reconstruction decoder of a given depth.

``vgg19``      the real normalised VGG-19: the full official file reaches relu5_1; the WCT release file here
               reaches relu3_1; LinearStyleTransfer's files reach relu3_1/4_1/5_1.
``vgg19-16x``  the 16x distilled VGG-19 (Collaborative Distillation): one encoder/decoder pair per level
               relu1_1..relu5_1 (``kSE``/``kSD``).
"""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
from torch import nn

from impasto import weights
from impasto.decoders.vgg import (
    VGGDecoder,
    convert_cd16x_decoder,
    convert_lst_decoder,
    convert_sequential_decoder,
)
from impasto.encoders.vgg import (
    DISTILLED16X_WIDTHS,
    VGG19_WIDTHS,
    AuxProjection,
    VGGEncoder,
    convert_cd16x,
    convert_lst_vgg,
    convert_sequential_vgg,
    layer_index,
)
from impasto.errors import ConfigError, WeightsError

BACKBONES = ("vgg19", "vgg19-16x")
LEVELS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# (registry name, format, deepest layer the file reaches), most preferred first.
_VGG19_ENCODERS = [
    ("vgg19", "sequential", "relu5_4"),
    ("lst-vgg-r51", "lst", "relu5_1"),
    ("lst-vgg-r41", "lst", "relu4_1"),
    ("vgg19-r31", "sequential", "relu3_1"),
    ("lst-vgg-r31", "lst", "relu3_1"),
]
_VGG19_DECODERS = {
    "relu4_1": [("adain-decoder", "sequential"), ("lst-dec-r41", "lst")],
    "relu3_1": [("vgg19-decoder-r31", "sequential"), ("lst-dec-r31", "lst")],
    "relu2_1": [("vgg19-decoder-r21", "sequential")],
    "relu1_1": [("vgg19-decoder-r11", "sequential")],
}


def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown encoder {backbone!r}; choose one of: {', '.join(BACKBONES)}")


def _check_level(depth: str) -> None:
    if depth not in LEVELS:
        raise ConfigError(f"depth must be one of {', '.join(LEVELS)}, got {depth!r}")


def _level(depth: str) -> int:
    return int(depth[4])


def _present(name: str) -> bool:
    return weights.find(name)[1] == "present"


def available_depths(backbone: str) -> list[str]:
    """The ``reluK_1`` depths for which both an encoder and a reconstruction decoder are present here."""
    _check_backbone(backbone)
    out = []
    for depth in LEVELS:
        if backbone == "vgg19-16x":
            ok = _present(f"vgg19-16x-encoder-r{_level(depth)}1") and _present(
                f"vgg19-16x-decoder-r{_level(depth)}1"
            )
        else:
            enc = any(
                _present(n) and layer_index(reach) >= layer_index(depth) for n, _, reach in _VGG19_ENCODERS
            )
            ok = enc and any(_present(n) for n, _ in _VGG19_DECODERS.get(depth, []))
        if ok:
            out.append(depth)
    return out


def encoder_depths(backbone: str) -> list[str]:
    """The ``reluK_1`` depths an encoder is present for (decoders not required, e.g. for loss networks)."""
    _check_backbone(backbone)
    if backbone == "vgg19-16x":
        return [d for d in LEVELS if _present(f"vgg19-16x-encoder-r{_level(d)}1")]
    return [
        d
        for d in LEVELS
        if any(_present(n) and layer_index(r) >= layer_index(d) for n, _, r in _VGG19_ENCODERS)
    ]


def candidate_backbones(encoder: str) -> list[str]:
    """The backbones an ``encoder`` option allows, most preferred first.

    ``auto`` -> every one of :data:`BACKBONES` (the real VGG-19, then the 16x distilled one); any other name ->
    just that one (the method configs check the name). The one place that says what ``encoder="auto"`` tries.
    """
    return list(BACKBONES) if encoder == "auto" else [encoder]


def default_backbone(depth: str) -> str:
    """``vgg19`` when the real VGG-19 and its decoder reach ``depth`` here, else ``vgg19-16x``."""
    return "vgg19" if depth in available_depths("vgg19") else "vgg19-16x"


_ON_DEVICE: dict[tuple, nn.Module] = {}


def _on_device(module: nn.Module, key: tuple, device: str | torch.device | None) -> nn.Module:
    """The shared CPU module, or its shared copy on ``device`` (made once): callers never move a shared module."""
    if device is None or torch.device(device).type == "cpu":
        return module
    dev = torch.device(device)
    if (key, dev) not in _ON_DEVICE:
        _ON_DEVICE[(key, dev)] = copy.deepcopy(module).to(dev)
    return _ON_DEVICE[(key, dev)]


def load_encoder(backbone: str, depth: str, with_aux: bool = False,
                 device: str | torch.device | None = None) -> VGGEncoder:
    """A frozen encoder of ``backbone`` up to ``depth`` (any ``reluK_J``), loaded from the weight registry.

    For ``vgg19-16x`` the encoder of level K (``KSE.pth``) is used for depths in block K. With ``with_aux``
    the distilled encoder gets an ``aux`` module mapping its reluX_1 features to VGG-19 widths.
    The returned module is shared (cached per arguments and ``device``, default the CPU): do not modify or move it
    (ask for the device you need); copy it to fine-tune.
    """
    return _on_device(_load_encoder(backbone, depth, with_aux), ("encoder", backbone, depth, with_aux), device)


def load_decoder(backbone: str, depth: str, device: str | torch.device | None = None) -> VGGDecoder:
    """The reconstruction decoder of ``backbone`` from ``depth`` (a ``reluK_1`` level) to RGB; shared like
    :func:`load_encoder` (per arguments and ``device``): do not modify or move it, copy it to fine-tune."""
    return _on_device(_load_decoder(backbone, depth), ("decoder", backbone, depth), device)


def clear_caches() -> None:
    """Forget every loaded encoder and decoder (e.g. after the weight files changed)."""
    _load_encoder.cache_clear()
    _load_decoder.cache_clear()
    _ON_DEVICE.clear()


@lru_cache(maxsize=32)
def _load_encoder(backbone: str, depth: str, with_aux: bool = False) -> VGGEncoder:
    _check_backbone(backbone)
    layer_index(depth)
    block = int(depth[4])
    if backbone == "vgg19-16x":
        name = f"vgg19-16x-encoder-r{block}1"
        sd = weights.load_state_dict(name)
        conv = convert_cd16x(sd, depth)
        first = sd["conv11.weight"].shape[0]
        enc = VGGEncoder(DISTILLED16X_WIDTHS, depth, first_width=first if first != 16 else None)
        aux = {k: v for k, v in conv.items() if k.startswith("aux.")}
        main = {k: v for k, v in conv.items() if not k.startswith("aux.")}
        enc.load_state_dict(main, strict=True)
        if with_aux:
            shapes = {
                k.split(".")[1]: (v.shape[1], v.shape[0]) for k, v in aux.items() if k.endswith("weight")
            }
            enc.aux = AuxProjection(shapes)
            enc.aux.load_state_dict({"convs." + k[4:]: v for k, v in aux.items()}, strict=True)
            enc.aux.requires_grad_(False)
        return enc
    errors = []
    for name, fmt, reach in _VGG19_ENCODERS:
        if layer_index(reach) < layer_index(depth):
            continue
        try:
            sd = weights.load_state_dict(name) if _present(name) else None
        except WeightsError as exc:
            errors.append(str(exc))
            continue
        if sd is None:
            continue
        conv = (convert_sequential_vgg if fmt == "sequential" else convert_lst_vgg)(sd, depth)
        enc = VGGEncoder(VGG19_WIDTHS, depth)
        enc.load_state_dict(conv, strict=True)
        return enc
    best = next(n for n, _, r in _VGG19_ENCODERS if layer_index(r) >= layer_index(depth))
    msg = weights._message(weights.get(best), "was not found")
    raise WeightsError(
        f"no VGG-19 encoder reaching {depth} is present. {msg}\n"
        f"Alternatively use the distilled encoder: --encoder vgg19-16x (reaches relu5_1 here)."
        + ("\n" + "\n".join(errors) if errors else "")
    )


@lru_cache(maxsize=32)
def _load_decoder(backbone: str, depth: str) -> VGGDecoder:
    _check_backbone(backbone)
    _check_level(depth)
    if backbone == "vgg19-16x":
        name = f"vgg19-16x-decoder-r{_level(depth)}1"
        sd = weights.load_state_dict(name)
        first = sd["conv11.weight"].shape[1]
        dec = VGGDecoder(DISTILLED16X_WIDTHS, depth, first_width=first if first != 16 else None)
        dec.load_state_dict(convert_cd16x_decoder(sd, depth), strict=True)
        return dec.requires_grad_(False).eval()
    candidates = _VGG19_DECODERS.get(depth, [])
    for name, fmt in candidates:
        if _present(name):
            sd = weights.load_state_dict(name)
            dec = VGGDecoder(VGG19_WIDTHS, depth)
            conv = (convert_sequential_decoder if fmt == "sequential" else convert_lst_decoder)(sd, depth)
            dec.load_state_dict(conv, strict=True)
            return dec.requires_grad_(False).eval()
    if not candidates:
        raise WeightsError(
            f"impasto knows no published VGG-19 reconstruction decoder for {depth}; "
            f"use --encoder vgg19-16x or a trained checkpoint"
        )
    raise WeightsError(
        weights._message(weights.get(candidates[0][0]), "was not found")
        + "\nAlternatively use the distilled encoder: --encoder vgg19-16x."
    )
