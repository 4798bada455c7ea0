"""Tiny end-to-end runs of the evaluation studies (impasto.evaluation.studies) and the evaluate command."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from impasto.errors import ConfigError
from impasto.evaluation.studies import (
    _per_style_spread,
    _sample_pairs,
    make_context,
    parse_studies,
    run_evaluation,
)
from impasto.modelfile import load_model

pytestmark = pytest.mark.weights


def _small_copies(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg"))[:n]
    for p in files:
        im = Image.open(p).convert("RGB")
        im.thumbnail((64, 64))
        im.save(dst / f"{p.stem}.png")
    return dst


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaldata")
    return (_small_copies(data_dir / "content", root / "content", 3),
            _small_copies(data_dir / "style", root / "style", 3))


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _run(tiny_dirs: tuple[Path, Path], out: Path, seed: int = 0, studies=(1, 2, 4, 6)) -> dict:
    torch.set_num_threads(1)
    ctx = make_context(tiny_dirs[0], tiny_dirs[1], ["adain", "microast"], pairs=4, seed=seed, max_size=64)
    return run_evaluation(ctx, out, studies, command="test", time_size=(32, 48), gatys_steps=2)


def test_sample_pairs_deterministic_and_distinct() -> None:
    a, b = _sample_pairs(5, 7, 10, seed=3), _sample_pairs(5, 7, 10, seed=3)
    assert a == b and len(set(a)) == 10
    assert all(0 <= c < 5 and 0 <= s < 7 for c, s in a)
    assert _sample_pairs(5, 7, 10, seed=4) != a
    assert len(_sample_pairs(2, 2, 10, seed=0)) == 4  # capped at all pairs


def test_per_style_spread_hand_computed() -> None:
    rows = [{"style": "a", "v": 1.0}, {"style": "a", "v": 3.0}, {"style": "b", "v": 10.0}]
    assert _per_style_spread(rows, "v") == (2.0, 10.0, 5.0)


def test_studies_write_files_finite_and_bounded(tiny_dirs, tmp_path: Path) -> None:
    res = _run(tiny_dirs, tmp_path / "r")
    for name in ("report.md", "study1_losses.csv", "study1_hist.png", "study2_correlation.csv",
                 "study2_scatter.png", "study4_consistency.csv", "study4_distances.png", "study6_timing.csv",
                 "study6_timing.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    rows = _read(tmp_path / "r" / "study1_losses.csv")
    assert len(rows) == 8  # 2 methods x 4 pairs
    for r in rows:
        for k in ("classic", "balanced", "sup"):
            for layer in ("relu1_1", "relu2_1", "relu3_1"):
                assert math.isfinite(float(r[f"{k}_{layer}"])) and float(r[f"{k}_{layer}"]) >= 0
        for layer in ("relu1_1", "relu2_1", "relu3_1"):
            bal, cl, sup = (float(r[f"{k}_{layer}"]) for k in ("balanced", "classic", "sup"))
            assert bal <= 1.0
            assert cl / sup == pytest.approx(bal, rel=1e-3)  # balanced = classic / supremum
    cons = _read(tmp_path / "r" / "study4_consistency.csv")
    assert [r["encoder"] for r in cons][0].startswith("vgg19 ")
    assert all(0.0 <= float(r["fraction"]) <= 1.0 for r in cons)
    assert all(float(r["seconds"]) > 0 for r in _read(tmp_path / "r" / "study6_timing.csv"))
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Findings" in text and "## Study 1" in text and "## Study 6" in text
    assert np.isfinite([s["classic_median"] for s in res[1]["summary"]]).all()


def test_same_seed_same_numbers_other_seed_other_pairs(tiny_dirs, tmp_path: Path) -> None:
    _run(tiny_dirs, tmp_path / "a", seed=1, studies=(1, 4))
    _run(tiny_dirs, tmp_path / "b", seed=1, studies=(1, 4))
    _run(tiny_dirs, tmp_path / "c", seed=2, studies=(1,))
    for name in ("study1_losses.csv", "study4_consistency.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    a, c = _read(tmp_path / "a" / "study1_losses.csv"), _read(tmp_path / "c" / "study1_losses.csv")
    assert [(r["content"], r["style"]) for r in a] != [(r["content"], r["style"]) for r in c]


def test_video_study_and_floor(tiny_dirs, tmp_path: Path, data_dir: Path) -> None:
    vdir = tmp_path / "video"
    frames = vdir / "clip"
    frames.mkdir(parents=True)
    src = sorted((data_dir / "video" / "mountain_2").iterdir())[:3]
    for p in src:
        im = Image.open(p).convert("RGB")
        im.thumbnail((64, 64))
        im.save(frames / f"{p.stem}.png")
    ctx = make_context(tiny_dirs[0], tiny_dirs[1], ["microast"], pairs=2, max_size=64, video_dir=vdir)
    res = run_evaluation(ctx, tmp_path / "r", [5], video_frames=3)
    rows = res[5]["rows"]
    assert [r["method"] for r in rows] == ["unstylised (floor)", "microast"]
    assert all(math.isfinite(r["warping_error"]) and r["warping_error"] >= 0 for r in rows)
    assert (tmp_path / "r" / "study5_warping.png").is_file()


def test_bad_options_raise_clear_errors(tiny_dirs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--methods: unknown method 'nope'"):
        make_context(tiny_dirs[0], tiny_dirs[1], ["nope"])
    with pytest.raises(ConfigError, match="--pairs"):
        make_context(tiny_dirs[0], tiny_dirs[1], ["adain"], pairs=1)
    with pytest.raises(ConfigError, match="--content"):
        make_context(tmp_path / "missing", tiny_dirs[1], ["adain"])
    with pytest.raises(ConfigError, match="--studies"):
        parse_studies("1,9")
    ctx = make_context(tiny_dirs[0], tiny_dirs[1], ["adain"], pairs=2, max_size=64)
    with pytest.raises(ConfigError, match="--checkpoint-classic"):
        run_evaluation(ctx, tmp_path / "r", [3])
    with pytest.raises(ConfigError, match="--video"):
        run_evaluation(ctx, tmp_path / "r", [5])


def test_cli_evaluate_runs_and_reports_bad_option(tiny_dirs, tmp_path: Path) -> None:
    from impasto.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--content", str(tiny_dirs[0]), "--style", str(tiny_dirs[1]),
                              "--out", str(tmp_path / "r"), "--methods", "microast", "--pairs", "2",
                              "--max-size", "64", "--studies", "1,2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.md").read_text().count("## Study") == 2
    bad = runner.invoke(app, ["evaluate", "--content", str(tiny_dirs[0]), "--style", str(tiny_dirs[1]),
                              "--out", str(tmp_path / "r2"), "--methods", "adain,bogus"])
    assert bad.exit_code == 2
    assert "unknown method 'bogus'" in bad.output
    # a report folder that is a file fails at once with the option's name (was a FileExistsError traceback
    # from the report's mkdir), and the file is left as it was
    (tmp_path / "taken").write_text("mine")
    bad = runner.invoke(app, ["evaluate", "--content", str(tiny_dirs[0]), "--style", str(tiny_dirs[1]),
                              "--out", str(tmp_path / "taken"), "--methods", "microast", "--pairs", "2"])
    text = " ".join(bad.output.split())
    assert bad.exit_code == 2 and "is a file, not a folder; give a folder path" in text, text
    assert "Traceback" not in text and (tmp_path / "taken").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")) == []  # no temporaries


def test_report_files_are_written_atomically(tmp_path: Path) -> None:
    from impasto.evaluation import report as rp

    rp.write_csv([{"a": 1.5, "b": "x"}], tmp_path / "t.csv")
    assert _read(tmp_path / "t.csv") == [{"a": "1.5", "b": "x"}]
    with pytest.raises(TypeError):  # a failure while writing keeps the previous file and leaves no temporary
        rp.write_csv([{"a": object.__new__(type("Bad", (), {"__repr__": None, "__str__": None}))}],
                     tmp_path / "t.csv")
    assert _read(tmp_path / "t.csv") == [{"a": "1.5", "b": "x"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_encoder_consistency_compares_refined_with_its_pretrained_encoder(tiny_dirs, tmp_path: Path) -> None:
    import torch

    from impasto.backbones import load_encoder
    from impasto.evaluation.studies import study_encoder_consistency
    from impasto.methods.common import packaged_checkpoint

    path = packaged_checkpoint("adain", "vgg19-16x", "relu4_1")
    if path is None:
        pytest.skip("no packaged adain checkpoint")
    ck = load_model(path)
    enc = load_encoder("vgg19-16x", "relu4_1").state_dict()
    ck["encoder_state"] = {k: v * 1.5 if k == "conv0.weight" else v for k, v in enc.items()}
    torch.save(ck, tmp_path / "refined.pt")
    ctx = make_context(tiny_dirs[0], tiny_dirs[1], ["adain"], pairs=2, max_size=64)
    study_encoder_consistency(ctx, tmp_path / "out", tmp_path / "refined.pt")
    rows = {r["encoder"]: r for r in _read(tmp_path / "out" / "study4_consistency.csv")}
    pre, ref = rows["pretrained vgg19-16x 1_1-4_1"], rows["refined vgg19-16x 1_1-4_1"]
    assert float(pre["mean_pair_distance"]) != float(ref["mean_pair_distance"])


def test_encoder_consistency_reads_sanet_refined_encoders_to_relu5_1(tiny_dirs, tmp_path: Path) -> None:
    # a refine-encoder model file with base sanet: "depth" is relu4_1 (the decoder's), the encoder reaches relu5_1
    import torch

    from impasto.backbones import load_encoder
    from impasto.evaluation.studies import study_encoder_consistency
    from impasto.methods.common import packaged_checkpoint

    path = packaged_checkpoint("adain", "vgg19-16x", "relu4_1")
    if path is None:
        pytest.skip("no packaged adain checkpoint")
    ck = load_model(path)
    enc = load_encoder("vgg19-16x", "relu5_1").state_dict()
    ck.update(method="sanet", depth="relu4_1",
              encoder_state={k: v * 1.5 if k == "conv0.weight" else v for k, v in enc.items()})
    torch.save(ck, tmp_path / "refined.pt")
    ctx = make_context(tiny_dirs[0], tiny_dirs[1], ["adain"], pairs=2, max_size=64)
    study_encoder_consistency(ctx, tmp_path / "out", tmp_path / "refined.pt")
    rows = {r["encoder"]: r for r in _read(tmp_path / "out" / "study4_consistency.csv")}
    pre, ref = rows["pretrained vgg19-16x 1_1-5_1"], rows["refined vgg19-16x 1_1-5_1"]
    assert float(pre["mean_pair_distance"]) != float(ref["mean_pair_distance"])


def test_trained_adain_study_scores_both_models(tiny_dirs, tmp_path: Path) -> None:
    # study 3 on the two committed AdaIN models (the packaged balanced one and the classic run's)
    from impasto.evaluation.studies import study_trained_adain
    from impasto.methods.common import packaged_checkpoint

    balanced = packaged_checkpoint("adain", "vgg19-16x", "relu4_1")
    classic = Path(__file__).resolve().parents[2] / "docs" / "training" / "adain_classic" / "model.pt"
    if balanced is None or not classic.is_file():
        pytest.skip("the committed AdaIN models are not there")
    torch.set_num_threads(1)
    ctx = make_context(tiny_dirs[0], tiny_dirs[1], ["adain"], pairs=2, max_size=64)
    res = study_trained_adain(ctx, tmp_path, classic, balanced)
    summary = {r["model"]: r for r in _read(tmp_path / "study3_summary.csv")}
    assert set(summary) == {"classic", "balanced"}
    for r in summary.values():
        assert 0 <= float(r["grid"]) <= 1 and -1 <= float(r["edge_corr"]) <= 1
    pairs = _read(tmp_path / "study3_pairs.csv")
    assert len(pairs) == 4 and all(0 <= float(r["grid"]) <= 1 for r in pairs)
    assert " grid |" in res["markdown"] and (tmp_path / "study3_grid.png").is_file()
