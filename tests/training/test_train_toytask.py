"""A tiny trainable Task (2-layer conv autoencoder) used by the training tests, and its own checks.

Registered here (tests only) as "toy-autoencoder". It uses the torch, numpy and python RNGs inside
``training_step`` so that exact resumption really depends on restoring all of them.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from impasto.training import Task, TrainConfig, register_task


def write_images(folder: Path, n: int, seed: int = 0) -> Path:
    """n random RGB PNGs of varied small sizes (28..44 px) in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(28, 45, size=2))
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr, "RGB").save(folder / f"img_{i:03d}.png")
    return folder


def toy_config(tmp_path: Path, out: str = "run", **overrides: Any) -> TrainConfig:
    """A config for 6 fast steps of the toy task on images written under tmp_path."""
    content = tmp_path / "content"
    style = tmp_path / "style"
    if not content.exists():
        write_images(content, 5, seed=1)
        write_images(style, 4, seed=2)
    values: dict[str, Any] = dict(task="toy-autoencoder", content_dir=str(content), style_dir=str(style),
                                  steps=6, batch_size=2, lr=1e-2, lr_decay=0.1, size=36, crop=24, seed=3,
                                  checkpoint_every=2, keep_checkpoints=2, sample_every=3, num_samples=2,
                                  log_every=1, out_dir=str(tmp_path / out), precision="fp32", device="cpu",
                                  num_workers=0, task_options={"noise": 0.05})
    values.update(overrides)
    return TrainConfig(**values)


@register_task("toy-autoencoder")
class ToyTask(Task):
    """Conv(3->4) ReLU Conv(4->3) trained to reconstruct contents, pulled towards style colour means.

    task_options: noise (input noise std, also scales a numpy/python random loss jitter), optimizer
    ("adam" | "sgd"), record (keep batches and gradients), interrupt_at / interrupt_signal (send a signal
    to this process during that step), raise_at (raise KeyboardInterrupt during that step).
    """

    def build(self, config: TrainConfig, device: torch.device) -> None:
        opts = {"noise": 0.0, "optimizer": "adam", "record": False, **config.task_options}
        self.opts = opts
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(4, 3, 3, padding=1)).to(device)
        self.initial = [p.detach().clone() for p in self.net.parameters()]
        self.model = self.wrap_ddp(self.net)
        cls = torch.optim.Adam if opts["optimizer"] == "adam" else torch.optim.SGD
        self.opt = cls(self.net.parameters(), lr=config.lr)
        self.calls = 0
        self.records: list[dict[str, Any]] = []

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.opt}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        if step == self.opts.get("interrupt_at"):
            os.kill(os.getpid(), getattr(signal, self.opts.get("interrupt_signal", "SIGINT")))
        if step == self.opts.get("raise_at"):
            raise KeyboardInterrupt
        c, s = batch["content"], batch["style"]
        noise = float(self.opts["noise"])
        x = c + noise * torch.randn_like(c) if noise else c
        jitter = 1.0 + noise * (float(np.random.rand()) + random.random())
        self.opt.zero_grad()
        with self.autocast():
            out = self.model(x).float()
        rec = ((out - c) ** 2).mean()
        sty = ((out.mean((2, 3)) - s.mean((2, 3))) ** 2).mean()
        loss = jitter * rec + 0.1 * sty
        self.backward(loss)
        if self.opts["record"]:
            self.records.append({"content": c.detach().clone(), "style": s.detach().clone(),
                                 "grads": [p.grad.detach().clone() for p in self.net.parameters()]})
        self.optimizer_step(self.opt)
        self.calls += 1
        return {"total": loss.detach(), "reconstruction": rec.detach(), "style": sty.detach()}

    def sample(self, contents: torch.Tensor, styles: torch.Tensor | None) -> torch.Tensor:
        return self.net(contents).clamp(0, 1)

    def model_state(self) -> dict[str, Any]:
        return {"arch": "toy-autoencoder", "net": self.net.state_dict()}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])


def toy_loss(net: nn.Module, contents: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """The toy task's loss with noise 0 (for reference computations)."""
    out = net(contents)
    return ((out - contents) ** 2).mean() + 0.1 * ((out.mean((2, 3)) - styles.mean((2, 3))) ** 2).mean()


# --------------------------------------------------------------------------------------------- tests
def test_toy_task_gradients_reach_every_parameter(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path)
    task = ToyTask()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batch = {"content": torch.rand(2, 3, 8, 8, generator=g), "style": torch.rand(2, 3, 8, 8, generator=g)}
    losses = task.training_step(batch, 0)
    assert {"total", "reconstruction", "style"} <= set(losses)
    for p in task.net.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert any(not torch.equal(a, b) for a, b in zip(task.initial, task.net.parameters(), strict=True))
    with torch.no_grad():
        out = task.sample(batch["content"], batch["style"])
    assert out.shape == (2, 3, 8, 8) and 0 <= float(out.min()) and float(out.max()) <= 1
