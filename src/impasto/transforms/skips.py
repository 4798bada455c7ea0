"""AdaIN skip connections into a decoder: the photo's shallow features, with the painting's statistics, added to
the decoder's map at their level through zero-initialised 1x1 convs.

Not from the four papers: an impasto addition in the spirit of multi-level stylisation (Avatar-Net, Sheng et al.
CVPR 2018; AdaAttN, Liu et al. ICCV 2021). SANet decodes from relu4_1 (1/8 resolution), which loses the photo's
fine edges; a skip at relu3_1 or relu2_1 hands them to the decoder. The convs start at zero, so a model trained
without skips computes the same image until training moves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from impasto.errors import ConfigError
from impasto.transforms.stats import adain_features

__all__ = ["SKIP_LAYERS", "AdaINSkips", "adain_skips", "sanet_layers"]

#: the layers a skip may come from (shallower than SANet's relu4_1)
SKIP_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def adain_skips(fc: Mapping[str, Tensor], fs: Mapping[str, Tensor], layers: Sequence[str]) -> dict[str, Tensor]:
    """``{layer: AdaIN(fc[layer], fs[layer])}``: content features B x C x h x w with the style's per-channel mean
    and std (AdaIN paper, eq. 8), for each skip layer."""
    return {name: adain_features(fc[name], fs[name]) for name in layers}


class AdaINSkips(nn.Module):
    """1x1 convs ``C_enc -> C_dec`` per layer, zero-initialised: ``forward(targets) -> {layer: conv(target)}``.

    ``channels`` = {layer: (encoder channels, decoder width at that level)}. ``targets``: the AdaIN features of
    :func:`adain_skips` (or a blend of several styles' targets), B x C_enc x h x w per layer.
    """

    def __init__(self, channels: Mapping[str, tuple[int, int]]) -> None:
        super().__init__()
        bad = [n for n in channels if n not in SKIP_LAYERS]
        if bad or not channels:
            raise ConfigError(f"skip layers {sorted(channels) or '(none)'}: choose from {', '.join(SKIP_LAYERS)}")
        self.convs = nn.ModuleDict({n: nn.Conv2d(c_in, c_out, 1) for n, (c_in, c_out) in channels.items()})
        with torch.no_grad():
            for conv in self.convs.values():
                conv.weight.zero_()
                conv.bias.zero_()

    @property
    def layers(self) -> list[str]:
        return list(self.convs)

    def channels(self) -> dict[str, tuple[int, int]]:
        """{layer: (encoder channels, decoder width)}: what rebuilds this module (stored in model files)."""
        return {n: (int(c.in_channels), int(c.out_channels)) for n, c in self.convs.items()}

    def forward(self, targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {n: conv(targets[n]) for n, conv in self.convs.items()}


def sanet_layers(skips: AdaINSkips | None) -> list[str]:
    """The encoder layers a SANet generator with these skips reads: the skips' and relu4_1, relu5_1."""
    return (skips.layers if skips is not None else []) + ["relu4_1", "relu5_1"]
