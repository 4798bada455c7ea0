"""Tests for impasto.io.atomic: output appears complete or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from impasto.io.atomic import atomic_path, atomic_write


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_creates_file_and_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.bin"
    with atomic_write(target) as f:
        f.write(b"hello")
        # Nothing under the final name while the block runs.
        assert not target.exists()
    assert target.read_bytes() == b"hello"
    assert _names(target.parent) == ["out.bin"]


def test_atomic_write_text_mode(tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    with atomic_write(target, "w", encoding="utf-8") as f:
        f.write("impasto \u00e9")
    assert target.read_text(encoding="utf-8") == "impasto \u00e9"


def test_atomic_write_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert _names(tmp_path) == []


def test_atomic_write_failure_keeps_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"original")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"original"
    assert _names(tmp_path) == ["out.bin"]


def test_atomic_write_replaces_existing_file_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_new_file_has_normal_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "reference.bin"
    reference.write_bytes(b"x")  # created like any ordinary file: 0o666 minus the umask
    target = tmp_path / "out.bin"
    with atomic_write(target) as f:
        f.write(b"x")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_atomic_write_rejects_non_write_modes(tmp_path: Path) -> None:
    for mode in ("a", "ab", "r", "rb"):
        with pytest.raises(ValueError, match="write mode"), atomic_write(tmp_path / "x", mode):
            pass
    assert _names(tmp_path) == []


def test_atomic_write_to_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError), atomic_write(tmp_path):
        pass


def test_atomic_path_same_folder_and_suffix(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.suffix == ".mp4"
        assert tmp.name.startswith(".")  # hidden: folder listings skip it
        assert not tmp.exists()  # not created in advance
        tmp.write_bytes(b"video")
        assert not target.exists()
    assert target.read_bytes() == b"video"
    assert _names(tmp_path) == ["clip.mp4"]


def test_atomic_path_failure_removes_temp_and_keeps_existing(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"original")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a video")
        raise RuntimeError("encoder crashed")
    assert target.read_bytes() == b"original"
    assert _names(tmp_path) == ["clip.mp4"]


def test_atomic_path_nothing_written_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"original")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_bytes() == b"original"
    assert _names(tmp_path) == ["clip.mp4"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path) -> None:
    """SIGKILL mid-write leaves .NAME.PID-TOKEN.tmp files; a later run removes those whose process is gone."""
    import subprocess
    import sys

    from impasto.io.atomic import clean_stale_temporaries, temp_path

    # a real writer killed with SIGKILL while its temporary exists
    script = (
        "import sys, time\n"
        "from impasto.io.atomic import atomic_write\n"
        f"with atomic_write({str(tmp_path / 'out.png')!r}) as f:\n"
        "    f.write(b'partial'); f.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.png.")]
    assert len(left) == 1 and not (tmp_path / "out.png").exists()
    mine = temp_path(tmp_path / "busy.png")  # this process is alive: its temporary is kept
    mine.write_bytes(b"x")
    (tmp_path / ".notes.tmp").write_text("not ours")  # not impasto's pattern: kept
    removed = clean_stale_temporaries(tmp_path)
    assert removed == left and not left[0].exists()
    assert mine.exists() and (tmp_path / ".notes.tmp").exists()


@pytest.mark.weights
def test_stylize_cleans_up_after_a_killed_run(tmp_path, content_path, style_path) -> None:
    from typer.testing import CliRunner

    from impasto.cli import app

    stale = tmp_path / ".o.png.999999999-0123abcd.tmp"  # a pid no process has
    stale.write_bytes(b"partial")
    r = CliRunner().invoke(app, ["stylize", str(content_path), "-s", str(style_path), "-o", str(tmp_path / "o.png"),
                                 "--max-size", "64"])
    assert r.exit_code == 0, r.output
    assert not stale.exists() and "left by an interrupted run" in r.output
