"""Loaders of official weight formats, checked against reference nn.Sequential models built here literally.

The official files that cannot exist here (full vgg_normalised.pth, AdaIN decoder.pth, LinearStyleTransfer r41/r51,
SANet/IEContraAST transformers) are replaced by synthetic state dicts with the official key names and shapes,
taken from the architectures of the public code (written out below, not derived from impasto's code).
"""

from __future__ import annotations

import torch
from torch import nn

from impasto.decoders.vgg import VGGDecoder, convert_lst_decoder, convert_sequential_decoder
from impasto.encoders.vgg import VGG19_WIDTHS, VGGEncoder, convert_lst_vgg, convert_sequential_vgg


def official_vgg() -> nn.Sequential:
    """The normalised VGG-19 of the AdaIN/SANet/IEContraAST code, as published (indices 0..52)."""

    def c(i, o):
        return [nn.ReflectionPad2d(1), nn.Conv2d(i, o, 3), nn.ReLU()]

    pool = [nn.MaxPool2d(2, 2, ceil_mode=True)]
    layers = [nn.Conv2d(3, 3, 1)] + c(3, 64) + c(64, 64) + pool + c(64, 128) + c(128, 128) + pool
    layers += c(128, 256) + c(256, 256) + c(256, 256) + c(256, 256) + pool
    layers += c(256, 512) + c(512, 512) + c(512, 512) + c(512, 512) + pool
    layers += c(512, 512) + c(512, 512) + c(512, 512) + c(512, 512)
    return nn.Sequential(*layers)


def official_decoder() -> nn.Sequential:
    """The AdaIN/SANet/IEContraAST decoder (relu4_1 -> RGB), as published (keys 1,5,8,11,14,18,21,25,28)."""
    P, R, U = nn.ReflectionPad2d, nn.ReLU, nn.Upsample
    return nn.Sequential(
        P(1),
        nn.Conv2d(512, 256, 3),
        R(),
        U(scale_factor=2, mode="nearest"),
        P(1),
        nn.Conv2d(256, 256, 3),
        R(),
        P(1),
        nn.Conv2d(256, 256, 3),
        R(),
        P(1),
        nn.Conv2d(256, 256, 3),
        R(),
        P(1),
        nn.Conv2d(256, 128, 3),
        R(),
        U(scale_factor=2, mode="nearest"),
        P(1),
        nn.Conv2d(128, 128, 3),
        R(),
        P(1),
        nn.Conv2d(128, 64, 3),
        R(),
        U(scale_factor=2, mode="nearest"),
        P(1),
        nn.Conv2d(64, 64, 3),
        R(),
        P(1),
        nn.Conv2d(64, 3, 3),
    )


def test_official_vgg_keys_and_forward_match():
    torch.manual_seed(0)
    ref = official_vgg().eval()
    sd = ref.state_dict()
    expected_convs = [0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51]
    assert sorted({int(k.split(".")[0]) for k in sd}) == expected_convs
    x = torch.rand(1, 3, 40, 36)
    for depth, idx in (("relu3_1", 17), ("relu4_1", 30), ("relu5_1", 43)):
        enc = VGGEncoder(VGG19_WIDTHS, depth)
        enc.load_state_dict(convert_sequential_vgg(sd, depth), strict=True)
        with torch.no_grad():
            want = ref[: idx + 1](x)
            got = enc.encode(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_official_decoder_keys_and_forward_match():
    torch.manual_seed(1)
    ref = official_decoder().eval()
    sd = ref.state_dict()
    assert sorted({int(k.split(".")[0]) for k in sd}) == [1, 5, 8, 11, 14, 18, 21, 25, 28]
    dec = VGGDecoder(VGG19_WIDTHS, "relu4_1")
    dec.load_state_dict(convert_sequential_decoder(sd, "relu4_1"), strict=True)
    f = torch.rand(1, 512, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(dec(f), ref(f), rtol=1e-4, atol=1e-5)


def test_linear_style_transfer_r41_r51_formats():
    torch.manual_seed(2)
    ref = official_vgg().eval()
    seq = ref.state_dict()
    # LinearStyleTransfer encoder4/encoder5: conv1 (1x1), conv2..conv10 (to relu4_1), conv11..conv14 (to relu5_1)
    order = [0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42]
    lst = {}
    for k, i in enumerate(order, start=1):
        lst[f"conv{k}.weight"], lst[f"conv{k}.bias"] = seq[f"{i}.weight"], seq[f"{i}.bias"]
    shapes = {k: tuple(v.shape) for k, v in lst.items() if k.endswith("weight")}
    assert shapes["conv10.weight"] == (512, 256, 3, 3) and shapes["conv14.weight"] == (512, 512, 3, 3)
    x = torch.rand(1, 3, 48, 48)
    for depth, idx in (("relu4_1", 30), ("relu5_1", 43)):
        enc = VGGEncoder(VGG19_WIDTHS, depth)
        enc.load_state_dict(convert_lst_vgg(lst, depth), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(enc.encode(x), ref[: idx + 1](x), rtol=1e-4, atol=1e-5)
    # decoder4: conv11..conv19 in the order of the official decoder's convs
    dref = official_decoder().eval()
    dsd = dref.state_dict()
    ldec = {}
    for k, i in enumerate([1, 5, 8, 11, 14, 18, 21, 25, 28], start=11):
        ldec[f"conv{k}.weight"], ldec[f"conv{k}.bias"] = dsd[f"{i}.weight"], dsd[f"{i}.bias"]
    dec = VGGDecoder(VGG19_WIDTHS, "relu4_1")
    dec.load_state_dict(convert_lst_decoder(ldec, "relu4_1"), strict=True)
    f = torch.rand(1, 512, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(dec(f), dref(f), rtol=1e-4, atol=1e-5)


def test_sanet_transformer_official_keys_load():
    from impasto.transforms.sanet import SANetTransform

    sd = {}
    for m in ("sanet4_1", "sanet5_1"):
        for conv in ("f", "g", "h", "out_conv"):
            sd[f"{m}.{conv}.weight"] = torch.randn(512, 512, 1, 1)
            sd[f"{m}.{conv}.bias"] = torch.randn(512)
    sd["merge_conv.weight"] = torch.randn(512, 512, 3, 3)
    sd["merge_conv.bias"] = torch.randn(512)
    t = SANetTransform(512)
    t.load_state_dict(sd, strict=True)
    c4, s4 = torch.rand(1, 512, 4, 4), torch.rand(1, 512, 3, 5)
    c5, s5 = torch.rand(1, 512, 2, 2), torch.rand(1, 512, 2, 3)
    with torch.no_grad():
        assert t(c4, s4, c5, s5).shape == (1, 512, 4, 4)


def test_missing_key_gives_weights_error():
    import pytest

    from impasto.errors import WeightsError

    sd = official_vgg().state_dict()
    del sd["29.weight"]
    with pytest.raises(WeightsError, match="29.weight"):
        convert_sequential_vgg(sd, "relu4_1")
