"""``impasto stylize --engine ray`` (impasto.bulk): same outputs, names, summary and exit codes as the local engine,
per-file errors, resume after the driver is killed, on a real two-node Ray cluster started on this machine.

The cluster is two ``ray start`` processes (a head and a worker node, 1 CPU each, separate temporary folders and
ports); it is stopped by killing the process groups of the processes that use those folders, never by name (``ray
stop`` would also stop other people's Ray on a shared machine).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from impasto.bulk import RAY_MISSING, cluster_env, local_cluster, plan_jobs
from impasto.cli import _output_name, app

ROOT = Path(__file__).resolve().parents[1]


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    photo, style = tmp_path / "p.png", tmp_path / "s.png"
    Image.new("RGB", (32, 32)).save(photo)
    Image.new("RGB", (32, 32)).save(style)
    res = CliRunner().invoke(app, ["stylize", str(photo), "-s", str(style), "-o", str(tmp_path / "o"), "--engine",
                                   "ray"])
    assert res.exit_code == 2
    said = " ".join(res.output.split())  # rich wraps the one line at the terminal width
    assert "Traceback" not in res.output and said == f"error: {RAY_MISSING}" and 'pip install "impasto[ray]"' in said
    assert not (tmp_path / "o").exists()


def test_unknown_engine_is_refused(tmp_path):
    res = CliRunner().invoke(app, ["stylize", "x.png", "-s", "y.png", "--engine", "spark"])
    assert res.exit_code == 2 and "--engine must be 'local' or 'ray'" in res.output


def test_jobs_are_named_as_the_local_engine_names_them(tmp_path):
    for name in ("a.jpg", "b.v2.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    s = tmp_path / "st"
    s.mkdir()
    for name in ("x.jpg", "y.png"):
        Image.new("RGB", (8, 8)).save(s / name)
    jobs = plan_jobs([tmp_path / "a.jpg", tmp_path / "b.v2.png"], [s], tmp_path / "out")
    assert [Path(j.dest).name for j in jobs] == [
        _output_name(Path(c), Path(st), ".png") for c in ("a.jpg", "b.v2.png") for st in ("x.jpg", "y.png")
    ]
    mixed = plan_jobs([tmp_path / "a.jpg"], [s], tmp_path / "out", mixed=True)
    assert [Path(j.dest).name for j in mixed] == [_output_name(Path("a.jpg"), None, ".png")]
    single = plan_jobs([tmp_path / "a.jpg"], [s / "x.jpg"], tmp_path / "one.png")
    assert single[0].dest == str(tmp_path / "one.png")


# ----------------------------------------------------------------------------- the two-node cluster

try:
    import ray.data  # noqa: F401

    HAS_RAY = True
except ImportError:
    HAS_RAY = False
needs_ray = pytest.mark.skipif(not HAS_RAY, reason='Ray is not installed (pip install "impasto[ray]")')


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(cluster_env())
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node (1 CPU each) on this machine; yields the head's address."""
    with local_cluster(nodes=2, cpus_per_node=1, env=_env()) as address:
        yield address


@pytest.fixture()
def photos(tmp_path, data_dir):
    src = sorted((data_dir / "content").glob("*.jpg"))[:7]
    c = tmp_path / "in"
    c.mkdir()
    for i, p in enumerate(src):
        # large enough that stylising, not reading, sets the pace: with tiny images the blocks arrived one at a
        # time and the actor on the reading node took every one of them (Ray Data prefers local actors)
        Image.open(p).convert("RGB").resize((320 + 8 * i, 240)).save(c / f"photo{i}.jpg")
    Image.open(src[0]).convert("RGBA").resize((61, 77)).save(c / "alpha.png")
    (c / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    styles = []
    for name in ("AdaAttN__udnie.jpg", "AdaAttN__feathers.jpg"):
        s = tmp_path / name.split("__")[1]
        Image.open(data_dir / "style" / name).convert("RGB").resize((96, 96)).save(s)
        styles.append(s)
    return c, styles


def _impasto(*args: str, threads: int | None = None, **kw) -> subprocess.CompletedProcess:
    env = _env()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, "-m", "impasto", "stylize", *args], env=env, capture_output=True,
                          text=True, timeout=240, **kw)


def _summary(stderr: str) -> str:
    return " ".join(stderr.split())


@needs_ray
@pytest.mark.slow
@pytest.mark.weights
def test_ray_on_two_nodes_matches_the_local_engine_byte_for_byte(cluster, photos, tmp_path):
    c, styles = photos
    common = [str(c), "-s", str(styles[0]), "-s", str(styles[1]), "--precision", "fp32"]
    local = _impasto(*common, "-o", str(tmp_path / "local"), threads=1)  # the actors run 1 thread each
    assert local.returncode == 1, local.stderr
    assert re.search(r"wrote \d+ image\(s\) to \S+, 2 failed", _summary(local.stderr))
    local_files = sorted(p.name for p in (tmp_path / "local").iterdir())
    # Ray Data does not promise every actor of a pool work in a short job: an actor that comes up late can find the
    # blocks taken (here 2 of 5 jobs of these 18 images ran on one actor while the other was still starting). Every
    # run must give the local engine's bytes; within 5 runs one must show both nodes at work.
    seen = []
    for attempt in range(5):
        dest = tmp_path / f"ray{attempt}"
        res = _impasto(*common, "-o", str(dest), "--engine", "ray", "--address", cluster, "--workers", "2",
                       "--worker-cpus", "1")
        out = _summary(res.stderr)
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr
        # same summary line and per-file report as the local engine
        assert "wrote 16 image(s) to " in out and ", 2 failed" in out
        assert out.count("- " + str(c / "broken.jpg")) == 2
        ray_files = sorted(p.name for p in dest.iterdir())
        assert ray_files == local_files and len(ray_files) == 16
        for name in local_files:
            assert (dest / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
        m = re.search(r"(\d+) worker\(s\) on (\d+) node\(s\)", out)
        assert m, out
        seen.append((m.group(1), m.group(2)))
        if seen[-1] == ("2", "2"):
            break
    assert seen[-1] == ("2", "2"), seen  # both nodes did work, by two actors
    assert "paintings encoded per worker: 2 at most" in out, out  # once per actor, not per image


@needs_ray
@pytest.mark.slow
@pytest.mark.weights
def test_a_killed_driver_resumes_without_redoing_finished_outputs(cluster, photos, tmp_path):
    c, styles = photos
    (c / "broken.jpg").unlink()
    for i in range(7):  # larger photos so the job runs long enough to be killed half-way
        Image.open(c / f"photo{i}.jpg").resize((320, 240)).save(c / f"photo{i}.jpg")
    out = tmp_path / "out"
    args = [str(c), "-s", str(styles[0]), "-s", str(styles[1]), "-o", str(out), "--engine", "ray", "--address",
            cluster, "--workers", "2"]
    total = 16
    env = _env()
    driver = subprocess.Popen([sys.executable, "-m", "impasto", "stylize", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 150
        while time.time() < deadline and driver.poll() is None:
            if out.is_dir() and len(list(out.glob("*.png"))) >= 3:
                break
            time.sleep(0.05)
        assert driver.poll() is None, "the job finished before it could be killed; make it longer"
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    # the driver's actors die with it; wait until nothing more appears
    stable, last = 0, None
    while stable < 6:
        now = sorted(os.listdir(out))
        stable = stable + 1 if now == last else 0
        last = now
        time.sleep(0.5)
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.png")}
    assert 0 < len(done) < total
    for name in done:  # every output present is complete
        with Image.open(out / name) as im:
            im.load()
    res = _impasto(*args)
    assert res.returncode == 0, res.stderr
    summary = _summary(res.stderr)
    assert f"wrote {total - len(done)} image(s) to" in summary and f"{len(done)} already written" in summary
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == total and all(f.endswith(".png") and not f.startswith(".") for f in files), files
    for name in files:
        with Image.open(out / name) as im:
            im.load()
        if name in done:  # not done twice
            st = (out / name).stat()
            assert (st.st_ino, st.st_mtime_ns) == done[name], name


@needs_ray
@pytest.mark.slow
@pytest.mark.weights
def test_video_in_segments_on_two_nodes(cluster, tmp_path, data_dir):
    """``impasto video --engine ray``: segments on both nodes; the first segment equals the local engine's frames,
    the later ones (temporal smoothing warmed up on 4 overlap frames) stay within 1/150 of the range of them."""
    import numpy as np

    clip = data_dir / "video" / "pytorch-AdaIN__cutBunny.mp4"
    style = tmp_path / "udnie.jpg"
    Image.open(data_dir / "style" / "AdaAttN__udnie.jpg").convert("RGB").resize((96, 96)).save(style)
    common = [str(clip), "-s", str(style), "--max-frames", "20", "--max-size", "96", "--style-size", "96"]
    env = _env()
    local = subprocess.run([sys.executable, "-m", "impasto", "video", *common, "-o", str(tmp_path / "local")],
                           env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert local.returncode == 0, local.stderr
    res = subprocess.run([sys.executable, "-m", "impasto", "video", *common, "-o", str(tmp_path / "ray"), "--engine",
                          "ray", "--address", cluster, "--workers", "2", "--segment-frames", "8", "--overlap", "4"],
                         env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    out = _summary(res.stderr)
    assert "2 worker(s) on 2 node(s)" in out and "20 frames" in out, out
    assert sorted(os.listdir(tmp_path)) == ["local", "ray", "udnie.jpg"]  # no work folder left
    names = sorted(os.listdir(tmp_path / "local"))
    assert sorted(os.listdir(tmp_path / "ray")) == names and len(names) == 20
    for i, name in enumerate(names):
        a = np.asarray(Image.open(tmp_path / "local" / name), dtype=np.float64)
        b = np.asarray(Image.open(tmp_path / "ray" / name), dtype=np.float64)
        if i < 8:
            assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
        else:
            psnr = 10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-12))
            assert psnr > 43, (name, psnr)
