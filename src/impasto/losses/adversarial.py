"""External learning of IEContraAST: multi-scale PatchGAN discriminator (pix2pixHD style) and LSGAN losses.

Layout and losses follow the official release (HalbertCH/IEContraAST, ``MultiDiscriminator``): real =
paintings (the style images), fake = stylised images; the adversarial weight 5 is applied by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from impasto.errors import ConfigError

__all__ = ["MultiScaleDiscriminator", "lsgan_d_loss", "lsgan_g_loss", "LSGANLoss"]


def _block(in_ch: int, out_ch: int, normalize: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)]
    if normalize:
        layers.append(nn.InstanceNorm2d(out_ch))
    layers.append(nn.LeakyReLU(0.2))
    return layers


class MultiScaleDiscriminator(nn.Module):
    """Multi-scale discriminator of IEContraAST (Wang et al. 2018's pix2pixHD layout, official release).

    Each scale: Conv4x4/2 in_ch->64, LeakyReLU(0.2); then 64->128, 128->256, 256->512, each Conv4x4/2 +
    InstanceNorm (no affine) + LeakyReLU(0.2); then Conv3x3 (pad 1) 512->1. Between scales the image is
    downsampled by AvgPool(3, stride 2, pad 1, count_include_pad=False). State-dict keys match the
    release (``models.disc_0.0.weight`` ...).

    forward(x ``B x in_ch x H x W``, any range) -> list of ``num_scales`` patch maps ``B x 1 x h_k x w_k``
    (``h_0 = H/16``, then halved per scale). Each scale needs its deepest feature map (``H_k/16 x W_k/16``)
    to hold at least 2 values for instance normalisation: with 3 scales images must be >= 128 px
    (``min_size``); smaller inputs raise ConfigError.
    """

    def __init__(self, num_scales: int = 3, in_ch: int = 3) -> None:
        super().__init__()
        if isinstance(num_scales, bool) or not isinstance(num_scales, int) or num_scales < 1:
            raise ConfigError(
                f"MultiScaleDiscriminator: num_scales must be a positive integer, got {num_scales!r}"
            )
        self.num_scales = num_scales
        self.in_ch = in_ch
        self.models = nn.ModuleDict(
            {
                f"disc_{i}": nn.Sequential(
                    *_block(in_ch, 64, normalize=False),
                    *_block(64, 128, normalize=True),
                    *_block(128, 256, normalize=True),
                    *_block(256, 512, normalize=True),
                    nn.Conv2d(512, 1, kernel_size=3, padding=1),
                )
                for i in range(num_scales)
            }
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @staticmethod
    def _deepest(n: int) -> int:
        for _ in range(4):  # four Conv4x4/2 pad 1: n -> floor(n / 2)
            n //= 2
        return n

    @staticmethod
    def min_size(num_scales: int = 3) -> int:
        """Smallest square image side (a power-of-two multiple of 16) that every scale accepts."""
        side = 16
        while True:
            h, ok = side, True
            for _ in range(num_scales):
                d = MultiScaleDiscriminator._deepest(h)
                ok = ok and d * d >= 2
                h = (h + 1) // 2
            if ok:
                return side
            side *= 2

    def _check_size(self, h: int, w: int) -> None:
        for k in range(self.num_scales):
            dh, dw = self._deepest(h), self._deepest(w)
            if dh * dw < 2:
                raise ConfigError(
                    f"image of {h}x{w} px at discriminator scale {k + 1}/{self.num_scales} is too small "
                    f"(its deepest feature map would be {dh}x{dw}); use crops of at least "
                    f"{self.min_size(self.num_scales)} px or fewer discriminator scales"
                )
            h, w = (h + 1) // 2, (w + 1) // 2  # AvgPool(3, 2, 1): ceil(n / 2)

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ConfigError(
                f"MultiScaleDiscriminator expects B x {self.in_ch} x H x W images, got {tuple(x.shape)}"
            )
        self._check_size(x.shape[2], x.shape[3])
        outputs = []
        for i, model in enumerate(self.models.values()):
            outputs.append(model(x))
            if i + 1 < self.num_scales:
                x = self.downsample(x)
        return outputs


def _as_list(d_out: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [d_out] if isinstance(d_out, Tensor) else list(d_out)


def lsgan_d_loss(d_real: Tensor | Sequence[Tensor], d_fake: Tensor | Sequence[Tensor]) -> Tensor:
    """LSGAN discriminator loss: ``sum_k mean((D_k(real) - 1)^2) + sum_k mean(D_k(fake)^2)``.

    d_real / d_fake: one patch map or the list from :class:`MultiScaleDiscriminator` (real = paintings,
    fake = stylised images, detached by the caller). Scalar, no 1/2 factor (as the IEContraAST release).
    """
    real = _as_list(d_real)
    fake = _as_list(d_fake)
    loss = torch.stack([((r - 1) ** 2).mean() for r in real]).sum()
    return loss + torch.stack([(f**2).mean() for f in fake]).sum()


def lsgan_g_loss(d_fake: Tensor | Sequence[Tensor]) -> Tensor:
    """LSGAN generator loss: ``sum_k mean((D_k(fake) - 1)^2)`` (stylised images should look like paintings).

    Scalar; IEContraAST weights it by 5.
    """
    return torch.stack([((f - 1) ** 2).mean() for f in _as_list(d_fake)]).sum()


class LSGANLoss(nn.Module):
    """Module form: ``forward(d_fake)`` -> generator loss; ``forward(d_fake, d_real)`` -> D loss."""

    def forward(
        self, d_fake: Tensor | Sequence[Tensor], d_real: Tensor | Sequence[Tensor] | None = None
    ) -> Tensor:
        return lsgan_g_loss(d_fake) if d_real is None else lsgan_d_loss(d_real, d_fake)
