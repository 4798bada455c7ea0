"""The layer split of ``refine-encoder`` (Bai et al. Sec. 3.1/4.1): ConvX_1-only encoder, training, model file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from impasto.encoders.split import SplitVGGEncoder, split_conv_names
from impasto.encoders.vgg import DISTILLED16X_WIDTHS, VGGEncoder
from impasto.errors import ConfigError, WeightsError
from impasto.training.config import TrainConfig
from impasto.training.tasks.refine import RefineEncoderTask, refined_encoder

ROOT = Path(__file__).resolve().parents[2]
OLD_MODEL = ROOT / "docs" / "training" / "refine_encoder_short" / "model.pt"
SPLIT = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def random_encoder(widths=(4, 5, 6, 7, 7), depth: str = "relu5_1", seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> VGGEncoder:
    torch.manual_seed(seed)
    enc = VGGEncoder(widths, depth)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return enc.to(dtype)


def hand_reference(enc: VGGEncoder, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """conv0 -> [pad, conv1_1, relu] -> [pool, pad, conv2_1, relu] -> ... written out with nn layers."""
    pad, pool, relu = nn.ReflectionPad2d(1), nn.MaxPool2d(2, 2, ceil_mode=True), nn.ReLU()
    h = enc.conv0(x)
    out = {}
    for k in range(1, 6):
        if k > 1:
            h = pool(h)
        h = relu(enc.convs[f"conv{k}_1"](pad(h)))
        out[f"relu{k}_1"] = h
    return out


def test_split_keeps_exactly_the_convx_1_layers_with_the_pretrained_weights() -> None:
    enc = random_encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    split = SplitVGGEncoder.from_encoder(enc)
    assert list(split.convs) == SPLIT and split_conv_names("relu3_4") == SPLIT[:3]
    assert split.layer_names == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert [type(m) for m in split.modules()].count(nn.Conv2d) == 6  # conv0 + 5 ConvX_1
    assert set(split.state_dict()) == {"conv0.weight", "conv0.bias"} | {f"convs.{n}.{p}" for n in SPLIT
                                                                         for p in ("weight", "bias")}
    for k, v in split.state_dict().items():
        assert torch.equal(v, enc.state_dict()[k]), k
    assert [split.channels(f"relu{k}_1") for k in range(1, 6)] == [4, 5, 6, 7, 7]
    assert not any(p.requires_grad for p in split.parameters())  # frozen by default, like VGGEncoder
    # a private copy: training the split does not touch the source encoder
    with torch.no_grad():
        split.convs["conv2_1"].weight.add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    # depth reluK_J -> the split reaches reluK_1
    assert SplitVGGEncoder.from_encoder(random_encoder(depth="relu3_2")).depth == "relu3_1"


def test_split_outputs_match_a_hand_built_reference() -> None:
    enc = random_encoder()
    split = SplitVGGEncoder.from_encoder(enc)
    x = torch.rand(2, 3, 29, 23)  # odd sizes exercise the ceil-mode pooling
    got = split(x, split.layer_names)
    ref = hand_reference(enc, x)
    assert [tuple(v.shape[-2:]) for v in got.values()] == [(29, 23), (15, 12), (8, 6), (4, 3), (2, 2)]
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(split.encode(x, "relu3_1"), ref["relu3_1"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(split.encode(x), ref["relu5_1"], rtol=1e-5, atol=1e-6)
    # relu1_1 is the full encoder's; from relu2_1 on the split differs (conv2_1 reads pooled relu1_1)
    full = enc(x, ["relu1_1", "relu2_1"])
    torch.testing.assert_close(got["relu1_1"], full["relu1_1"], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got["relu2_1"], full["relu2_1"], atol=1e-3)


def test_split_forward_gradcheck_float64() -> None:
    split = SplitVGGEncoder.from_encoder(random_encoder((2, 2, 2, 2, 2), "relu3_1", dtype=torch.float64),
                                         frozen=False)
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: split(t, ["relu2_1", "relu3_1"])["relu3_1"], (x,))
    split(x, ["relu2_1", "relu3_1"])["relu3_1"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in split.parameters())


def test_split_errors_name_the_problem() -> None:
    bad = VGGEncoder(DISTILLED16X_WIDTHS, "relu2_1", first_width=24)  # conv1_1 -> 24, conv2_1 reads 16
    with pytest.raises(ConfigError, match="conv2_1 takes 16 channels but conv1_1 gives 24"):
        SplitVGGEncoder.from_encoder(bad)
    with pytest.raises(ConfigError, match="layer_split=false"):
        refined_encoder(bad, layer_split=True)
    assert isinstance(refined_encoder(bad, layer_split=False), VGGEncoder)  # the full copy still works
    # a first_width encoder of depth relu1_1 (the distilled kSE level 1) splits fine
    assert SplitVGGEncoder.from_encoder(VGGEncoder(DISTILLED16X_WIDTHS, "relu1_1", first_width=24)).channels(
        "relu1_1") == 24
    split = SplitVGGEncoder.from_encoder(random_encoder())
    with pytest.raises(ConfigError, match="relu3_2"):
        split(torch.rand(1, 3, 8, 8), ["relu3_2"])
    with pytest.raises(ConfigError, match="reluK_1"):
        SplitVGGEncoder(depth="relu3_2")


# ---------------------------------------------------------------------------------------------------------------
# real weights
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.weights
@pytest.mark.parametrize("backbone", ["vgg19", "vgg19-16x"])
def test_real_backbones_are_split_compatible(weights_dir: Path, backbone: str) -> None:
    from impasto.backbones import encoder_depths, load_encoder

    depths = encoder_depths(backbone)
    if not depths:
        pytest.skip(f"no {backbone} encoder present")
    enc = load_encoder(backbone, depths[-1])
    split = SplitVGGEncoder.from_encoder(enc)  # raises ConfigError if widths were incompatible
    names = split_conv_names(depths[-1])
    for prev, name in zip(names, names[1:], strict=False):
        assert enc.convs[name].in_channels == enc.convs[prev].out_channels
    for k, v in split.state_dict().items():
        assert torch.equal(v, enc.state_dict()[k])


def built(tmp_path: Path, **opts) -> RefineEncoderTask:
    cfg = TrainConfig(task="refine-encoder", out_dir=str(tmp_path / "run"), crop=32, size=32, batch_size=2,
                      task_options={"num_positives": 2, "num_patches": 8, **opts})
    task = RefineEncoderTask()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    return task


@pytest.mark.weights
@pytest.mark.parametrize("base", ["adain", "sanet"])
def test_refine_with_layer_split_trains_and_round_trips(weights_dir: Path, tmp_path: Path, base: str) -> None:
    torch.manual_seed(0)
    task = built(tmp_path, base=base)
    assert task.opts["layer_split"] is True  # the default
    refined, pretrained = task.refined, task.pretrained
    assert isinstance(refined, SplitVGGEncoder) and isinstance(pretrained, VGGEncoder)
    assert list(refined.convs) == SPLIT[: 4 if base == "adain" else 5]
    for k, v in refined.state_dict().items():
        assert torch.equal(v, pretrained.state_dict()[k]), k
    frozen_before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    losses = task.training_step({"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}, 0)
    assert losses["feature_reg"] > 0  # the split's relu2_1.. differ from the full encoder's from the start
    for name, module in task.trainable_modules().items():
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    assert all(not p.requires_grad and p.grad is None for p in pretrained.parameters())
    assert all(torch.equal(v, frozen_before[k]) for k, v in pretrained.state_dict().items())
    assert any(not torch.equal(v, pretrained.state_dict()[k]) for k, v in refined.state_dict().items())

    state = task.model_state()
    assert state["encoder_split"] is True
    path = tmp_path / "run" / "model.pt"
    x = torch.rand(1, 3, 24, 24)
    if base == "adain":
        from impasto.methods.adain import AdaIN, AdaINConfig

        method = AdaIN(AdaINConfig(checkpoint=str(path)))
        layer = "relu4_1"
    else:
        from impasto.methods.sanet import SANet, SANetConfig

        method = SANet(SANetConfig(checkpoint=str(path)))
        layer = "relu5_1"
    assert isinstance(method.encoder, SplitVGGEncoder) and method.backbone == "vgg19-16x"
    assert not any(p.requires_grad for p in method.encoder.parameters())
    for k, v in refined.state_dict().items():
        assert torch.equal(method.encoder.state_dict()[k], v)
    torch.testing.assert_close(method.encoder.encode(x, layer), refined.eval().encode(x, layer))


@pytest.mark.weights
def test_refine_without_layer_split_writes_a_full_encoder(weights_dir: Path, tmp_path: Path) -> None:
    task = built(tmp_path, layer_split="false")
    assert type(task.refined) is VGGEncoder and "conv1_2" in task.refined.convs
    state = task.model_state()
    assert state["encoder_split"] is False
    from impasto.methods.adain import AdaIN, AdaINConfig

    method = AdaIN(AdaINConfig(checkpoint=str(tmp_path / "run" / "model.pt")))
    assert type(method.encoder) is VGGEncoder


@pytest.mark.weights
def test_old_model_files_without_the_split_key_still_load(weights_dir: Path, tmp_path: Path) -> None:
    from impasto.methods.adain import AdaIN, AdaINConfig
    from impasto.methods.common import checkpoint_encoder, load_impasto_checkpoint

    if not OLD_MODEL.is_file():
        pytest.skip(f"{OLD_MODEL} not present")
    ck = load_impasto_checkpoint(OLD_MODEL)
    assert "encoder_split" not in ck and "encoder_state" in ck
    method = AdaIN(AdaINConfig(checkpoint=str(OLD_MODEL)))
    assert type(method.encoder) is VGGEncoder and "conv4_1" in method.encoder.convs
    for k, v in ck["encoder_state"].items():
        assert torch.equal(method.encoder.state_dict()[k], v)
    # a split flag on a full-encoder state is reported, not silently half-loaded
    with pytest.raises(WeightsError, match="does not fit"):
        checkpoint_encoder(ck["encoder"], ck["depth"], {**ck, "encoder_split": True})
    # and the split state loads only as a split
    split_state = {k: v for k, v in ck["encoder_state"].items() if not any(f"_{j}." in k for j in (2, 3, 4))}
    enc = checkpoint_encoder(ck["encoder"], ck["depth"], {**ck, "encoder_state": split_state,
                                                          "encoder_split": True})
    assert isinstance(enc, SplitVGGEncoder)
    x = torch.rand(1, 3, 16, 16)
    assert F.mse_loss(enc.encode(x), method.encoder.encode(x)) > 0
