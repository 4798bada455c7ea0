"""Two CPU processes (gloo): the projection heads of ``iecontraast`` and ``refine-encoder`` are DDP-synchronised.

Each rank seeds its module initialisation differently and trains on its own data, so replicas stay identical only
if DDP broadcasts rank 0's parameters and all-reduces the heads' gradients.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from forked import run_forked
from impasto.data.arrangement import iecontra_arrange
from impasto.losses import iecontra_content_loss, iecontra_style_loss
from impasto.training.config import TrainConfig
from impasto.training.distributed import DistInfo
from impasto.training.tasks.iecontraast import IEContraASTTask
from impasto.training.tasks.refine import RefineEncoderTask
from impasto.training.tasks.sanet import LAYERS5

pytestmark = pytest.mark.weights

WORLD = 2
STEPS = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(task_cls, rank: int, out: str, crop: int, batch: int, **opts) -> Any:
    cfg = TrainConfig(task=task_cls.name, out_dir=str(Path(out) / f"{task_cls.name}{rank}"), crop=crop, size=crop,
                      batch_size=batch, task_options=opts)
    torch.manual_seed(1000 + rank)  # different random heads per rank unless DDP broadcasts rank 0's
    task = task_cls()
    task.bind(cfg, torch.device("cpu"), dist=DistInfo(rank, WORLD, rank, torch.device("cpu"), "gloo"))
    task.build(cfg, torch.device("cpu"))
    return task


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _iecontra_local_head_grads(task: IEContraASTTask, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """This rank's own (not all-reduced) gradient of 0.3 L_style-contrast + 0.3 L_content-contrast on the heads."""
    c, s = iecontra_arrange(batch["content"], batch["style"])
    with torch.no_grad():
        fc, fs = task.encoder(c, LAYERS5), task.encoder(s, LAYERS5)
    # the generator and the encoder of its output with autograd on, as in the training step (the CPU no-grad forms,
    # e.g. the decoder's fused up-sampling, differ from the module path in float32 summation order)
    out = task.generator(fc, fs, tuple(c.shape[-2:]))
    feats = {k: v.detach() for k, v in task.encoder(out, ["relu3_1", "relu4_1"]).items()}
    z_s, z_c = task.heads(feats["relu3_1"], feats["relu4_1"])
    o = task.opts
    loss = (o["style_contrastive_weight"] * iecontra_style_loss(z_s, o["tau"])
            + o["content_contrastive_weight"] * iecontra_content_loss(z_c, o["tau"]))
    return [g.detach() for g in torch.autograd.grad(loss, list(task.heads.parameters()))]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=WORLD)
    try:
        data = torch.Generator().manual_seed(rank)  # each rank its own images
        res: dict[str, Any] = {}
        task = _build(IEContraASTTask, rank, out, crop=32, batch=4, discriminator_scales=1)
        rec: dict[str, Any] = {"initial": _params(task.heads), "local": [], "grads": []}
        for step in range(STEPS):
            batch = {k: torch.rand(2, 3, 32, 32, generator=data) for k in ("content", "style")}
            rec["local"].append(_iecontra_local_head_grads(task, batch))
            task.training_step(batch, step)
            rec["grads"].append([p.grad.detach().clone() for p in task.heads.parameters()])
        rec["final"] = {k: _params(m) for k, m in task.trainable_modules().items()}
        res["iecontraast"] = rec
        task = _build(RefineEncoderTask, rank, out, crop=32, batch=2, num_positives=2, num_patches=8)
        rec = {"initial": _params(task.heads), "grads": []}
        for step in range(STEPS):
            batch = {k: torch.rand(2, 3, 32, 32, generator=data) for k in ("content", "style")}
            task.training_step(batch, step)
            rec["grads"].append([p.grad.detach().clone() for p in task.heads.parameters()])
        rec["final"] = {k: _params(m) for k, m in task.trainable_modules().items()}
        res["refine"] = rec
        torch.save(res, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ddp_heads")
    run_forked(_worker, (_free_port(), str(root)), WORLD)
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("task", ["iecontraast", "refine"])
def test_replicas_stay_identical(ranks: list[dict[str, Any]], task: str) -> None:
    r0, r1 = ranks[0][task], ranks[1][task]
    assert _equal(r0["initial"], r1["initial"])  # rank 0's heads broadcast despite different seeds
    for name in r0["final"]:
        assert _equal(r0["final"][name], r1["final"][name]), f"{task}: {name} replicas differ"
    assert not _equal(r0["initial"], r0["final"]["heads"])  # and the heads were trained
    for g0, g1 in zip(r0["grads"], r1["grads"], strict=True):
        assert _equal(g0, g1)  # all-reduced: the same gradient on both ranks


def test_iecontraast_head_gradients_are_the_average_over_ranks(ranks: list[dict[str, Any]]) -> None:
    r0, r1 = ranks[0]["iecontraast"], ranks[1]["iecontraast"]
    for step in range(STEPS):
        l0, l1 = r0["local"][step], r1["local"][step]
        assert not _equal(l0, l1)  # the ranks' own gradients differ (different data), so the check is not vacuous
        for g, a, b in zip(r0["grads"][step], l0, l1, strict=True):
            torch.testing.assert_close(g, (a + b) / 2, rtol=1e-4, atol=1e-7)
