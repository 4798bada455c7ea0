"""scripts/eval_models.py's paired comparisons: hand-made rows, and earlier runs' committed rows (--with-rows)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "eval_models.py"


def _module():
    spec = importlib.util.spec_from_file_location("eval_models", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(label: str, moved: list[float], warping: list[float]) -> list[dict]:
    rows = [{"model": label, "photo": f"p{k}", "painting": f"s{k}", "moved": m, "edges": 0.5, "retrieval_rank": 0}
            for k, m in enumerate(moved)]
    return rows + [{"model": label, "clip": f"c{k}", "painting": "s0", "warping_error": w}
                   for k, w in enumerate(warping)]


def test_paired_counts_wins_by_direction_and_skips_ties() -> None:
    mod = _module()
    a = _rows("a", [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    b = _rows("b", [0.4, 0.5, 0.6, 0.7, 0.8, 1.1], [0.2, 0.2, 0.2, 0.2, 0.05, 0.2])
    lines = mod.paired(a + b, "a", "b")
    table = {line.split(" |")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    moved = table["moved (higher is better)"]
    assert moved[1] == "6" and moved[4] == "5/6" and moved[5] == "1"  # a moved further on 5 of 6 pairs, less on 1
    assert float(moved[2]) == pytest.approx(0.75) and float(moved[3]) == pytest.approx(0.65)
    warping = table["warping_error (lower is better)"]
    assert warping[4] == "5/6" and warping[5] == "1"  # lower is better: a steadier on 5 of 6 clips
    assert table["edges (higher is better)"][-2] == "1"  # identical values: p = 1, no test run
    assert table["edges (higher is better)"][-1] == "1 (6) |"  # nor by painting (6 paintings)
    assert table["edges (higher is better)"][4] == "0/6" and table["edges (higher is better)"][5] == "0"  # all tied


def test_with_rows_pairs_two_committed_runs_without_stylising(tmp_path: Path, data_dir: Path) -> None:
    """Stage 6 against session 17's SANet from their committed per-pair rows: the numbers docs/models.md quotes."""
    mod = _module()
    stage6 = ROOT / "docs" / "models" / "iecontraast" / "cpu_stage6" / "quality.csv"
    s17 = ROOT / "docs" / "models" / "session17" / "quality.csv"
    with open(stage6, newline="") as f:
        assert {r["model"] for r in csv.DictReader(f)} == {"ie-c3"}  # stage 6's label in its own run
    assert mod.main(["--with-rows", str(stage6), "--with-rows", str(s17), "--compare", "ie-c3,sanet",
                     "--corpus", str(data_dir / "corpus"), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "quality.md").read_text()
    edges = next(line for line in md.splitlines() if line.startswith("| edges"))
    assert edges.split(" | ")[1] == "96" and edges.split(" | ")[4] == "95/96"  # as docs/models.md says
    assert "Paired against rows of earlier runs" in md


def test_bad_arguments_say_what_to_give(tmp_path: Path) -> None:
    mod = _module()
    with pytest.raises(SystemExit):
        mod.main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no such file"):
        mod.main(["--with-rows", str(tmp_path / "missing.csv"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        mod.main(["--model", "adain", "--compare", "adain,nope", "--out", str(tmp_path)])


def test_paired_by_painting_averages_pairs_that_share_a_painting() -> None:
    """Six pairs on two paintings: a wins 3 small/3 large per pair, but by painting there are only two means."""
    mod = _module()
    a = [{"model": "a", "photo": f"p{k}", "painting": f"s{k % 2}", "moved": 0.5 + 0.1 * k, "edges": 0.5}
         for k in range(6)]
    b = [{"model": "b", "photo": f"p{k}", "painting": f"s{k % 2}", "moved": 0.4 + 0.1 * k, "edges": 0.5}
         for k in range(6)]
    moved = next(line for line in mod.paired(a + b, "a", "b") if line.startswith("| moved")).split(" | ")
    assert moved[4] == "6/6"  # better on every pair ...
    assert moved[-1] == "1 (2) |"  # ... but two painting means are too few for a test: p = 1, not a false 0.03
    assert float(moved[-2]) < 0.05


def test_pairs_from_names_the_pairs_it_measures(tmp_path: Path, data_dir: Path) -> None:
    """--pairs-from K takes pairs K+1.. of the one fixed sequence (so a new study never repeats the first K), and
    the report says which; a negative K or no pairs is refused."""
    mod = _module()
    assert mod.make_pairs(48, 48, 96 + 288)[96:][:5] != mod.make_pairs(48, 48, 96)[:5]
    assert mod.make_pairs(48, 48, 96 + 288)[:96] == mod.make_pairs(48, 48, 96)  # the same sequence, extended
    stage6 = ROOT / "docs" / "models" / "iecontraast" / "cpu_stage6" / "quality.csv"
    assert mod.main(["--with-rows", str(stage6), "--pairs", "288", "--pairs-from", "96",
                     "--corpus", str(data_dir / "corpus"), "--out", str(tmp_path)]) == 0
    assert "288 pairs (pairs 97..384 of the fixed sequence)" in (tmp_path / "quality.md").read_text()
    for bad in (["--pairs-from", "-1"], ["--pairs", "0"]):
        with pytest.raises(SystemExit):
            mod.main(["--with-rows", str(stage6), *bad, "--out", str(tmp_path)])


def test_video_styles_from_takes_later_paintings(tmp_path: Path, data_dir: Path, weights_dir: Path) -> None:
    """--video-styles-from K stylises the clips with validation paintings K+1.. (a video study on clip-painting
    pairs no earlier run has seen); a window past the split is refused. Real clip, real AdaIN, 2 frames at 64 px."""
    from impasto.pipeline import Stylizer

    mod = _module()
    _, paintings = mod.read_split(mod.SPLIT, data_dir / "corpus")
    args = mod.argparse.Namespace(video_frames=2, video_size=64, size=64, video_styles=1, video_styles_from=5)
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "bunny.mp4").symlink_to(data_dir / "video" / "pytorch-AdaIN__cutBunny.mp4")
    rows = mod.video_rows(Stylizer("adain", precision="fp32"), "a", clips, paintings, args)
    assert [(r["clip"], r["painting"]) for r in rows] == [("bunny.mp4", paintings[5].name)]
    assert rows[0]["warping_error"] > 0
    with pytest.raises(SystemExit):
        mod.main(["--model", "adain", "--video", str(clips), "--video-styles", "8", "--video-styles-from",
                  str(len(paintings) - 7), "--corpus", str(data_dir / "corpus"), "--out", str(tmp_path)])
