"""The CLI end to end on real files: single image, folders with bad files, clear errors without tracebacks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from impasto.cli import app

pytestmark = pytest.mark.weights


@pytest.fixture()
def small(tmp_path, data_dir):
    c = tmp_path / "in"
    c.mkdir()
    Image.open(data_dir / "content" / "pytorch-AdaIN__chicago.jpg").convert("RGB").resize((150, 100)).save(c / "a.jpg")
    Image.open(data_dir / "content" / "pytorch-AdaIN__chicago.jpg").convert("RGBA").resize((77, 61)).save(c / "b.png")
    s = tmp_path / "udnie.jpg"
    Image.open(data_dir / "style" / "AdaAttN__udnie.jpg").convert("RGB").resize((128, 128)).save(s)
    return c, s


def run(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output
    return res


def test_single_file(small, tmp_path):
    c, s = small
    out = tmp_path / "out.png"
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-o", str(out), "--alpha", "0.8")
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (150, 100)


def test_the_default_method_is_the_trained_sanet(small, tmp_path):
    c, s = small
    outs = {}
    for name, extra in (("default", ()), ("sanet", ("-m", "sanet")), ("adain", ("-m", "adain"))):
        outs[name] = tmp_path / f"{name}.png"
        res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-o", str(outs[name]), *extra)
        assert res.exit_code == 0, res.output
    pixels = {k: np.asarray(Image.open(v)) for k, v in outs.items()}
    assert np.array_equal(pixels["default"], pixels["sanet"])
    assert not np.array_equal(pixels["default"], pixels["adain"])


def test_output_with_an_unknown_extension_is_refused_not_made_a_folder(small, tmp_path):
    c, s = small
    out = tmp_path / "out.jgp"  # a typo of .jpg: was silently created as a folder holding the result
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-o", str(out))
    said = " ".join(res.output.split())  # rich wraps the message at the terminal width
    assert res.exit_code == 2 and "'.jgp' is not an image format" in said and "name the file out.png" in said
    assert not out.exists()
    out.mkdir()  # an existing folder with a dot in its name is still a folder
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-o", str(out))
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.iterdir()] == ["a__udnie.png"]
    res = run("stylize", str(c), "-s", str(s), "-o", str(tmp_path / "results.v2"))  # several results: a folder
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "results.v2").iterdir()) == ["a__udnie.png", "b__udnie.png"]


def test_gatys_output_keeps_the_photos_size_and_says_its_work_size(small, tmp_path, data_dir):
    _, s = small
    photo = tmp_path / "wide.jpg"
    Image.open(data_dir / "content" / "pytorch-AdaIN__chicago.jpg").convert("RGB").resize((700, 300)).save(photo)
    out = tmp_path / "g.png"
    res = run("stylize", str(photo), "-s", str(s), "-m", "gatys", "-O", "steps=1", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "works at 512 px" in " ".join(res.output.split())
    assert Image.open(out).size == (700, 300)


def test_folder_with_a_corrupt_file_does_the_rest(small, tmp_path):
    c, s = small
    (c / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "outdir"
    res = run("stylize", str(c), "-s", str(s), "-o", str(out))
    assert res.exit_code == 1
    assert "broken.jpg" in res.output and "1 failed" in res.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["a__udnie.png", "b__udnie.png"]
    assert Image.open(out / "b__udnie.png").size == (77, 61)


def test_mix_and_preserve_color_and_mask(small, tmp_path, data_dir):
    c, s = small
    s2 = tmp_path / "s2.jpg"
    Image.open(sorted((data_dir / "style").glob("*wave*"))[0]).convert("RGB").resize((128, 128)).save(s2)
    out = tmp_path / "mix.png"
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-s", str(s2), "-w", "0.7", "-w", "0.3",
              "--preserve-color", "-o", str(out))
    assert res.exit_code == 0, res.output
    mask = tmp_path / "mask.png"
    Image.new("L", (150, 100), 255).save(mask)
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-s", str(s2), "--mask", str(mask), "-o",
              str(tmp_path / "m.png"))
    assert res.exit_code == 0, res.output
    bad = tmp_path / "badmask.png"
    Image.new("L", (10, 10), 255).save(bad)
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "--mask", str(bad), "-o", str(tmp_path / "x.png"))
    assert res.exit_code == 2 and "resize the mask" in res.output
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "nope"], "known methods"),
        (["--alpha", "3"], "alpha must be in"),
        (["-m", "sanet", "--checkpoint", "missing.pt"], "missing.pt does not exist"),
        (["--encoder", "resnet"], "--encoder"),
        (["-O", "nonsense"], "key=value"),
        (["--pairs", "bogus"], "--pairs must be"),
        (["-s", "MISSING.jpg"], "MISSING.jpg"),
        (["--max-size", "8"], "Invalid value for '--max-size'"),  # the option's name, not max_size
        (["--style-size", "0"], "Invalid value for '--style-size'"),
    ],
)
def test_bad_options_exit_with_message(small, tmp_path, args, message):
    c, s = small
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), *args, "-o", str(tmp_path / "o.png"))
    assert res.exit_code != 0
    assert message in res.output
    assert not (tmp_path / "o.png").exists()


def test_cli_size_limit_is_the_pipelines():
    from impasto.cli import MIN_SIZE_OPTION
    from impasto.pipeline import MIN_SIZE_OPTION as PIPELINE_MIN

    assert MIN_SIZE_OPTION == PIPELINE_MIN


def test_missing_weights_message(small, tmp_path, monkeypatch):
    c, s = small
    monkeypatch.setenv("IMPASTO_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("IMPASTO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMPASTO_OFFLINE", "1")
    from impasto import backbones

    backbones.clear_caches()
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-o", str(tmp_path / "o.png"))
    assert res.exit_code == 2
    assert "impasto weights list" in res.output or "IMPASTO_WEIGHTS_DIR" in res.output
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-m", "microast", "-o", str(tmp_path / "o.png"))
    assert res.exit_code == 2 and "content_encoder_iter_160000.pth.tar" in res.output


def test_methods_command_lists_availability():
    res = run("methods")
    assert res.exit_code == 0
    for name in ("adain", "wct", "style-swap", "gatys", "sanet", "iecontraast", "microast"):
        assert name in res.output
    assert "sanet (default)" in " ".join(res.output.split())
    import json

    rows = json.loads(run("methods", "--json").output)
    assert [r["method"] for r in rows if r["default"]] == ["sanet"]


@pytest.mark.parametrize("out", ["notes", "notes/x.png", "notes/results"])
def test_output_blocked_by_a_file_fails_before_any_work(small, tmp_path, out):
    # was: every image stylised, then each write failed ("cannot write ...: File exists"), exit 1
    c, s = small
    (tmp_path / "notes").write_text("mine")
    res = run("stylize", str(c / "a.jpg"), "-s", str(s), "-o", str(tmp_path / out))
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "notes is a file, not a folder; choose another output path" in text, text
    assert "wrote" not in text and (tmp_path / "notes").read_text() == "mine"


def test_multi_frame_images_say_which_frame_is_stylised(small, tmp_path):
    c, s = small
    first = Image.open(c / "a.jpg").convert("RGB")
    frames = [first, first.rotate(180), first.convert("L").convert("RGB")]
    frames[0].save(c / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(c / "pages.tif", save_all=True, append_images=frames[1:])
    res = run("stylize", str(c / "anim.gif"), str(c / "pages.tif"), str(c / "a.jpg"), "-s", str(s), "-o",
              str(tmp_path / "out"))
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text
    assert "anim.gif has 3 frames; the first is stylised ('impasto video" in text  # which impasto video reads
    assert "pages.tif has 3 frames; the first is stylised" in text and "'impasto video " + str(c / "pages") not in text
    assert "a.jpg has" not in text
    # and it is the first frame: the result of the GIF matches that of its first frame saved alone
    frames[0].save(c / "first.gif")
    run("stylize", str(c / "first.gif"), "-s", str(s), "-o", str(tmp_path / "first.png"))
    a = np.asarray(Image.open(tmp_path / "out" / "anim__udnie.png"), dtype=np.float32)
    b = np.asarray(Image.open(tmp_path / "first.png"), dtype=np.float32)
    assert np.abs(a - b).mean() < 1.0


def test_python_dash_m_impasto_and_one_version() -> None:
    import importlib.metadata
    import subprocess
    import sys

    import impasto
    from impasto.server.app import _version

    r = subprocess.run([sys.executable, "-m", "impasto", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "stylize" in r.stdout
    assert importlib.metadata.version("impasto") == impasto.__version__ == _version()
