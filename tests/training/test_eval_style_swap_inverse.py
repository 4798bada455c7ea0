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


def test_validation_pairs_report(data_dir: Path, weights_dir: Path, tmp_path: Path) -> None:
    """--pairs: style-swap images of the reconstruction decoder and the committed inverse network on validation
    pairs, scored and compared pair by pair, with a CSV row per decoder and pair and a picture sheet."""
    import csv

    env = {"IMPASTO_WEIGHTS_DIR": str(weights_dir), "PATH": "/usr/bin:/bin"}
    out = tmp_path / "ssi"
    r = subprocess.run([sys.executable, str(SCRIPT), str(MODEL), "--data", str(data_dir), "--pairs", "6",
                        "--size", "96", "--out", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    md = (out / "quality.md").read_text()
    assert "**inverse net step 612** vs **reconstruction decoder**" in md
    for measure in ("sharpness", "swap_loss", "edges", "grid", "reconstruction_psnr"):
        assert f"| {measure} (" in md
    rows = list(csv.DictReader(open(out / "quality.csv")))
    assert len(rows) == 12 and {r["decoder"] for r in rows} == {"reconstruction decoder", "inverse net step 612"}
    for row in rows:
        assert float(row["sharpness"]) > 0 and float(row["swap_loss"]) > 0 and -1 <= float(row["edges"]) <= 1
    # the reconstruction decoder was trained to invert natural activations: it reconstructs the photos better
    rec = {(r["photo"], r["painting"]): float(r["reconstruction_psnr"]) for r in rows
           if r["decoder"] == "reconstruction decoder"}
    inv = {(r["photo"], r["painting"]): float(r["reconstruction_psnr"]) for r in rows
           if r["decoder"] == "inverse net step 612"}
    assert sum(rec[k] > inv[k] for k in rec) >= 4
    from PIL import Image

    assert Image.open(out / "sheet.jpg").size == (4 * 256, 4 * 256)
    bad = subprocess.run([sys.executable, str(SCRIPT), str(MODEL), "--data", str(data_dir), "--pairs", "0"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "--pairs" in bad.stderr
