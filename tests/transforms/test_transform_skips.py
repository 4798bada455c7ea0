"""AdaIN skip connections (impasto.transforms.skips) and the decoder's ``adds``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impasto.decoders.vgg import VGGDecoder, fit_map
from impasto.errors import ConfigError
from impasto.layers import reflect_pad, upsample_nearest2x
from impasto.transforms.skips import AdaINSkips, adain_skips
from impasto.transforms.stats import mean_std


def test_adain_skips_carry_the_style_statistics():
    torch.manual_seed(0)
    fc = {"relu3_1": torch.rand(2, 8, 6, 7) * 3, "relu2_1": torch.rand(2, 4, 12, 14)}
    fs = {"relu3_1": torch.rand(2, 8, 5, 5) + 2, "relu2_1": torch.rand(2, 4, 10, 10)}
    out = adain_skips(fc, fs, ["relu3_1"])
    assert list(out) == ["relu3_1"] and out["relu3_1"].shape == (2, 8, 6, 7)
    m, s = mean_std(out["relu3_1"])
    ms, ss = mean_std(fs["relu3_1"])
    assert torch.allclose(m, ms, atol=1e-4) and torch.allclose(s, ss, atol=1e-3)


def test_skips_start_at_zero_and_rebuild_from_their_channels():
    sk = AdaINSkips({"relu3_1": (8, 16), "relu2_1": (4, 6)})
    t = {"relu3_1": torch.rand(1, 8, 5, 5), "relu2_1": torch.rand(1, 4, 10, 10)}
    out = sk(t)
    assert out["relu3_1"].shape == (1, 16, 5, 5) and out["relu2_1"].shape == (1, 6, 10, 10)
    assert all(float(v.detach().abs().max()) == 0.0 for v in out.values())
    assert AdaINSkips(sk.channels()).channels() == {"relu3_1": (8, 16), "relu2_1": (4, 6)}
    with pytest.raises(ConfigError, match="relu1_1, relu2_1, relu3_1"):
        AdaINSkips({"relu4_1": (8, 8)})


def test_decoder_adds_at_the_level_by_hand():
    """A relu3_1 decoder (conv3_1, up, conv2_2, conv2_1, up, conv1_2, conv1_1): a map added at relu2_1 enters just
    after the first up-sampling; computed by hand with the same convs."""
    torch.manual_seed(0)
    dec = VGGDecoder([4, 6, 8, 8, 8], "relu3_1")
    x = torch.randn(1, 8, 5, 6)
    add = torch.randn(1, 6, 10, 12)
    conv = dec.convs
    h = F.relu(conv["conv3_1"](reflect_pad(x, 1)))
    h = upsample_nearest2x(h) + add
    h = F.relu(conv["conv2_2"](reflect_pad(h, 1)))
    h = upsample_nearest2x(F.relu(conv["conv2_1"](reflect_pad(h, 1))))
    h = conv["conv1_1"](reflect_pad(F.relu(conv["conv1_2"](reflect_pad(h, 1))), 1))
    assert torch.allclose(dec(x, adds={"relu2_1": add}), h, atol=1e-5)
    assert torch.allclose(dec(x, adds={"relu2_1": torch.zeros_like(add)}), dec(x), atol=1e-6)
    # an encoder map a row short (ceil-mode pooling) is zero-padded at the bottom, a longer one cropped
    assert torch.equal(fit_map(add[..., :9, :], (10, 12))[..., 9, :], torch.zeros(1, 6, 12))
    assert fit_map(torch.randn(1, 4, 11, 13), (10, 12)).shape == (1, 4, 10, 12)
