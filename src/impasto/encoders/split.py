"""The layer-split VGG encoder of the encoder-refinement paper (Bai et al., Sec. 3.1 and 4.1).

"For our layer split scheme, we only retain Conv_X_1 layers and the corresponding pooling and ReLU layers of the
original VGG-19": ``conv0`` (the 1x1 colour conv), then per block K: 2x2 max-pool (ceil mode, K > 1),
reflection pad 1, ``convK_1`` (3x3), ReLU. The ``convK_2``... layers of :class:`~impasto.encoders.vgg.VGGEncoder`
are dropped, so ``convK_1`` reads the pooled ``relu(K-1)_1`` instead of ``relu(K-1)_last``; this needs
``in(convK_1) == out(conv(K-1)_1)``, which holds for VGG-19 (64/128/256/512/512) and the 16x distilled one
(16/32/64/128/128). Outputs keep the full encoder's names (``relu1_1`` .. ``relu5_1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from impasto.encoders.vgg import VGG19_WIDTHS, VGGEncoder, layer_index
from impasto.errors import ConfigError

SPLIT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def split_conv_names(depth: str) -> list[str]:
    """``conv1_1 .. convK_1``: the convs the split keeps for an encoder reaching ``depth`` (any ``reluK_J``)."""
    layer_index(depth)  # ConfigError for unknown names
    return [f"conv{k}_1" for k in range(1, int(depth[4]) + 1)]


def split_vgg_forward(x: torch.Tensor, params: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                      layers: Iterable[str]) -> dict[str, torch.Tensor]:
    """Layer-split VGG features: conv0, then [max-pool 2x2 ceil if K > 1, reflect pad 1, convK_1, ReLU] per block.

    Args:
        x: B x 3 x H x W RGB in [0, 1].
        params: ``{"conv0": (w, b), "conv1_1": (w, b), ...}``, the ``convK_1`` in block order.
        layers: the ``reluK_1`` outputs wanted (each must have its ``convK_1`` in ``params``).

    Returns:
        ``{reluK_1: B x C_K x ceil(H / 2^(K-1)) x ceil(W / 2^(K-1))}`` (non-negative).
    """
    wanted = set(layers)
    last = max(int(w[4]) for w in wanted) if wanted else 0
    w0, b0 = params["conv0"]
    h = F.conv2d(x, w0, b0)
    out: dict[str, torch.Tensor] = {}
    for k in range(1, last + 1):
        if k > 1:
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        w, b = params[f"conv{k}_1"]
        h = F.relu(F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), w, b))
        if f"relu{k}_1" in wanted:
            out[f"relu{k}_1"] = h
    return out


class SplitVGGEncoder(nn.Module):
    """VGG-topology encoder keeping only the ConvX_1 layers (Bai et al.'s layer split), up to ``depth``.

    Same interface as :class:`~impasto.encoders.vgg.VGGEncoder` (``forward(x, layers)``, ``encode``,
    ``channels``, ``layer_names``, ``depth``) and the same state-dict keys for the layers it keeps
    (``conv0.*``, ``convs.convK_1.*``). Input B x 3 x H x W RGB in [0, 1]; ``forward`` returns
    {reluK_1: B x C x h x w}. ``depth`` is a ``reluK_1`` layer. Frozen unless ``frozen=False``.
    """

    def __init__(self, widths: Sequence[int] = VGG19_WIDTHS, depth: str = "relu4_1", frozen: bool = True,
                 first_width: int | None = None) -> None:
        super().__init__()
        if depth not in SPLIT_LAYERS:
            raise ConfigError(f"a layer-split encoder ends at a reluK_1 layer ({', '.join(SPLIT_LAYERS)}); "
                              f"got depth {depth!r}")
        self.depth = depth
        self.widths = tuple(widths)
        self.conv0 = nn.Conv2d(3, 3, 1)
        self.convs = nn.ModuleDict()
        in_ch = 3
        for name in split_conv_names(depth):
            k = int(name[4])
            out_ch = first_width if (first_width and k == 1) else self.widths[k - 1]
            self.convs[name] = nn.Conv2d(in_ch, out_ch, 3)
            in_ch = out_ch
        self.out_channels = in_ch
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @classmethod
    def from_encoder(cls, encoder: VGGEncoder, frozen: bool = True) -> SplitVGGEncoder:
        """The split of a (pretrained) VGGEncoder, initialised with its ConvX_1 (and conv0) parameters.

        The split reaches ``relu{K}_1`` for an encoder of depth ``reluK_J``. ``encoder`` is not modified.
        Raises ConfigError when ``convK_1``'s input width differs from ``conv(K-1)_1``'s output width.
        """
        depth = f"relu{encoder.depth[4]}_1"
        names = split_conv_names(depth)
        for prev, name in zip(names, names[1:], strict=False):
            c_in, c_prev = encoder.convs[name].in_channels, encoder.convs[prev].out_channels
            if c_in != c_prev:
                raise ConfigError(
                    f"this encoder cannot be layer-split: {name} takes {c_in} channels but {prev} gives "
                    f"{c_prev} (the split feeds {prev}'s pooled output straight into {name}); "
                    f"use the full encoder instead")
        first = encoder.convs["conv1_1"].out_channels
        split = cls(encoder.widths, depth, frozen=frozen, first_width=first if first != encoder.widths[0] else None)
        source = encoder.state_dict()
        split.load_state_dict({k: source[k] for k in split.state_dict()}, strict=True)
        ref = next(encoder.parameters())
        return split.to(device=ref.device, dtype=ref.dtype)

    @property
    def layer_names(self) -> list[str]:
        return [n.replace("conv", "relu") for n in self.convs]

    def channels(self, layer: str) -> int:
        """Number of channels of ``layer``'s output (a ``reluK_1`` layer of this encoder)."""
        self._check([layer])
        return self.convs[layer.replace("relu", "conv")].out_channels

    def _check(self, wanted: Iterable[str]) -> None:
        unknown = set(wanted) - set(self.layer_names)
        if unknown:
            raise ConfigError(
                f"layers {sorted(unknown)} are not in this layer-split encoder (depth {self.depth}, ConvX_1 "
                f"layers only); available: {', '.join(self.layer_names)}")

    def forward(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Encode ``x`` (B x 3 x H x W in [0, 1]) and return {layer: features} for ``layers`` (default: depth)."""
        wanted = set(layers) if layers is not None else {self.depth}
        self._check(wanted)
        params = {"conv0": (self.conv0.weight, self.conv0.bias)}
        params.update({n: (c.weight, c.bias) for n, c in self.convs.items()})
        # channels-last as in VGGEncoder (faster 3x3 convs on CPU; values unchanged)
        return split_vgg_forward(x.contiguous(memory_format=torch.channels_last), params, wanted)

    def encode(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Features of one layer (default: the encoder's depth)."""
        layer = layer or self.depth
        return self.forward(x, [layer])[layer]
