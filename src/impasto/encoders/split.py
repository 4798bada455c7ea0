"""The layer-split VGG encoder of the encoder-refinement paper (Bai et al., Sec. 3.1 and 4.1).

"For our layer split scheme, we only retain Conv_X_1 layers and the corresponding pooling and ReLU layers of the
original VGG-19": ``conv0`` (the 1x1 colour conv), then per block K: 2x2 max-pool (ceil mode, K > 1),
reflection pad 1, ``convK_1`` (3x3), ReLU. The ``convK_2``... layers of :class:`~impasto.encoders.vgg.VGGEncoder`
are dropped, so ``convK_1`` reads the pooled ``relu(K-1)_1`` instead of ``relu(K-1)_last``; this needs
``in(convK_1) == out(conv(K-1)_1)``, which holds for VGG-19 (64/128/256/512/512) and the 16x distilled one
(16/32/64/128/128). Outputs keep the full encoder's names (``relu1_1`` .. ``relu5_1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from impasto.encoders.vgg import VGG19_WIDTHS, VGGEncoder, layer_index
from impasto.errors import ConfigError

SPLIT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def split_conv_names(depth: str) -> list[str]:
    """``conv1_1 .. convK_1``: the convs the split keeps for an encoder reaching ``depth`` (any ``reluK_J``)."""
    layer_index(depth)  # ConfigError for unknown names
    return [f"conv{k}_1" for k in range(1, int(depth[4]) + 1)]


class SplitVGGEncoder(VGGEncoder):
    """VGG-topology encoder keeping only the ConvX_1 layers (Bai et al.'s layer split), up to ``depth``.

    A :class:`~impasto.encoders.vgg.VGGEncoder` built with the ConvX_1 convs only: its forward pools wherever
    the block changes, so it runs conv0, then [max-pool 2x2 ceil if K > 1, reflect pad 1, convK_1, ReLU] per
    block. Same state-dict keys for the layers it keeps (``conv0.*``, ``convs.convK_1.*``). Input B x 3 x H x W
    RGB in [0, 1]; ``forward`` returns {reluK_1: B x C x h x w}. ``depth`` is a ``reluK_1`` layer. Frozen unless
    ``frozen=False``.
    """

    _conv_names = staticmethod(split_conv_names)

    def __init__(self, widths: Sequence[int] = VGG19_WIDTHS, depth: str = "relu4_1", frozen: bool = True,
                 first_width: int | None = None) -> None:
        if depth not in SPLIT_LAYERS:
            raise ConfigError(f"a layer-split encoder ends at a reluK_1 layer ({', '.join(SPLIT_LAYERS)}); "
                              f"got depth {depth!r}")
        super().__init__(widths, depth, frozen=frozen, first_width=first_width)

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
