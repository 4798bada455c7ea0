"""The ``adain`` training task, the model file it writes, ``impasto train`` and ``stylize --checkpoint``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import impasto
from impasto.cli import app
from impasto.errors import ConfigError
from impasto.methods.common import load_impasto_checkpoint
from impasto.training.config import TrainConfig
from impasto.training.tasks.adain import AdaINTask, style_layers
from impasto.training.tasks.common import task_options

pytestmark = pytest.mark.weights


def make_folder(root: Path, n: int, seed: int, size: int = 48) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = (rng.random((size, size + 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"img{i}.png")
    return root


def built(task_cls, tmp_path: Path, **opts) -> AdaINTask:
    cfg = TrainConfig(task=task_cls.name, out_dir=str(tmp_path / "run"), crop=32, size=48, batch_size=2,
                      task_options=opts)
    task = task_cls()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    return task


def check_gradients(task, frozen) -> None:
    """Every trainable parameter got a non-zero gradient; no frozen module has parameters with gradients."""
    for name, module in task.trainable_modules().items():
        for pname, p in module.named_parameters():
            assert p.grad is not None, f"{name}.{pname} got no gradient"
            assert p.grad.abs().sum() > 0, f"{name}.{pname} got a zero gradient"
    for module in frozen:
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None


def test_style_layers() -> None:
    assert style_layers("relu4_1") == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    assert style_layers("relu3_1") == ["relu1_1", "relu2_1", "relu3_1"]


@pytest.mark.parametrize("opts", [{"style_loss": "classic"}, {"style_loss": "balanced"}, {"style_loss": "gram"},
                                  {"loss_network": "aux"}, {"loss_network": "vgg19"},
                                  {"encoder": "vgg19", "init_decoder": "random"}])
def test_adain_gradients(weights_dir: Path, tmp_path: Path, opts: dict) -> None:
    torch.manual_seed(0)
    task = built(AdaINTask, tmp_path, **opts)
    batch = {"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}
    losses = task.training_step(batch, 0)
    assert set(losses) == {"content", "style", "total"}
    w = task.style_weight
    assert losses["total"] == pytest.approx(losses["content"] + w * losses["style"], rel=1e-4)
    if opts.get("style_loss") == "balanced":
        assert 0 < losses["style"] <= 4.0 and w == 800.0  # 4 layers, each ratio in [0, 1]
    if opts.get("style_loss") == "gram":
        assert w == 57.0 and losses["style"] > 0
    check_gradients(task, [task.encoder, task.loss_net])
    assert task.depth == ("relu3_1" if opts.get("encoder") == "vgg19" else "relu4_1")
    out = task.sample(batch["content"], batch["style"])
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_adain_loss_falls_on_one_batch(weights_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = built(AdaINTask, tmp_path)
    batch = {"content": torch.rand(2, 3, 32, 32), "style": torch.rand(2, 3, 32, 32)}
    first = task.training_step(batch, 0)["total"]
    for i in range(1, 8):
        last = task.training_step(batch, i)["total"]
    assert last < first


def test_model_file_and_stylize(weights_dir: Path, tmp_path: Path, monkeypatch) -> None:
    content = make_folder(tmp_path / "c", 3, 1)
    style = make_folder(tmp_path / "s", 3, 2)
    out = tmp_path / "run"
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "adain", "--content", str(content), "--style", str(style), "--out",
                              str(out), "--steps", "2", "size=48", "crop=32", "batch_size=2", "sample_every=0",
                              "task_options.style_loss=balanced"])
    assert res.exit_code == 0, res.output
    model = torch.load(out / "model.pt", weights_only=False)
    assert model["format"] == "impasto-model" and model["method"] == "adain"
    assert (model["encoder"], model["depth"], model["step"]) == ("vgg19-16x", "relu4_1", 2)
    assert model["decoder_widths"] == [16, 32, 64, 128, 128] and model["decoder_first_width"] is None
    assert model["config"]["task_options"]["style_loss"] == "balanced"
    assert all(v.dtype == torch.float32 for v in model["decoder"].values())
    # the full training checkpoint is accepted too and gives the same model
    full = load_impasto_checkpoint(out / "checkpoints" / "latest.pt")
    assert torch.equal(full["decoder"]["convs.conv1_1.weight"], model["decoder"]["convs.conv1_1.weight"])
    dest = tmp_path / "styl.png"
    res = runner.invoke(app, ["stylize", str(content / "img0.png"), "-s", str(style / "img1.png"), "-m", "adain",
                              "--checkpoint", str(out / "model.pt"), "-o", str(dest)])
    assert res.exit_code == 0, res.output
    assert Image.open(dest).size == (56, 48)
    # resuming continues from step 2
    res = runner.invoke(app, ["train", "adain", "--content", str(content), "--style", str(style), "--out",
                              str(out), "--steps", "3", "--resume", "size=48", "crop=32", "batch_size=2",
                              "sample_every=0", "task_options.style_loss=balanced"])
    assert res.exit_code == 0, res.output
    assert torch.load(out / "model.pt", weights_only=False)["step"] == 3


@pytest.mark.parametrize("args, message", [
    (["task_options.style_loss=gramm"], "style_loss"),
    (["task_options.nonsense=1"], "unknown task option"),
    (["nonsense=1"], "unknown configuration key"),
    (["crop=abc"], "crop must be an integer"),
    (["task_options.loss_network=aux", "task_options.encoder=vgg19"], "aux"),
])
def test_bad_config_is_a_clear_error(weights_dir: Path, tmp_path: Path, args: list, message: str) -> None:
    content = make_folder(tmp_path / "c", 2, 1)
    res = CliRunner().invoke(app, ["train", "adain", "--content", str(content), "--style", str(content),
                                   "--out", str(tmp_path / "r"), "--steps", "1", "size=48", "crop=32",
                                   "batch_size=2", *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())


def test_unknown_task_and_missing_folder(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "nope", "--content", str(tmp_path)])
    assert res.exit_code == 2 and "known tasks" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["train", "adain", "--content", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a folder" in " ".join(res.output.split())


def test_task_options_types() -> None:
    cfg = TrainConfig(task="adain", task_options={"style_weight": "5", "init_decoder": "random"})
    opts = task_options(cfg, {"style_weight": 1.0, "init_decoder": "pretrained"},
                        {"init_decoder": ("pretrained", "random")})
    assert opts == {"style_weight": 5.0, "init_decoder": "random"}
    with pytest.raises(ConfigError, match="must be a number"):
        task_options(TrainConfig(task="adain", task_options={"style_weight": "x"}), {"style_weight": 1.0})


@pytest.mark.parametrize("resume", [False, True])
def test_out_that_is_a_file_is_a_clear_error(tmp_path: Path, resume: bool) -> None:
    # was a FileExistsError / NotADirectoryError traceback from the run folder's mkdir
    content = make_folder(tmp_path / "c", 2, 1)
    (tmp_path / "notes.txt").write_text("mine")
    for out, message in ((tmp_path / "notes.txt", "notes.txt is a file"),
                         (tmp_path / "notes.txt" / "run", "which is a file")):
        res = CliRunner().invoke(app, ["train", "adain", "--content", str(content), "--style", str(content),
                                       "--out", str(out), "--steps", "1", *(["--resume"] if resume else [])])
        text = " ".join(res.output.split())
        assert res.exit_code == 2 and message in text and "choose a folder path for the run (--out)" in text, text
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_threads_must_be_positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --threads 0 was silently taken as "not given"; a non-number in IMPASTO_TRAIN_THREADS was a ValueError
    content = make_folder(tmp_path / "c", 2, 1)
    args = ["train", "adain", "--content", str(content), "--style", str(content), "--out", str(tmp_path / "r"),
            "--steps", "1"]
    res = CliRunner().invoke(app, [*args, "--threads", "0"])
    assert res.exit_code == 2 and "--threads must be >= 1 (got 0)" in " ".join(res.output.split())
    monkeypatch.setenv("IMPASTO_TRAIN_THREADS", "many")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "IMPASTO_TRAIN_THREADS must be a whole number" in " ".join(res.output.split())
    assert not (tmp_path / "r").exists()


def _train_cmd(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    import sys

    content, style = make_folder(tmp_path / "c", 3, 0), make_folder(tmp_path / "s", 3, 1)
    return [sys.executable, "-m", "impasto.cli", "train", "adain", "--content", str(content), "--style", str(style),
            "--out", str(out), "--threads", "1", "size=48", "crop=32", "batch_size=2", "sample_every=0",
            "log_every=1", *extra]


def test_default_style_loss_is_the_shipped_models_balanced_loss() -> None:
    """`impasto train adain` with no options trains what ships: the balanced loss at its weight (was the mean/std
    "classic" loss, which a GPU run used by mistake and which measured worse)."""
    from impasto.training.tasks.adain import ADAIN_DEFAULTS, BALANCED_STYLE_WEIGHT

    assert ADAIN_DEFAULTS["style_loss"] == "balanced"
    shipped = json.loads((Path(impasto.__file__).parent / "checkpoints" / "adain_vgg19-16x_relu4_1.json").read_text())
    assert shipped["config"]["task_options"]["style_loss"] == ADAIN_DEFAULTS["style_loss"]
    assert BALANCED_STYLE_WEIGHT == 800.0  # the weight the shipped model was trained with (its card's note)


def test_sigterm_stops_with_exit_143_and_model_file_matches_checkpoint(weights_dir: Path, tmp_path: Path) -> None:
    """SIGTERM: a checkpoint, then exit 143 (was 0, like a finished run); model.pt holds the checkpoint's step."""
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(tmp_path, out, "--steps", "100000", "checkpoint_every=3"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "log.jsonl").is_file() and (out / "model.pt").is_file()):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output
    from impasto.training import latest_checkpoint, load_checkpoint

    ck = load_checkpoint(latest_checkpoint(out))
    assert load_impasto_checkpoint(out / "model.pt")["step"] == ck["step"] > 0
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporaries left


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_to_the_process_group_with_loader_workers_still_checkpoints(weights_dir: Path, tmp_path: Path,
                                                                         sig: str) -> None:
    """`timeout`, Ctrl-C, Slurm and Kubernetes signal the whole process group, data-loader workers too. The workers
    died first and the loader's SIGCHLD check broke the final checkpoint ("DataLoader worker ... is killed by
    signal: Terminated", reported as a disk error, exit 2). Now the workers ignore the signal: the run stops after
    its step, writes the checkpoint and exits 143 / 130."""
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(tmp_path, out, "--steps", "100000", "checkpoint_every=1000", "num_workers=2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "log.jsonl").is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, getattr(signal, sig))
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == (143 if sig == "SIGTERM" else 130), output
    assert "DataLoader worker" not in output and "Traceback" not in output, output
    from impasto.training import latest_checkpoint, load_checkpoint

    ck = load_checkpoint(latest_checkpoint(out))
    assert 0 < ck["step"] < 1000  # the checkpoint written on the signal, not a periodic one
    assert load_impasto_checkpoint(out / "model.pt")["step"] == ck["step"]


def test_full_disk_during_a_checkpoint_is_a_clear_error(weights_dir: Path, tmp_path: Path) -> None:
    """A file-size limit (as a full disk: writes fail with EFBIG) during the first checkpoint: one message naming the
    folder and --resume, exit 2, no traceback and no partial temporary (was a RuntimeError traceback from torch.save
    and a leftover .model.pt.tmpNNNN)."""
    import resource
    import signal
    import subprocess

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = tmp_path / "run"
    r = subprocess.run(_train_cmd(tmp_path, out, "--steps", "4", "checkpoint_every=2"), capture_output=True,
                       text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot write the checkpoint of step 2" in r.stderr and "--resume" in r.stderr
    assert "Traceback" not in r.stderr
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file()]
