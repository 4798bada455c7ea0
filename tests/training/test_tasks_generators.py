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
    task = built(SANetTask, tmp_path)
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
    task = built(IEContraASTTask, tmp_path, crop=64, batch=4, discriminator_scales=2)
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
