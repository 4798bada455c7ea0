"""The training loop: outputs, exact resumption, interruption, checkpoints, precision (toy task, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_train_toytask import ToyTask, toy_config

from impasto.errors import ConfigError, WeightsError
from impasto.training import TrainConfig, get_task, latest_checkpoint, load_checkpoint, train
from impasto.training.checkpoint import CheckpointManager, save_checkpoint
from impasto.training.logging import make_sample_grid, read_log


def _params(result) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result.task.net.parameters()]


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y), (x - y).abs().max()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """6 uninterrupted steps of the toy task (the run every resumed run must reproduce exactly)."""
    root = tmp_path_factory.mktemp("ref")
    cfg = toy_config(root)
    result = train(cfg, progress=False)
    return root, cfg, result


def test_run_writes_log_samples_config_and_checkpoints(reference) -> None:
    root, cfg, result = reference
    out = Path(cfg.out_dir)
    assert result.step == 6 and not result.interrupted
    assert result.task.calls == 6
    assert set(result.losses) == {"total", "reconstruction", "style"}
    # parameters moved away from their initial values
    assert any(not torch.equal(a, b) for a, b in zip(result.task.initial, _params(result), strict=True))
    # config.yaml = the resolved config
    assert TrainConfig.from_yaml(out / "config.yaml") == cfg
    # one JSONL line per step with step, time, lr (decayed lr / (1 + 0.1 step)), losses
    records = read_log(out / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert {"step", "time", "elapsed", "lr", "losses"} <= set(r)
        assert r["lr"]["net"] == pytest.approx(1e-2 / (1 + 0.1 * (r["step"] - 1)))
        assert set(r["losses"]) == {"total", "reconstruction", "style"}
    # sample grids every 3 steps: (2 + 1) x (2 + 1) cells of 24 px with 2 px padding
    for step in (3, 6):
        with Image.open(out / "samples" / f"step_{step:07d}.png") as im:
            assert im.size == (3 * 26 + 2, 3 * 26 + 2)
    # checkpoints every 2 steps, only the last 2 kept, latest = step 6
    ckdir = out / "checkpoints"
    assert sorted(p.name for p in ckdir.glob("step_*.pt")) == ["step_0000004.pt", "step_0000006.pt"]
    assert latest_checkpoint(out) == ckdir / "latest.pt"
    assert result.checkpoint == ckdir / "step_0000006.pt"
    ck = load_checkpoint(ckdir / "latest.pt")
    assert ck["step"] == 6 and ck["task"] == "toy-autoencoder"
    assert {"config", "model", "modules", "optimizers", "samplers", "rng", "data", "task_state"} <= set(ck)
    assert ck["samplers"]["content"]["index"] == 12 and ck["samplers"]["style"]["index"] == 12
    assert ck["task_state"] == {"calls": 6}
    assert {"torch", "numpy", "python", "cuda"} <= set(ck["rng"][0])
    assert not list(ckdir.glob("*.tmp"))


def test_checkpoint_alone_rebuilds_the_model(reference) -> None:
    _, _, result = reference
    ck = load_checkpoint(result.checkpoint)
    cfg = TrainConfig.from_dict(ck["config"])
    task = get_task(cfg.task)()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    task.net.load_state_dict(ck["model"]["net"])
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(task.net(x), result.task.net(x))


def test_resume_reproduces_uninterrupted_run_exactly(reference, tmp_path: Path) -> None:
    root, cfg, ref = reference
    cfg2 = toy_config(root, out=f"split_{tmp_path.name}")
    first = train(cfg2, max_steps=3, progress=False)
    assert first.step == 3 and load_checkpoint(first.checkpoint)["step"] == 3
    # (a different result after 3 steps than after 6, so the comparison below is not vacuous)
    assert not all(torch.equal(a, b) for a, b in zip(_params(first), _params(ref), strict=True))
    second = train(cfg2, resume=True, progress=False)
    assert second.step == 6 and second.task.calls == 6
    _assert_same(_params(second), _params(ref))
    # the optimizer states agree too, and the log has each step once with identical losses
    ck_ref, ck = load_checkpoint(ref.checkpoint), load_checkpoint(second.checkpoint)
    for k, v in ck_ref["optimizers"]["net"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(v[name], ck["optimizers"]["net"]["state"][k][name])
    log_ref = read_log(Path(cfg.out_dir) / "log.jsonl")
    log = read_log(Path(cfg2.out_dir) / "log.jsonl")
    assert [r["losses"] for r in log] == [r["losses"] for r in log_ref]


def test_resume_from_a_checkpoint_path_with_config_from_the_checkpoint(reference, tmp_path: Path) -> None:
    root, _, ref = reference
    cfg2 = toy_config(root, out=f"path_{tmp_path.name}")
    train(cfg2, max_steps=4, progress=False)
    path = Path(cfg2.out_dir) / "checkpoints" / "step_0000004.pt"
    result = train(None, resume=path, progress=False)
    _assert_same(_params(result), _params(ref))


def test_data_workers_and_progress_bar_do_not_change_the_result(reference, fork_safe) -> None:
    root, _, ref = reference
    result = train(toy_config(root, out="workers", num_workers=1), progress=True)
    _assert_same(_params(result), _params(ref))


def test_a_different_seed_gives_different_parameters(reference) -> None:
    root, _, ref = reference
    other = train(toy_config(root, out="seed9", seed=9), max_steps=6, progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(_params(other), _params(ref), strict=True))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(reference, sig: str) -> None:
    root, _, ref = reference
    cfg = toy_config(root, out=f"sig_{sig}", task_options={"noise": 0.05, "interrupt_at": 2,
                                                           "interrupt_signal": sig})
    stopped = train(cfg, progress=False)
    assert stopped.interrupted and stopped.step == 3  # the step during which the signal came is finished
    assert stopped.signal == sig
    ck = load_checkpoint(latest_checkpoint(cfg.out_dir))
    assert ck["step"] == 3
    cfg_resume = cfg.with_overrides(["task_options.interrupt_at=-1"])
    resumed = train(cfg_resume, resume=True, progress=False)
    assert not resumed.interrupted and resumed.step == 6
    _assert_same(_params(resumed), _params(ref))


def test_keyboard_interrupt_exception_leaves_last_checkpoint_loadable(reference) -> None:
    root, _, ref = reference
    cfg = toy_config(root, out="kbd", task_options={"noise": 0.05, "raise_at": 3})
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    ck = load_checkpoint(latest_checkpoint(cfg.out_dir))
    assert ck["step"] == 2  # the periodic checkpoint before the interrupted step 4
    resumed = train(cfg.with_overrides(["task_options.raise_at=-1"]), resume=True, progress=False)
    _assert_same(_params(resumed), _params(ref))
    assert [r["step"] for r in read_log(Path(cfg.out_dir) / "log.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_new_run_refuses_an_out_dir_with_checkpoints(reference) -> None:
    _, cfg, _ = reference
    with pytest.raises(ConfigError, match="resume"):
        train(cfg, progress=False)


def test_resume_with_another_task_is_refused(reference, tmp_path: Path) -> None:
    _, _, ref = reference
    ck = load_checkpoint(ref.checkpoint)
    ck["task"] = "something-else"
    path = save_checkpoint(ck, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="something-else"):
        train(toy_config(tmp_path), resume=path, progress=False)


@pytest.mark.bf16
def test_bf16_autocast_on_cpu_runs(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, precision="bf16", steps=2, sample_every=0, checkpoint_every=0)
    seen = []

    class Probe(ToyTask):
        def sample(self, contents, styles):  # pragma: no cover - not called (sample_every=0)
            return contents

        def training_step(self, batch, step):
            with self.autocast():
                seen.append(self.model(batch["content"]).dtype)
            return super().training_step(batch, step)

    result = train(cfg, task=Probe, progress=False)
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())


def test_grad_scaler_plumbing_checkpoint_and_resume(reference, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GradScaler (as under fp16 on CUDA) on fp32 CPU gradients: scaling by 2**16 and unscaling is
    exact, so the result equals the reference; the scaler state is checkpointed and restored."""
    import impasto.training.loop as loop

    root, _, ref = reference
    monkeypatch.setattr(loop, "amp_settings", lambda precision: (None, True))
    cfg = toy_config(root, out="scaler")
    train(cfg, max_steps=3, progress=False)
    ck = load_checkpoint(latest_checkpoint(cfg.out_dir))
    assert ck["scaler"] is not None and ck["scaler"]["scale"] == 2.0**16
    result = train(cfg, resume=True, progress=False)
    assert result.task.scaler is not None
    _assert_same(_params(result), _params(ref))


def test_bad_precision_device_and_missing_styles_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fp16"):
        train(toy_config(tmp_path, out="a", precision="fp16"), progress=False)
    with pytest.raises(ConfigError, match="style_dir"):
        train(toy_config(tmp_path, out="b", style_dir=None), progress=False)
    with pytest.raises(ConfigError, match="known tasks"):
        train(toy_config(tmp_path, out="c", task="no-such-task"), progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            train(toy_config(tmp_path, out="d", device="cuda"), progress=False)


def test_checkpoint_manager_keeps_last_k_and_writes_atomically(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3):
        manager.save({"format": "impasto-train-checkpoint", "version": 1, "step": step}, step)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest.pt", "step_0000002.pt", "step_0000003.pt"]
    assert load_checkpoint(tmp_path)["step"] == 3

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    target = tmp_path / "checkpoints" / "latest.pt"
    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"x": Unpicklable()}, target)
    assert load_checkpoint(target)["step"] == 3  # previous file intact
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"decoder": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match="not an impasto training checkpoint"):
        load_checkpoint(other)


def test_sample_grid_layout_by_hand() -> None:
    contents = torch.zeros(2, 3, 4, 4)
    styles = torch.full((3, 3, 4, 4), 0.5)
    outputs = torch.stack([torch.full((3, 4, 4), (i * 3 + j) / 10) for i in range(2) for j in range(3)])
    grid = make_sample_grid(contents, styles, outputs, pad=1)
    assert grid.shape == (3, 3 * 5 + 1, 4 * 5 + 1)
    assert float(grid[0, 1, 1]) == 1.0  # top-left cell is blank (white)
    assert float(grid[0, 1, 6]) == 0.5  # style 0 in the header row
    assert float(grid[0, 6, 1]) == 0.0  # content 0 in the left column
    assert float(grid[0, 11, 16]) == pytest.approx(0.5)  # content 1 x style 2 = output 5
    assert float(grid[0, 0, 0]) == 1.0  # padding


def test_log_file_is_jsonl(reference) -> None:
    _, cfg, _ = reference
    lines = (Path(cfg.out_dir) / "log.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def _tampered_checkpoint(root: Path, out: str, tamper) -> Path:
    """Train a toy run 2 steps into ``out``, apply ``tamper(checkpoint dict)`` to its step-2 checkpoint, save it."""
    cfg = toy_config(root, out=out)
    train(cfg, max_steps=2, progress=False)
    path = Path(cfg.out_dir) / "checkpoints" / "step_0000002.pt"
    ck = torch.load(path, weights_only=False)
    tamper(ck)
    torch.save(ck, path)
    return path


def test_resume_with_a_mismatching_checkpoint_is_a_clear_error(reference, tmp_path: Path) -> None:
    def rename(ck: dict) -> None:  # another architecture
        name = next(iter(ck["modules"]))
        ck["modules"][name] = {k + "_renamed": v for k, v in ck["modules"][name].items()}

    path = _tampered_checkpoint(reference[0], f"mismatch_{tmp_path.name}", rename)
    with pytest.raises(ConfigError, match="does not match the model"):
        train(None, resume=path, progress=False)


def test_resume_with_another_optimizer_layout_is_a_clear_error(reference, tmp_path: Path) -> None:
    """A config that changes the optimizer's parameter groups (e.g. iecontraast's aux_lr set on resume) is refused
    with what to do, not a traceback from torch."""
    def add_group(ck: dict) -> None:  # one parameter group more
        groups = next(iter(ck["optimizers"].values()))["param_groups"]
        groups.append(dict(groups[0], params=[]))

    path = _tampered_checkpoint(reference[0], f"optmismatch_{tmp_path.name}", add_group)
    with pytest.raises(ConfigError, match="optimizer does not match.*init_checkpoint"):
        train(None, resume=path, progress=False)
