"""Multi-scale discriminator (IEContraAST release layout) and LSGAN losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.losses import LSGANLoss, MultiScaleDiscriminator, lsgan_d_loss, lsgan_g_loss


def test_layout_and_state_dict_keys():
    d = MultiScaleDiscriminator()
    sd = d.state_dict()
    for k in range(3):
        assert sd[f"models.disc_{k}.0.weight"].shape == (64, 3, 4, 4)
        assert sd[f"models.disc_{k}.2.weight"].shape == (128, 64, 4, 4)
        assert sd[f"models.disc_{k}.5.weight"].shape == (256, 128, 4, 4)
        assert sd[f"models.disc_{k}.8.weight"].shape == (512, 256, 4, 4)
        assert sd[f"models.disc_{k}.11.weight"].shape == (1, 512, 3, 3)
    assert len(sd) == 3 * 5 * 2  # five convs with bias per scale; InstanceNorm has no affine parameters
    seq = d.models["disc_0"]
    assert isinstance(seq[1], torch.nn.LeakyReLU) and seq[1].negative_slope == 0.2
    assert isinstance(seq[3], torch.nn.InstanceNorm2d) and not seq[3].affine
    assert [m.stride for m in seq if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 4 + [(1, 1)]


@torch.no_grad()
def test_shapes_256_and_64():
    torch.manual_seed(0)
    outs = MultiScaleDiscriminator()(torch.rand(1, 3, 256, 256))
    assert [tuple(o.shape) for o in outs] == [(1, 1, 16, 16), (1, 1, 8, 8), (1, 1, 4, 4)]
    outs = MultiScaleDiscriminator(num_scales=2)(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 1, 4, 4), (2, 1, 2, 2)]
    # 3 scales on 64 px would instance-normalise a 1x1 map at the third scale: a clear error instead
    with pytest.raises(ConfigError, match="at least 128 px"):
        MultiScaleDiscriminator()(torch.rand(1, 3, 64, 64))
    assert [MultiScaleDiscriminator.min_size(k) for k in (1, 2, 3, 4)] == [32, 64, 128, 256]
    # non-square inputs: scale k sees ceil(H / 2^k)
    outs = MultiScaleDiscriminator()(torch.rand(1, 3, 128, 160))
    assert [tuple(o.shape[2:]) for o in outs] == [(8, 10), (4, 5), (2, 2)]


@torch.no_grad()
def test_scales_see_avg_pooled_images():
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(num_scales=2).eval()
    x = torch.rand(1, 3, 64, 64)
    outs = d(x)
    pooled = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    assert torch.allclose(outs[0], d.models["disc_0"](x))
    assert torch.allclose(outs[1], d.models["disc_1"](pooled), atol=1e-6)
    # count_include_pad=False: a constant image stays constant at the borders
    assert torch.allclose(d.downsample(torch.full((1, 3, 8, 8), 0.7)), torch.full((1, 3, 4, 4), 0.7))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    d = MultiScaleDiscriminator()
    real, fake = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128, requires_grad=True)
    outs = d(torch.cat([real, fake]))  # one pass for both (instance norm is per sample)
    lsgan_d_loss([o[:1] for o in outs], [o[1:] for o in outs]).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # and the generator gets a signal


def test_lsgan_losses_by_hand():
    d_real = [torch.full((1, 1, 2, 2), 0.5), torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)]
    d_fake = [torch.full((1, 1, 2, 2), 0.2), torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2)]
    # real: (0.5-1)^2 = 0.25; mean((0)^2, (2)^2) = 2 -> 2.25
    # fake: 0.04; mean(1, 1) = 1 -> 1.04
    assert lsgan_d_loss(d_real, d_fake).item() == pytest.approx(2.25 + 1.04)
    # generator: (0.2-1)^2 = 0.64; mean(4, 0) = 2 -> 2.64
    assert lsgan_g_loss(d_fake).item() == pytest.approx(2.64)
    assert lsgan_g_loss(torch.ones(2, 1, 3, 3)).item() == 0.0  # a single map works too
    m = LSGANLoss()
    assert torch.allclose(m(d_fake), lsgan_g_loss(d_fake))
    assert torch.allclose(m(d_fake, d_real), lsgan_d_loss(d_real, d_fake))


def test_bad_inputs():
    with pytest.raises(ConfigError, match="num_scales"):
        MultiScaleDiscriminator(num_scales=0)
    with pytest.raises(ConfigError, match="B x 3 x H x W"):
        MultiScaleDiscriminator()(torch.rand(1, 4, 128, 128))
