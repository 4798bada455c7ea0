"""impasto's model files (impasto.modelfile): safetensors and .pt, cards, wrong kinds, damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from impasto.cli import app
from impasto.errors import WeightsError
from impasto.modelfile import (
    average_models,
    card_warning,
    check_kind,
    default_card,
    describe_model,
    load_model,
    save_model,
)


def tiny_state(method: str = "adain") -> dict:
    return {"format": "impasto-model", "method": method, "encoder": "vgg19-16x", "depth": "relu4_1",
            "decoder": {"convs.conv1_1.weight": torch.randn(3, 16, 3, 3), "convs.conv1_1.bias": torch.zeros(3)},
            "transform": {"merge_conv.weight": torch.randn(4, 4, 3, 3)},
            "decoder_widths": [16, 32, 64, 128, 128], "decoder_first_width": None,
            "config": {"task": method, "steps": 10, "task_options": {"style_loss": "balanced"}}, "step": 10}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    state = tiny_state()
    path = save_model(state, tmp_path / f"m{suffix}", card={"scale": "trained", "steps": 10})
    back = load_model(path)
    for group in ("decoder", "transform"):
        assert set(back[group]) == set(state[group])
        for k, v in state[group].items():
            assert torch.equal(back[group][k], v)
    assert back["config"] == state["config"] and back["card"]["scale"] == "trained"
    assert back["decoder_first_width"] is None and back["step"] == 10
    if suffix == ".safetensors":  # the readable JSON beside it holds the same description
        import json

        meta = json.loads((tmp_path / "m.json").read_text())
        assert meta["method"] == "adain" and "decoder" not in meta
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_average_is_the_elementwise_mean_and_refuses_other_runs() -> None:
    a, b, c = tiny_state(), tiny_state(), tiny_state()
    b["step"], c["step"] = 20, 30
    c["card"] = {"scale": "trained"}
    b["transform"]["merge_conv.weight"] = b["transform"]["merge_conv.weight"].to(torch.bfloat16)
    avg = average_models([a, b, c])
    for group in ("decoder", "transform"):
        for k in a[group]:
            want = (a[group][k].float() + b[group][k].float() + c[group][k].float()) / 3
            assert torch.allclose(avg[group][k].float(), want.to(c[group][k].dtype).float())
            assert avg[group][k].dtype == c[group][k].dtype
    assert avg["step"] == 30 and "card" not in avg and avg["config"] == c["config"]
    assert torch.equal(average_models([a])["decoder"]["convs.conv1_1.bias"], a["decoder"]["convs.conv1_1.bias"])
    with pytest.raises(WeightsError, match="method 'sanet'.*one run"):
        average_models([tiny_state("sanet"), a])
    d = tiny_state()
    d["decoder"]["convs.conv1_1.weight"] = torch.randn(3, 8, 3, 3)
    with pytest.raises(WeightsError, match="decoder tensors differ"):
        average_models([a, d])
    with pytest.raises(WeightsError, match="at least one"):
        average_models([])


def test_average_script_writes_a_loadable_model_with_its_lineage(tmp_path: Path) -> None:
    import subprocess
    import sys

    paths = []
    for step in (10, 20):
        st = tiny_state()
        st["step"] = step
        paths.append(str(save_model(st, tmp_path / f"m{step}.pt")))
    script = Path(__file__).resolve().parents[2] / "scripts" / "average_models.py"
    out = tmp_path / "avg.safetensors"
    done = subprocess.run([sys.executable, str(script), *paths, "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    back = load_model(out)
    want = (load_model(paths[0])["decoder"]["convs.conv1_1.weight"]
            + load_model(paths[1])["decoder"]["convs.conv1_1.weight"]) / 2
    assert torch.allclose(back["decoder"]["convs.conv1_1.weight"], want)
    assert back["step"] == 20 and back["card"]["averaged"]["steps"] == [10, 20]
    bad = subprocess.run([sys.executable, str(script), paths[0], str(tmp_path / "missing.pt"), "-o",
                          str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.pt does not exist" in bad.stderr
    assert not (tmp_path / "x.pt").exists()
    (tmp_path / "afile").write_text("mine")
    blocked = subprocess.run([sys.executable, str(script), paths[0], "-o", str(tmp_path / "afile" / "avg.pt")],
                             capture_output=True, text=True)
    assert blocked.returncode == 2 and "cannot write" in blocked.stderr and "Traceback" not in blocked.stderr
    assert (tmp_path / "afile").read_text() == "mine"


def test_damaged_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="bad.safetensors.*damaged"):
        load_model(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="without impasto's model description"):
        load_model(tmp_path / "other.safetensors")
    pt = tmp_path / "x.pt"
    pt.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read checkpoint .*x.pt"):
        load_model(pt)
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_wrong_kind_names_what_it_is() -> None:
    ck = tiny_state("sanet")
    msg = r"m.pt is an impasto sanet model .* not an adain model: run it with -m sanet"
    with pytest.raises(WeightsError, match=msg):
        check_kind(ck, "m.pt", "adain", ("adain",))
    check_kind(ck, "m.pt", "iecontraast", ("sanet", "iecontraast"))  # same architecture: accepted
    assert "transformer" in describe_model({"sanet4_1.f.weight": torch.zeros(1)})


def test_smoke_card_warns() -> None:
    assert default_card(60, {})["scale"] == "smoke" and default_card(5000, {})["scale"] == "trained"
    assert "smoke-scale" in card_warning({"card": default_card(60, {})}, "m.pt")
    assert card_warning({"card": default_card(5000, {})}, "m.pt") is None
    assert card_warning({}, "m.pt") is None


@pytest.mark.weights
def test_cli_warns_on_smoke_model_and_refuses_wrong_kind(weights_dir: Path, tmp_path: Path, content_path: Path,
                                                         style_path: Path) -> None:
    from impasto.training.config import TrainConfig
    from impasto.training.tasks.sanet import SANetTask

    cfg = TrainConfig(task="sanet", out_dir=str(tmp_path / "run"), crop=32, size=32, batch_size=1, steps=1)
    task = SANetTask()
    task.bind(cfg, torch.device("cpu"))
    task.build(cfg, torch.device("cpu"))
    task.step_done = 1
    task.model_state()
    model = tmp_path / "run" / "model.pt"
    runner = CliRunner()
    r = runner.invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-m", "adain", "--checkpoint",
                            str(model), "-o", str(tmp_path / "o.png"), "--max-size", "64"])
    text = " ".join(r.output.split())  # the console wraps long lines at the terminal's width
    assert r.exit_code == 2 and "is an impasto sanet model" in text and "-m sanet" in text
    r = runner.invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-m", "sanet", "--checkpoint",
                            str(model), "-o", str(tmp_path / "o.png"), "--max-size", "64"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "warning:" in text and "smoke-scale" in text


def test_package_model_keeps_paths_relative_to_the_repository() -> None:
    """scripts/package_model.py writes cards that name no machine's directories: paths inside the checkout become
    relative to it, its siblings' (../shared, ../runs) start with ../; other values pass through."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("package_model", root / "scripts" / "package_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.portable(str(root / "docs" / "models" / "validation_split.txt")) == "docs/models/validation_split.txt"
    assert mod.portable(str(root.parent / "shared" / "data" / "corpus")) == "../shared/data/corpus"
    assert mod.portable("runs/x/model.pt") == "runs/x/model.pt"
    assert mod.portable(3.0) == 3.0
