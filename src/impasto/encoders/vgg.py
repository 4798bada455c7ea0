"""VGG-19 style encoders with named layers (the real normalised VGG-19 and the 16x distilled one).

Both share one topology: a 1x1 colour conv (``conv0``, Caffe BGR/mean conversion of RGB in [0, 1]), then blocks
of 3x3 convs (reflection pad 1, ReLU) with 2x2 max-pooling (ceil mode) between blocks. Block ``k`` has
``(2, 2, 4, 4, 4)[k-1]`` convs; only the widths differ (VGG-19: 64/128/256/512/512, distilled 16x: 16/32/64/128/128).
Layers are addressed by name: ``convK_J`` for weights, ``reluK_J`` for outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from impasto.errors import ConfigError, WeightsError
from impasto.layers import as_channels_last, reflect_pad

BLOCK_CONVS = (2, 2, 4, 4, 4)
VGG19_WIDTHS = (64, 128, 256, 512, 512)
DISTILLED16X_WIDTHS = (16, 32, 64, 128, 128)
LAYER_NAMES = tuple(f"relu{b}_{j}" for b in range(1, 6) for j in range(1, BLOCK_CONVS[b - 1] + 1))


def layer_index(layer: str) -> int:
    """Position of a ``reluK_J`` layer in the encoder; raises ConfigError for unknown names."""
    if layer not in LAYER_NAMES:
        raise ConfigError(f"unknown layer {layer!r}; known layers: {', '.join(LAYER_NAMES)}")
    return LAYER_NAMES.index(layer)


def conv_names(depth: str) -> list[str]:
    """Names of the 3x3 convs from conv1_1 up to the conv that produces ``depth`` (e.g. ``relu3_1``)."""
    return [n.replace("relu", "conv") for n in LAYER_NAMES[: layer_index(depth) + 1]]


def _block(name: str) -> tuple[int, int]:
    b, j = name[4:].split("_")
    return int(b), int(j)


class VGGEncoder(nn.Module):
    """VGG-19-topology encoder up to ``depth``, returning any requested ``reluK_J`` outputs in one pass.

    Input: B x 3 x H x W RGB in [0, 1]. Output of ``forward(x, layers)``: dict layer -> B x C x h x w.
    Frozen (no gradients, eval mode) unless ``frozen=False``.
    """

    def __init__(
        self,
        widths: Sequence[int] = VGG19_WIDTHS,
        depth: str = "relu3_1",
        frozen: bool = True,
        first_width: int | None = None,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.widths = tuple(widths)
        self.conv0 = nn.Conv2d(3, 3, 1)
        self.convs = nn.ModuleDict()
        in_ch = 3
        for name in self._conv_names(depth):
            b, j = _block(name)
            out_ch = first_width if (first_width and (b, j) == (1, 1)) else self.widths[b - 1]
            self.convs[name] = nn.Conv2d(in_ch, out_ch, 3)
            in_ch = out_ch
        self.out_channels = in_ch
        if frozen:
            self.requires_grad_(False)
            self.eval()

    #: the convs built for a depth (subclasses keep fewer: see :class:`~impasto.encoders.split.SplitVGGEncoder`)
    _conv_names = staticmethod(conv_names)

    @property
    def layer_names(self) -> list[str]:
        return [n.replace("conv", "relu") for n in self.convs]

    def _check_layers(self, wanted: Iterable[str]) -> None:
        unknown = set(wanted) - set(self.layer_names)
        if unknown:
            raise ConfigError(
                f"layers {sorted(unknown)} are not in this encoder (depth {self.depth}); "
                f"available: {', '.join(self.layer_names)}"
            )

    def channels(self, layer: str) -> int:
        """Number of channels of ``layer``'s output."""
        self._check_layers([layer])
        return self.convs[layer.replace("relu", "conv")].out_channels

    def forward(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Encode ``x`` (B x 3 x H x W in [0, 1]) and return {layer: features} for ``layers`` (default: depth).

        Stops after the deepest wanted layer. Under autocast the convs run in its dtype and the features are
        returned in x's dtype. Faster forms of this forward: :mod:`impasto.accel`.
        """
        wanted = set(layers) if layers is not None else {self.depth}
        self._check_layers(wanted)
        out: dict[str, torch.Tensor] = {}
        h = self.conv0(as_channels_last(x))  # channels-last: oneDNN's 3x3 convs run faster (values unchanged)
        block = 1
        for name, conv in self.convs.items():
            if len(out) == len(wanted):
                break
            if _block(name)[0] != block:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
                block = _block(name)[0]
            h = F.relu(conv(reflect_pad(h, 1)), inplace=True)
            relu = name.replace("conv", "relu")
            if relu in wanted:
                out[relu] = h.to(x.dtype)
        return out

    def encode(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Features of one layer (default: the encoder's depth)."""
        layer = layer or self.depth
        return self(x, [layer])[layer]


# ---------------------------------------------------------------------------------------------------------------
# Official key formats -> impasto names
# ---------------------------------------------------------------------------------------------------------------


def _sequential_indices(depth: str) -> dict[str, int]:
    """Index of each conv in the official ``nn.Sequential`` of the normalised VGG-19 (conv0 = 0, conv1_1 = 2...)."""
    idx = {"conv0": 0}
    i = 2
    prev_block = 1
    for name in conv_names("relu5_4"):
        b, _ = _block(name)
        if b != prev_block:
            i += 1  # max-pool
            prev_block = b
        idx[name] = i
        i += 3  # conv, relu, pad
    return {k: v for k, v in idx.items() if k == "conv0" or k in conv_names(depth)}


def rename_convs(
    sd: dict[str, torch.Tensor], keys: dict[str, str], what: str, hint: str = ""
) -> dict[str, torch.Tensor]:
    """Weights and biases of official conv keys under impasto's names.

    keys: impasto conv name (``conv0``, ``conv1_1``...) -> official key prefix (``2``, ``conv11``...); the result
    holds ``{module key}.weight/.bias``. A missing key raises WeightsError naming the format (``what``), the key
    and the conv, followed by ``hint``.
    """
    out = {}
    for name, prefix in keys.items():
        for p in ("weight", "bias"):
            key = f"{prefix}.{p}"
            if key not in sd:
                raise WeightsError(f"{what} state dict has no key {key!r} ({name}){hint}")
            out[f"{_module_key(name)}.{p}"] = sd[key]
    return out


def convert_sequential_vgg(sd: dict[str, torch.Tensor], depth: str) -> dict[str, torch.Tensor]:
    """Map the official normalised VGG-19 keys (``0.weight``, ``2.weight``, ... ``51.weight``) to impasto names."""
    keys = {name: str(i) for name, i in _sequential_indices(depth).items()}
    return rename_convs(sd, keys, "VGG", f"; it does not reach {depth}")


def convert_lst_vgg(sd: dict[str, torch.Tensor], depth: str) -> dict[str, torch.Tensor]:
    """Map LinearStyleTransfer's ``conv1`` (1x1), ``conv2``... keys (vgg_r31/r41/r51) to impasto names."""
    keys = {name: f"conv{k}" for k, name in enumerate(["conv0", *conv_names(depth)], start=1)}
    return rename_convs(sd, keys, "LinearStyleTransfer VGG")


def convert_cd16x(sd: dict[str, torch.Tensor], depth: str) -> dict[str, torch.Tensor]:
    """Map Collaborative Distillation keys (``conv0``, ``conv11``, ``conv12``, ``conv21``...) to impasto names.

    The ``convX1_aux`` 1x1 convs are returned under ``aux.convX_1`` (see :class:`AuxProjection`).
    """
    out = rename_convs(sd, {name: name.replace("_", "") for name in ["conv0", *conv_names(depth)]}, "distilled encoder")
    for key, v in sd.items():
        if key.endswith("_aux.weight") or key.endswith("_aux.bias"):
            base, p = key.split(".")
            b = base[4]
            out[f"aux.conv{b}_1.{p}"] = v
    return out


def _module_key(name: str) -> str:
    return name if name == "conv0" else f"convs.{name}"


def infer_depth(sd: dict[str, torch.Tensor], fmt: str) -> str:
    """Deepest ``reluK_1`` layer a state dict in format ``fmt`` reaches."""
    best = "relu1_1"
    for depth in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"):
        try:
            {"sequential": convert_sequential_vgg, "lst": convert_lst_vgg, "cd16x": convert_cd16x}[fmt](
                sd, depth
            )
            best = depth
        except WeightsError:
            break
    return best


class AuxProjection(nn.Module):
    """The distilled encoder's 1x1 convs mapping its reluX_1 features to VGG-19's channel counts (approximate)."""

    def __init__(self, in_out: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({k: nn.Conv2d(i, o, 1) for k, (i, o) in in_out.items()})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map {reluX_1: B x c x h x w} to {reluX_1: B x C_vgg x h x w} for the layers that have a projection."""
        return {
            k: self.convs[k.replace("relu", "conv")](v)
            for k, v in feats.items()
            if k.replace("relu", "conv") in self.convs
        }
