"""The held-out evaluation script of style-swap inverse networks, on the committed model and real images."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "eval_style_swap_inverse.py"
MODEL = ROOT / "docs" / "training" / "style_swap_inverse" / "model.pt"

pytestmark = pytest.mark.weights


def _module():
    spec = importlib.util.spec_from_file_location("eval_style_swap_inverse", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_activation_losses_split_natural_and_swapped(data_dir: Path) -> None:
    from impasto.backbones import load_decoder, load_encoder

    mod = _module()
    photos = torch.cat([mod.square(p, 64) for p in sorted((data_dir / "content").iterdir())[:2]])
    paintings = torch.cat([mod.square(p, 64) for p in sorted((data_dir / "style").iterdir())[:2]])
    enc, dec = load_encoder("vgg19", "relu3_1"), load_decoder("vgg19", "relu3_1")
    r = mod.activation_losses(dec, enc, photos, paintings)
    assert set(r) == {"natural", "swapped", "all"}
    assert 0 < r["natural"] < r["swapped"]  # the reconstruction decoder inverts photos better than swaps
    assert r["all"] == pytest.approx((r["natural"] * 4 + r["swapped"] * 4) / 8)


def test_script_table_and_clean_error(data_dir: Path, weights_dir: Path) -> None:
    env = {"IMPASTO_WEIGHTS_DIR": str(weights_dir), "PATH": "/usr/bin:/bin"}
    args = [sys.executable, str(SCRIPT), "--data", str(data_dir), "--photos", "2", "--paintings", "2",
            "--size", "64"]
    ok = subprocess.run([*args, str(MODEL)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "pretrained relu3_1 reconstruction decoder" in ok.stdout and "(step 612)" in ok.stdout
    bad = subprocess.run([*args, "missing.pt"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "missing.pt" in bad.stderr and "Traceback" not in bad.stderr
