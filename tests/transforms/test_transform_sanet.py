"""Tests of impasto.transforms.sanet: style attention (pure function and modules), official key layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impasto.transforms import SANet, SANetTransform, mean_std, sanet_attention


def _official_sanet(net: SANet, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Transcription of the official SANet.forward (SANET / IEContraAST repositories)."""

    def mvn(feat: torch.Tensor) -> torch.Tensor:
        mean, std = mean_std(feat)
        return (feat - mean.expand(feat.size())) / std.expand(feat.size())

    f = net.f(mvn(content))
    g = net.g(mvn(style))
    h = net.h(style)
    b, c, hh, ww = f.size()
    f = f.view(b, -1, ww * hh).permute(0, 2, 1)
    b, c, hh, ww = g.size()
    g = g.view(b, -1, ww * hh)
    s = torch.softmax(torch.bmm(f, g), dim=-1)
    b, c, hh, ww = h.size()
    h = h.view(b, -1, ww * hh)
    o = torch.bmm(h, s.permute(0, 2, 1))
    b, c, hh, ww = content.size()
    o = net.out_conv(o.view(b, c, hh, ww))
    return o + content


def _params(net: SANet) -> tuple[torch.Tensor, ...]:
    return (
        net.f.weight,
        net.f.bias,
        net.g.weight,
        net.g.bias,
        net.h.weight,
        net.h.bias,
        net.out_conv.weight,
        net.out_conv.bias,
    )


def test_module_matches_pure_function_and_official_forward() -> None:
    torch.manual_seed(0)
    net = SANet(16)
    content, style = torch.randn(2, 16, 6, 5), torch.randn(2, 16, 4, 7)
    out = net(content, style)
    assert out.shape == content.shape
    assert torch.equal(out, sanet_attention(content, style, *_params(net)))
    assert torch.allclose(out, _official_sanet(net, content, style), atol=1e-5)


def test_single_style_position_hand_computation() -> None:
    # one style position: softmax = 1, so every content position receives out_conv(h(s)) on top of itself
    torch.manual_seed(1)
    net = SANet(3)
    content, style = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 1, 1)
    w_h, b_h = net.h.weight[:, :, 0, 0], net.h.bias
    w_o, b_o = net.out_conv.weight[:, :, 0, 0], net.out_conv.bias
    delta = w_o @ (w_h @ style[0, :, 0, 0] + b_h) + b_o
    assert torch.allclose(net(content, style), content + delta.view(1, 3, 1, 1), atol=1e-6)


def test_query_chunk_equals_unchunked() -> None:
    torch.manual_seed(2)
    net = SANet(8)
    content, style = torch.randn(2, 8, 7, 9), torch.randn(1, 8, 5, 6)
    full = net(content, style)
    for chunk in (1, 5, 63, 1000):
        net.query_chunk = chunk
        assert torch.allclose(net(content, style), full, atol=1e-6, rtol=0)


def test_one_style_broadcasts_over_the_batch() -> None:
    torch.manual_seed(3)
    net = SANet(4)
    content, style = torch.randn(3, 4, 5, 5), torch.randn(1, 4, 6, 6)
    out = net(content, style)
    assert torch.allclose(out, net(content, style.expand(3, -1, -1, -1)), atol=1e-6)
    with pytest.raises(ValueError, match="batch"):
        net(content, torch.randn(2, 4, 6, 6))


def test_transform_official_keys_and_shapes() -> None:
    sd = SANetTransform(512).state_dict()
    expected = {
        f"sanet{level}.{conv}.{kind}"
        for level in ("4_1", "5_1")
        for conv in ("f", "g", "h", "out_conv")
        for kind in ("weight", "bias")
    } | {"merge_conv.weight", "merge_conv.bias"}
    assert set(sd) == expected
    assert sd["sanet4_1.f.weight"].shape == (512, 512, 1, 1)
    assert sd["sanet5_1.out_conv.bias"].shape == (512,)
    assert sd["merge_conv.weight"].shape == (512, 512, 3, 3)
    # a synthetic official checkpoint loads strictly, also into the 128-channel (distilled encoder) size
    SANetTransform(512).load_state_dict({k: torch.zeros_like(v) for k, v in sd.items()}, strict=True)
    assert SANetTransform(128).state_dict()["merge_conv.weight"].shape == (128, 128, 3, 3)


def test_transform_forward_matches_composition() -> None:
    torch.manual_seed(4)
    t = SANetTransform(8)
    c4, s4 = torch.randn(2, 8, 6, 8), torch.randn(2, 8, 4, 4)
    c5, s5 = torch.randn(2, 8, 3, 4), torch.randn(2, 8, 2, 2)
    out = t(c4, s4, c5, s5)
    assert out.shape == c4.shape
    o5 = F.interpolate(t.sanet5_1(c5, s5), scale_factor=2, mode="nearest")  # the official upsampling
    expected = t.merge_conv(F.pad(t.sanet4_1(c4, s4) + o5, (1, 1, 1, 1), mode="reflect"))
    assert torch.allclose(out, expected, atol=1e-6)
    # odd relu4_1 size: relu5_1 is upsampled to relu4_1's size
    assert t(torch.randn(1, 8, 7, 5), s4[:1], torch.randn(1, 8, 3, 2), s5[:1]).shape == (1, 8, 7, 5)
    t.query_chunk = 5
    assert torch.allclose(t(c4, s4, c5, s5), out, atol=1e-6)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(5)
    t = SANetTransform(6)
    out = t(torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4), torch.randn(2, 6, 2, 2), torch.randn(2, 6, 2, 2))
    out.square().mean().backward()
    for name, p in t.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradcheck_attention_and_transform() -> None:
    torch.manual_seed(6)
    net = SANet(3).double()
    content = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    style = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(p.detach().clone().requires_grad_() for p in _params(net))

    def fn(c: torch.Tensor, s: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return sanet_attention(c, s, *ps, query_chunk=4)

    assert torch.autograd.gradcheck(fn, (content, style, *params))
    t = SANetTransform(2).double()
    inputs = tuple(
        torch.randn(shape, dtype=torch.float64, requires_grad=True)
        for shape in [(1, 2, 4, 4), (1, 2, 3, 3), (1, 2, 2, 2), (1, 2, 2, 2)]
    )
    assert torch.autograd.gradcheck(t, inputs)
