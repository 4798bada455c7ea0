"""Two CPU processes (gloo) train the toy task with DDP: replicas stay identical, gradients are averaged."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from test_train_toytask import ToyTask, toy_config, toy_loss

from forked import run_forked
from impasto.training import TrainConfig, load_checkpoint, train
from impasto.training.loop import seed_everything

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, cfg: dict[str, Any], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(TrainConfig.from_dict(cfg), progress=False)
    task = result.task
    assert not dist.is_initialized()  # train() left the group it created
    # ... and handed back plain modules: the DDP reducers (which hold the group) were freed before it was destroyed
    assert not any(isinstance(v, torch.nn.parallel.DistributedDataParallel) for v in vars(task).values())
    assert task.model is task.net
    torch.save({"params": [p.detach().clone() for p in task.net.parameters()],
                "initial": task.initial, "records": task.records, "step": result.step},
               Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ddp")
    cfg = toy_config(root, steps=3, lr_decay=0.0, sample_every=2, checkpoint_every=2, log_every=1,
                     task_options={"noise": 0.0, "record": True})
    run_forked(_worker, (_free_port(), cfg.to_dict(), str(root)), WORLD)
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return cfg, ranks


def test_replicas_stay_identical_and_ranks_see_disjoint_data(ddp_run) -> None:
    cfg, ranks = ddp_run
    assert ranks[0]["step"] == ranks[1]["step"] == 3
    for a, b in zip(ranks[0]["params"], ranks[1]["params"], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ranks[0]["initial"], ranks[0]["params"], strict=True):
        assert not torch.equal(a, b)
    for r0, r1 in zip(ranks[0]["records"], ranks[1]["records"], strict=True):
        assert not torch.equal(r0["content"], r1["content"])
        assert not torch.equal(r0["style"], r1["style"])
    # only rank 0 wrote: one log line per step, samples and checkpoints with both ranks' RNG states
    out = Path(cfg.out_dir)
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    assert (out / "samples" / "step_0000002.png").is_file()
    ck = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert ck["step"] == 3 and ck["world_size"] == 2 and len(ck["rng"]) == 2
    assert ck["samplers"]["content"]["rank"] == 0 and ck["samplers"]["content"]["world_size"] == 2


def test_gradients_are_the_average_over_ranks(ddp_run) -> None:
    """Reference: one process on the concatenated batches (mean loss over 2B = average of rank means)."""
    cfg, ranks = ddp_run
    seed_everything(cfg.seed)
    task = ToyTask()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    for a, b in zip(task.initial, ranks[0]["initial"], strict=True):
        assert torch.equal(a, b)
    # rank 0's local gradient alone differs from the all-reduced one (so the check below is not vacuous)
    toy_loss(task.net, ranks[0]["records"][0]["content"], ranks[0]["records"][0]["style"]).backward()
    assert not torch.allclose(next(task.net.parameters()).grad, ranks[0]["records"][0]["grads"][0])
    for r0, r1 in zip(ranks[0]["records"], ranks[1]["records"], strict=True):
        task.opt.zero_grad()
        contents = torch.cat([r0["content"], r1["content"]])
        styles = torch.cat([r0["style"], r1["style"]])
        toy_loss(task.net, contents, styles).backward()
        grads = [p.grad for p in task.net.parameters()]
        for g_ref, g0, g1 in zip(grads, r0["grads"], r1["grads"], strict=True):
            assert torch.equal(g0, g1)  # all-reduced: the same on both ranks
            torch.testing.assert_close(g0, g_ref, rtol=1e-5, atol=1e-7)
        task.opt.step()
    for a, b in zip(task.net.parameters(), ranks[0]["params"], strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)
