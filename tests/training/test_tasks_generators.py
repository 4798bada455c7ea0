"""The ``sanet``, ``iecontraast``, ``refine-encoder`` and ``style-swap-inverse`` training tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from impasto.methods.common import load_impasto_checkpoint
from impasto.training.config import TrainConfig
from impasto.training.loop import available_tasks
from impasto.training.tasks.iecontraast import IEContraASTTask
from impasto.training.tasks.refine import RefineEncoderTask
from impasto.training.tasks.sanet import SANetTask
from impasto.training.tasks.style_swap_inverse import StyleSwapInverseTask, swap_activations

pytestmark = pytest.mark.weights

#: SANet stage 8 (shipped in sessions 21-23; no skip connections), committed with its model card
STAGE8 = str(Path(__file__).resolve().parents[2] / "docs" / "models" / "sanet" / "cpu_sw06" / "model.pt")


def built(task_cls, tmp_path: Path, crop: int = 32, batch: int = 2, **opts):
    cfg = TrainConfig(task=task_cls.name, out_dir=str(tmp_path / "run"), crop=crop, size=crop, batch_size=batch,
                      task_options=opts)
    task = task_cls()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    return task


def grads_ok(task, frozen) -> None:
    for name, module in task.trainable_modules().items():
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    for module in frozen:
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None


def test_registered() -> None:
    assert {"adain", "sanet", "iecontraast", "refine-encoder", "style-swap-inverse"} <= set(available_tasks())


def test_sanet(weights_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = built(SANetTask, tmp_path, init_transform="default")  # passthrough: f, g, h get no gradient at step 0
    b = {"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}
    losses = task.training_step(b, 0)
    o = task.opts
    expect = (losses["content"] + 3 * losses["style"] + 50 * losses["identity_pixel"]
              + losses["identity_feature"])
    assert o["style_weight"] == 3.0 and losses["total"] == pytest.approx(expect, rel=1e-4)
    grads_ok(task, [task.encoder])
    state = task.model_state()
    assert state["method"] == "sanet" and state["transform_channels"] == 128
    assert set(state["transform"]) >= {"sanet4_1.f.weight", "sanet5_1.h.bias", "merge_conv.weight"}
    model = load_impasto_checkpoint(tmp_path / "run" / "model.pt")
    assert model["step"] == 1 and model["depth"] == "relu4_1"
    from impasto.methods.sanet import SANet, SANetConfig

    m = SANet(SANetConfig(checkpoint=str(tmp_path / "run" / "model.pt")))
    assert m.backbone == "vgg19-16x"


def test_iecontraast(weights_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = built(IEContraASTTask, tmp_path, crop=64, batch=4, discriminator_scales=2, init_transform="default")
    assert task.batch_sizes(task.config) == {"content": 2, "style": 2}
    b = {"content": torch.rand(2, 3, 64, 64), "style": torch.rand(2, 3, 64, 64)}
    losses = task.training_step(b, 0)
    assert {"style_contrastive", "content_contrastive", "gan_g", "gan_d", "identity_pixel"} <= set(losses)
    grads_ok(task, [task.encoder])
    assert all(p.requires_grad for p in task.discriminator.parameters())  # re-enabled after the G step
    assert task.model_state()["method"] == "iecontraast"


@pytest.mark.parametrize("base", ["adain", "sanet"])
def test_refine_encoder(weights_dir: Path, tmp_path: Path, base: str) -> None:
    torch.manual_seed(0)
    # the full-copy variant (the layer split is tested in test_refine_layer_split.py)
    task = built(RefineEncoderTask, tmp_path, base=base, num_positives=2, num_patches=8, layer_split=False)
    before = {k: v.clone() for k, v in task.refined.state_dict().items()}
    b = {"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}
    losses = task.training_step(b, 0)
    assert {"style_contrastive", "content_contrastive", "feature_reg", "content", "style"} <= set(losses)
    grads_ok(task, [task.pretrained])  # the refined encoder is trained, the pretrained one is not
    assert any(not torch.equal(before[k], v) for k, v in task.refined.state_dict().items())
    assert losses["feature_reg"] == 0.0  # refined == pretrained at step 0
    state = task.model_state()
    assert state["method"] == base and "encoder_state" in state


def test_style_swap_inverse(weights_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = built(StyleSwapInverseTask, tmp_path)
    assert task.batch_sizes(task.config) == {"content": 2, "style": 2}
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    a = swap_activations(task.encoder, c, s, "relu3_1")
    assert a.shape == (8, 256, 8, 8)
    assert torch.equal(a[:2], task.encoder.encode(c, "relu3_1"))
    losses = task.training_step({"content": c, "style": s}, 0)
    assert losses["total"] == pytest.approx(losses["activation"] + 1e-6 * losses["tv"], rel=1e-5)
    grads_ok(task, [task.encoder])
    state = task.model_state()
    assert (state["method"], state["encoder"], state["depth"]) == ("style-swap", "vgg19", "relu3_1")


def test_style_swap_inverse_style_term(weights_dir: Path, tmp_path: Path) -> None:
    """style_weight adds the mean/std loss of each swapped image against the painting it took its patches from
    (swaps of painting j come P at a time); 0 keeps the paper's loss; bad values name the option."""
    from impasto.errors import ConfigError
    from impasto.losses import mean_std_style_loss

    torch.manual_seed(0)
    task = built(StyleSwapInverseTask, tmp_path / "a", style_weight=0.5, style_layers="relu1_1, relu2_1")
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    swapped = torch.rand(4, 3, 32, 32)
    by_hand = []
    for k in range(4):  # swaps 0, 1 took painting 0's patches; 2, 3 painting 1's
        o = task.encoder(swapped[k:k + 1], ["relu1_1", "relu2_1"])
        t = task.encoder(s[k // 2:k // 2 + 1], ["relu1_1", "relu2_1"])
        by_hand.append(mean_std_style_loss(o, t))
    got = task.swap_style_loss(task.encoder(swapped, ["relu1_1", "relu2_1"]), s)
    assert float(got) == pytest.approx(float(torch.stack(by_hand).mean()), rel=1e-5)
    losses = task.training_step({"content": c, "style": s}, 0)
    assert losses["style"] > 0
    assert losses["total"] == pytest.approx(losses["activation"] + 1e-6 * losses["tv"] + 0.5 * losses["style"],
                                            rel=1e-5)
    grads_ok(task, [task.encoder])
    assert "style" not in built(StyleSwapInverseTask, tmp_path / "b").training_step({"content": c, "style": s}, 0)
    with pytest.raises(ConfigError, match="style_layers"):
        built(StyleSwapInverseTask, tmp_path / "c", style_weight=1.0, style_layers="relu4_1")
    with pytest.raises(ConfigError, match="style_weight"):
        built(StyleSwapInverseTask, tmp_path / "d", style_weight=-1.0)


def test_style_swap_inverse_init_checkpoint(weights_dir: Path, tmp_path: Path) -> None:
    """init_checkpoint continues from a trained inverse network (the committed one); a model of another layout
    is refused with the option's name."""
    from impasto.errors import ConfigError
    from impasto.methods.common import load_model_decoder

    committed = Path(__file__).resolve().parents[2] / "docs" / "training" / "style_swap_inverse" / "model.pt"
    task = built(StyleSwapInverseTask, tmp_path / "a", init_checkpoint=str(committed))
    want = load_model_decoder(load_impasto_checkpoint(committed), committed).state_dict()
    got = task.decoder.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert all(p.requires_grad for p in task.decoder.parameters())
    pretrained = built(StyleSwapInverseTask, tmp_path / "b").decoder.state_dict()
    assert any(not torch.equal(got[k], pretrained[k]) for k in want)  # not the pretrained decoder
    sanet = built(SANetTask, tmp_path / "c")
    sanet.model_state()
    with pytest.raises(ConfigError, match="init_checkpoint"):
        built(StyleSwapInverseTask, tmp_path / "d", init_checkpoint=str(tmp_path / "c" / "run" / "model.pt"))


def test_sanet_passthrough_init_returns_the_content_features(weights_dir: Path, tmp_path: Path) -> None:
    """init_transform=passthrough (the default): the untrained transform gives c4 + up(c5), and training moves it."""
    torch.manual_seed(0)
    task = built(SANetTask, tmp_path)
    tr = task.generator.transform
    c4, s4 = torch.randn(1, 128, 8, 8), torch.randn(1, 128, 6, 6)
    c5, s5 = torch.randn(1, 128, 4, 4), torch.randn(1, 128, 3, 3)
    with torch.no_grad():
        out = tr(c4, s4, c5, s5)
    expect = c4 + torch.nn.functional.interpolate(c5, size=(8, 8), mode="nearest")
    assert torch.allclose(out, expect, atol=1e-5)
    b = {"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}
    task.training_step(b, 0)
    assert tr.sanet4_1.out_conv.weight.abs().sum() > 0  # the zero residual starts to learn at once
    task.training_step(b, 1)
    assert tr.sanet4_1.f.weight.grad.abs().sum() > 0  # and the attention behind it from the next step


def test_sanet_content_layers_option(weights_dir: Path, tmp_path: Path) -> None:
    """task_options.content_layers sets the normalised content loss's layers (default: the papers' relu4_1 + relu5_1);
    the content term is then the hand-computed sum over those layers; a bad name fails at build with the option."""
    from impasto.errors import ConfigError
    from impasto.losses import content_loss
    from impasto.training.tasks.sanet import LAYERS5, sanet_losses

    torch.manual_seed(0)
    task = built(SANetTask, tmp_path / "a", init_transform="default")
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fc, fs = task.encoder(c, LAYERS5), task.encoder(s, LAYERS5)
    with torch.no_grad():
        default, out, out_feats = sanet_losses(task.generator, task.encoder, c, s, fc, fs, task.opts, identity=False)
        three, _, _ = sanet_losses(task.generator, task.encoder, c, s, fc, fs,
                                   {**task.opts, "content_layers": "relu3_1, relu4_1,relu5_1"}, identity=False)
    per = {k: float(content_loss(out_feats, fc, normalize=True, layers=[k])) for k in ("relu3_1", "relu4_1", "relu5_1")}
    assert float(default["content"]) == pytest.approx(per["relu4_1"] + per["relu5_1"], rel=1e-5)
    assert float(three["content"]) == pytest.approx(sum(per.values()), rel=1e-5)
    task3 = built(IEContraASTTask, tmp_path / "b", crop=64, batch=4, discriminator_scales=2,
                  content_layers="relu3_1,relu4_1,relu5_1")
    assert task3.opts["content_layers"] == "relu3_1,relu4_1,relu5_1"
    for bad in ("relu3_2", "", "relu4_1,relu4_1"):
        with pytest.raises(ConfigError, match="content_layers"):
            built(SANetTask, tmp_path / "c", content_layers=bad)


def test_sanet_edge_weight_option(weights_dir: Path, tmp_path: Path) -> None:
    """task_options.edge_weight adds ``edge_weight * edge_loss(out, content)`` to the total (off by default, as in
    the papers) and its gradient reaches the generator; a negative weight fails at build naming the option."""
    from impasto.errors import ConfigError
    from impasto.losses import edge_loss
    from impasto.training.tasks.sanet import LAYERS5, sanet_losses

    torch.manual_seed(0)
    task = built(SANetTask, tmp_path / "a", init_transform="default")
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fc, fs = task.encoder(c, LAYERS5), task.encoder(s, LAYERS5)
    off, _, _ = sanet_losses(task.generator, task.encoder, c, s, fc, fs, task.opts, identity=False)
    assert task.opts["edge_weight"] == 0.0 and "edge" not in off
    on, out, _ = sanet_losses(task.generator, task.encoder, c, s, fc, fs, {**task.opts, "edge_weight": 7.0},
                              identity=False)
    assert float(on["edge"].detach()) == pytest.approx(float(edge_loss(out.detach(), c)), rel=1e-6)
    expect = on["content"] + 3 * on["style"] + 7.0 * on["edge"]
    assert float(on["total"].detach()) == pytest.approx(float(expect.detach()), rel=1e-5)
    task.generator.zero_grad()
    on["edge"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.generator.decoder.parameters())
    with pytest.raises(ConfigError, match="edge_weight"):
        built(SANetTask, tmp_path / "b", edge_weight=-1.0)
    ie = built(IEContraASTTask, tmp_path / "c", crop=64, batch=4, discriminator_scales=2, edge_weight=2.0)
    losses = ie.training_step({"content": torch.rand(4, 3, 64, 64), "style": torch.rand(4, 3, 64, 64)}, 0)
    assert "edge" in losses and 0.0 <= losses["edge"] <= 2.0


def test_sanet_freeze_decoder_steps_and_init_checkpoint(weights_dir: Path, tmp_path: Path) -> None:
    """freeze_decoder_steps keeps the decoder fixed while the transform trains; init_checkpoint starts from a file."""
    torch.manual_seed(0)
    task = built(SANetTask, tmp_path / "a", freeze_decoder_steps=2)
    dec0 = {k: v.clone() for k, v in task.generator.decoder.state_dict().items()}
    tr0 = task.generator.transform.merge_conv.weight.clone()
    b = {"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}
    for step in range(2):
        task.training_step(b, step)
    assert all(torch.equal(v, task.generator.decoder.state_dict()[k]) for k, v in dec0.items())
    assert not torch.equal(tr0, task.generator.transform.merge_conv.weight)
    task.training_step(b, 2)
    assert not torch.equal(dec0["convs.conv1_1.weight"], task.generator.decoder.convs["conv1_1"].weight)
    model = tmp_path / "a" / "run" / "model.pt"
    task.model_state()
    # a new run started from that file has its decoder and transform
    task2 = built(SANetTask, tmp_path / "b", init_checkpoint=str(model))
    for k, v in task.generator.state_dict().items():
        assert torch.equal(v, task2.generator.state_dict()[k]), k


def test_init_checkpoint_of_the_wrong_layout_is_a_clear_error(weights_dir: Path, tmp_path: Path) -> None:
    from impasto.errors import ConfigError, WeightsError
    from impasto.training.tasks.adain import AdaINTask

    task = built(AdaINTask, tmp_path / "a", encoder="vgg19")  # relu3_1 decoder of the real VGG
    task.model_state()
    with pytest.raises(ConfigError, match="does not fit"):
        built(SANetTask, tmp_path / "b", init_checkpoint=str(tmp_path / "a" / "run" / "model.pt"))
    with pytest.raises(WeightsError, match="does not exist"):
        built(AdaINTask, tmp_path / "c", init_checkpoint=str(tmp_path / "missing.pt"))


def test_iecontraast_gan_ramp_and_painting_flips(weights_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = built(IEContraASTTask, tmp_path, crop=64, batch=4, discriminator_scales=2, gan_ramp_steps=10)
    assert task.gan_weight(0) == pytest.approx(0.5) and task.gan_weight(4) == pytest.approx(2.5)
    assert task.gan_weight(9) == task.gan_weight(500) == 5.0
    styles = torch.rand(64, 3, 8, 8)
    real = task._real_paintings(styles)
    flipped = [not torch.equal(a, b) for a, b in zip(real, styles, strict=True)]
    assert 10 < sum(flipped) < 54  # about half, each either itself or its mirror image
    assert all(torch.equal(r, s.flip(-1)) for r, s, f in zip(real, styles, flipped, strict=True) if f)
    no_flip = built(IEContraASTTask, tmp_path / "b", crop=64, batch=4, discriminator_scales=2, flip_paintings=False)
    assert torch.equal(no_flip._real_paintings(styles), styles) and no_flip.gan_weight(0) == 5.0


def test_iecontraast_aux_lr_for_the_discriminator_and_heads(weights_dir: Path, tmp_path: Path) -> None:
    from impasto.errors import ConfigError

    cfg_lr = TrainConfig(task="iecontraast").lr
    task = built(IEContraASTTask, tmp_path / "a", crop=64, batch=4, discriminator_scales=2, aux_lr=cfg_lr * 5)
    gen, heads = task.opt.param_groups
    assert gen["lr"] == cfg_lr and heads["lr"] == cfg_lr * 5 and task.opt_d.param_groups[0]["lr"] == cfg_lr * 5
    assert {id(p) for p in heads["params"]} == {id(p) for p in task.heads.parameters()}
    assert {id(p) for p in gen["params"]} == {id(p) for p in task.generator.parameters()}
    plain = built(IEContraASTTask, tmp_path / "b", crop=64, batch=4, discriminator_scales=2)
    assert len(plain.opt.param_groups) == 1 and plain.opt_d.param_groups[0]["lr"] == cfg_lr  # the release's
    with pytest.raises(ConfigError, match="aux_lr"):
        built(IEContraASTTask, tmp_path / "c", crop=64, batch=4, discriminator_scales=2, aux_lr=-1)


def test_sanet_skip_layers_from_a_trained_file(weights_dir: Path, tmp_path: Path) -> None:
    """skip_layers from the shipped SANet starts where it was (zero convs: the same images), every skip conv gets a
    gradient, the model file stores them and loads for stylisation (eager and fused give the training sample's
    image), a run started from that file reuses them (widened with its decoder under decoder_widen), and a bad layer or
    a mismatched file fails naming the option."""
    from impasto.errors import ConfigError
    from impasto.pipeline import Stylizer

    shipped = STAGE8
    torch.manual_seed(0)
    plain = built(SANetTask, tmp_path / "a", init_checkpoint=shipped)
    sk = built(SANetTask, tmp_path / "b", init_checkpoint=shipped, skip_layers="relu3_1, relu2_1")
    assert sk.generator.layers == ["relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.allclose(plain.sample(c, s), sk.sample(c, s), atol=1e-5)
    sk.training_step({"content": c, "style": s}, 0)
    for name, p in sk.generator.skips.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.manual_seed(1)
    with torch.no_grad():  # a trained state, so that the loaded file is checked on skips that do something
        for p in sk.generator.skips.parameters():
            p.add_(0.005 * torch.randn_like(p))
    sk.model_state()
    model = tmp_path / "b" / "run" / "model.pt"
    ck = load_impasto_checkpoint(model)
    assert ck["skip_channels"] == {"relu2_1": (32, 32), "relu3_1": (64, 64)}
    want = sk.sample(c[:1], s[:1])
    assert 0.05 < float(want.mean()) < 0.95  # not clamped flat
    assert not torch.allclose(want, plain.sample(c[:1], s[:1]), atol=1e-3)
    from impasto.modelfile import save_model

    packed = save_model(ck, tmp_path / "skips.safetensors")  # the packaged form (scripts/package_model.py)
    for backend, path in (("eager", model), ("fused", model), ("eager", packed)):
        with pytest.warns(UserWarning, match="smoke-scale"):
            m = Stylizer("sanet", checkpoint=str(path), precision="fp32", backend=backend).method
        # the method itself: the Stylizer would also rescale the 32 px painting (style_size)
        got = m.stylize(c[:1], [m.encode_style(s[:1])], torch.ones(1))
        assert torch.allclose(got, want, atol=1e-4), (backend, path)
    again = built(SANetTask, tmp_path / "c", init_checkpoint=str(model), skip_layers="relu2_1,relu3_1")
    kept = built(IEContraASTTask, tmp_path / "f", crop=64, batch=4, discriminator_scales=2, init_checkpoint=str(model))
    for k, v in sk.generator.state_dict().items():  # the file's skips are kept, named or not
        assert torch.equal(v, again.generator.state_dict()[k]), k
        assert torch.equal(v, kept.generator.state_dict()[k]), k
    # decoder_widen widens the file's skips with its decoder: the same images, and a file that loads
    wide = built(SANetTask, tmp_path / "g", init_checkpoint=str(model), decoder_widen=2)
    assert wide.generator.skips.channels() == {"relu2_1": (32, 64), "relu3_1": (64, 128)}
    assert torch.allclose(wide.sample(c, s), sk.sample(c, s), atol=1e-4)
    wide.model_state()
    with pytest.warns(UserWarning, match="smoke-scale"):
        m = Stylizer("sanet", checkpoint=str(tmp_path / "g" / "run" / "model.pt"), precision="fp32").method
    assert torch.allclose(m.stylize(c[:1], [m.encode_style(s[:1])], torch.ones(1)), want, atol=1e-4)
    with pytest.raises(ConfigError, match="skip_layers"):
        built(SANetTask, tmp_path / "d", skip_layers="relu4_1")
    with pytest.raises(ConfigError, match="skip_layers"):
        built(SANetTask, tmp_path / "e", init_checkpoint=str(model), skip_layers="relu3_1")


def test_widen_decoder_keeps_the_function_and_widens_inside() -> None:
    from impasto.decoders.vgg import VGGDecoder
    from impasto.errors import ConfigError
    from impasto.training.tasks.common import widen_decoder

    torch.manual_seed(0)
    thin = VGGDecoder([16, 32, 64, 128, 128], "relu4_1")
    wide = widen_decoder(thin, 3)
    assert list(wide.widths) == [48, 96, 192, 128, 128]  # the 128 relu4_1 features it decodes keep their width
    assert wide.convs["conv4_1"].in_channels == 128 and wide.convs["conv1_1"].out_channels == 3
    x = torch.randn(2, 128, 8, 8)
    assert torch.allclose(wide(x), thin(x), atol=1e-5)  # same function ...
    w = wide.convs["conv1_1"].weight
    assert not torch.equal(w[:, :16], w[:, 16:32])  # ... but the copies read with different weights
    with pytest.raises(ConfigError, match="decoder_widen"):
        widen_decoder(thin, 0)


def test_sanet_decoder_widen_from_a_trained_file(weights_dir: Path, tmp_path: Path) -> None:
    """decoder_widen=2 from the shipped SANet starts where it was (same images), trains, and its model file loads
    for stylisation; a run started from that wide file keeps it as it is (not widened twice)."""
    from impasto.methods.sanet import SANet, SANetConfig

    shipped = STAGE8
    torch.manual_seed(0)
    thin = built(SANetTask, tmp_path / "a", init_checkpoint=shipped)
    wide = built(SANetTask, tmp_path / "b", init_checkpoint=shipped, decoder_widen=2)
    assert list(wide.generator.decoder.widths) == [32, 64, 128, 128, 128]
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.allclose(thin.sample(c, s), wide.sample(c, s), atol=1e-4)
    wide.training_step({"content": c, "style": s}, 0)
    grads_ok(wide, [wide.encoder])
    wide.model_state()
    model = tmp_path / "b" / "run" / "model.pt"
    assert load_impasto_checkpoint(model)["decoder_widths"] == [32, 64, 128, 128, 128]
    again = built(SANetTask, tmp_path / "c", init_checkpoint=str(model), decoder_widen=2)
    for k, v in wide.generator.state_dict().items():
        assert torch.equal(v, again.generator.state_dict()[k]), k
    with pytest.warns(UserWarning, match="smoke-scale"):  # its card says 1 step
        m = SANet(SANetConfig(checkpoint=str(model)))
    assert list(m.decoder.widths) == [32, 64, 128, 128, 128]
    assert torch.allclose(m.stylize(c[:1], [m.encode_style(s[:1])], torch.ones(1)), wide.sample(c[:1], s[:1]),
                          atol=1e-4)
