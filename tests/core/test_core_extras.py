"""A light core (issue 23, section 4): ``import impasto`` needs none of the extras, and a feature whose extra is
missing says, in one line without a traceback, which ``pip install "impasto[...]"`` to run.

A missing package is simulated with ``sys.modules[name] = None`` (then ``import name`` raises ImportError), the
impasto modules that import it being taken out of ``sys.modules`` for the test so that they are imported again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from impasto.errors import ImpastoError, MissingExtraError
from impasto.extras import check_extra, require_extra

ROOT = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ("fastapi", "fastapi_offline", "uvicorn", "av", "cv2", "onnxruntime", "matplotlib", "ray")


def test_importing_impasto_and_stylizer_imports_no_extra():
    code = (
        "import sys\nimport impasto\nfrom impasto import Stylizer\nimport impasto.methods, impasto.models, "
        "impasto.training, impasto.evaluation, impasto.server, "
        "impasto.bulk, impasto.cli\n"
        f"loaded = [m for m in {EXTRA_MODULES!r} if m in sys.modules]\nassert not loaded, loaded"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr


def _block(monkeypatch, missing: tuple[str, ...], reimported: tuple[str, ...]) -> None:
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)
    for name in reimported:
        monkeypatch.delitem(sys.modules, name, raising=False)


def _cli(*args: str):
    from impasto.cli import app

    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output
    return res, " ".join(res.output.split())  # rich wraps the line at the terminal width


def test_require_extra_is_one_line_naming_the_extra(monkeypatch):
    _block(monkeypatch, ("av",), ())
    with pytest.raises(MissingExtraError) as info:
        require_extra("av", "video")
    msg = str(info.value)
    assert isinstance(info.value, ImpastoError) and "\n" not in msg
    assert msg == ('video input/output and temporal smoothing needs av, which is not installed: '
                   'pip install "impasto[video]"')
    with pytest.raises(MissingExtraError, match=r'pip install "impasto\[peers\]"'):
        check_extra("impasto_no_such_module", "peers")
    assert require_extra("json", "video") is json


@pytest.mark.parametrize("missing", ["av", "cv2"])
def test_video_without_the_video_extra(monkeypatch, tmp_path, missing):
    _block(monkeypatch, (missing,), ("impasto.video", "impasto.io.video", "impasto.temporal"))
    res, said = _cli("video", str(tmp_path / "clip.mp4"), "-s", str(tmp_path / "style.png"))
    assert res.exit_code == 2
    assert said == f'error: video input/output and temporal smoothing needs {missing}, which is not installed: ' \
                   'pip install "impasto[video]"'


@pytest.mark.parametrize("missing", ["fastapi", "uvicorn", "python_multipart"])
def test_serve_without_the_server_extra(monkeypatch, missing):
    import starlette.formparsers  # noqa: F401  (imported with python_multipart there, not with its old name)
    import starlette.requests  # noqa: F401

    _block(monkeypatch, (missing,), ("impasto.server.app",))
    res, said = _cli("serve", "--port", "1")
    assert res.exit_code == 2
    assert said == f"error: the web app and HTTP API (impasto serve) needs {missing}, which is not installed: " \
                   'pip install "impasto[server]"'


def test_methods_lists_magenta_without_the_peers_extra(monkeypatch):
    _block(monkeypatch, ("onnxruntime",), ())
    res, _ = _cli("methods", "--json")
    assert res.exit_code == 0
    magenta = next(row for row in json.loads(res.output) if row["method"] == "magenta")
    assert magenta["runs"] is False
    assert magenta["why_not"] == ('the magenta peer needs onnxruntime, which is not installed: '
                                  'pip install "impasto[peers]"')


def test_magenta_peer_without_opencv(monkeypatch):
    _block(monkeypatch, ("cv2",), ("impasto.models.magenta",))
    with pytest.raises(MissingExtraError, match=r'^the magenta peer needs cv2, which is not installed: pip install '
                                                r'"impasto\[peers\]"$'):
        from impasto.models.magenta import MagentaPeer  # noqa: F401
    from impasto.methods import availability

    assert availability("magenta")[1].endswith('pip install "impasto[peers]"')


def test_stylize_magenta_without_onnxruntime_says_which_extra(monkeypatch, tmp_path):
    from PIL import Image

    _block(monkeypatch, ("onnxruntime",), ())
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(photo)
    res, said = _cli("stylize", str(photo), "-s", str(photo), "-m", "magenta", "-o", str(tmp_path / "o.png"))
    assert res.exit_code == 2
    assert said.endswith('error: the magenta peer needs onnxruntime, which is not installed: '
                         'pip install "impasto[peers]"')


def test_evaluate_without_the_eval_extra(monkeypatch):
    _block(monkeypatch, ("matplotlib",), ("impasto.evaluation.report", "impasto.evaluation.studies"))
    with pytest.raises(MissingExtraError, match=r'needs matplotlib, which is not installed: pip install '
                                                r'"impasto\[eval\]"$'):
        import impasto.evaluation.report  # noqa: F401
