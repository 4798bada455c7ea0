"""Plugins (issue 23, section 3): methods and training tasks of other packages, through the entry-point groups
``impasto.methods`` and ``impasto.tasks``, loaded on the first lookup; a broken plugin is a warning, not a crash.

The fast tests hand the registries fake entry points (real ``EntryPoint`` objects whose modules live in tmp_path);
the slow one installs a real package with a ``pyproject.toml`` into a venv and runs ``python -m impasto`` there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from impasto import plugins
from impasto.errors import ConfigError
from impasto.methods import base
from impasto.training import loop

ROOT = Path(__file__).resolve().parents[2]

#: the plugin package of these tests: one method that returns the photo, one task that trains one parameter
PLUGIN_METHOD = '''
"""A trivial impasto method: the result is the content image."""
from impasto.methods.base import Method, MethodConfig


class Identity(Method):
    name = "identity-plugin"
    summary = "returns the photo unchanged"
    paper = "none"
    Config = MethodConfig

    def encode_style(self, style):
        return None

    def stylize(self, content, styles, mix, alpha=1.0, context=None):
        return content.clone()
'''

PLUGIN_TASK = '''
"""A trivial impasto training task."""
import torch
from impasto.training.loop import Task


class OneWeight(Task):
    def build(self, config, device):
        self.w = torch.nn.Parameter(torch.zeros(1, device=device))

    def trainable_modules(self):
        return {}

    def optimizers(self):
        return {}

    def training_step(self, batch, step):
        loss = self.w.square().sum()
        return {"total": float(loss)}

    def sample(self, contents, styles):
        return contents

    def model_state(self):
        return {"w": self.w.detach()}
'''


@pytest.fixture()
def registries(monkeypatch, tmp_path):
    """Fresh plugin state: the registries and the loaded groups are restored after the test; ``install(group,
    {name: (module, source, attr)})`` makes those the only entry points of the group."""
    import impasto.methods  # noqa: F401  (the built-ins are registered before the registries are copied)

    loop._import_builtin_tasks()
    groups: dict[str, list[EntryPoint]] = {}
    monkeypatch.setattr(plugins, "entry_points", lambda group: list(groups.get(group, [])))
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(loop, "_TASKS", dict(loop._TASKS))
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(group: str, eps: dict[str, tuple[str, str, str | None]]) -> None:
        for name, (module, source, attr) in eps.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            monkeypatch.delitem(sys.modules, module, raising=False)
            value = f"{module}:{attr}" if attr else module
            groups.setdefault(group, []).append(EntryPoint(name=name, value=value, group=group))

    return install


def test_importing_impasto_loads_no_plugin():
    code = ("import impasto, impasto.methods, impasto.training, sys\nfrom impasto import Stylizer\n"
            "p = sys.modules.get('impasto.plugins')\nassert p is None or not p._loaded, p._loaded\n"
            "import impasto.methods.base as b\nb.method_names()\nassert 'impasto.methods' in sys.modules["
            "'impasto.plugins']._loaded")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=_env())
    assert r.returncode == 0, r.stderr


def test_plugin_method_is_listed_and_runs(registries):
    registries(plugins.METHODS_GROUP, {"identity-plugin": ("impasto_test_plugin_m", PLUGIN_METHOD, "Identity")})
    names = base.method_names()
    assert names[-1] == "identity-plugin" and "adain" in names  # built-ins first, then plugins
    from impasto.pipeline import Stylizer

    content = torch.rand(1, 3, 72, 96)
    out = Stylizer("identity-plugin").stylize_tensor(content, torch.rand(1, 3, 20, 20))
    assert torch.allclose(out, content, atol=1 / 255)


def test_plugin_module_that_registers_itself(registries):
    source = PLUGIN_METHOD.replace("class Identity", "from impasto.methods.base import register\n\n\n@register\n"
                                   "class Identity")
    registries(plugins.METHODS_GROUP, {"anything": ("impasto_test_plugin_mod", source, None)})
    assert "identity-plugin" in base.method_names()


def test_broken_plugins_warn_and_the_rest_works(registries):
    registries(plugins.METHODS_GROUP, {
        "broken": ("impasto_test_plugin_broken", "import impasto_no_such_module\n", "X"),
        "thief": ("impasto_test_plugin_thief", PLUGIN_METHOD.replace('"identity-plugin"', '"adain"'), "Identity"),
        "notamethod": ("impasto_test_plugin_int", "X = 3\n", "X"),
    })
    adain = base._REGISTRY["adain"]
    with pytest.warns(plugins.PluginWarning) as caught:
        names = base.method_names()
    said = [str(w.message) for w in caught]
    assert len(said) == 3
    assert any("'broken'" in m and "ModuleNotFoundError" in m and "impasto_no_such_module" in m for m in said)
    assert any("'thief'" in m and "'adain' is already registered" in m for m in said)
    assert any("'notamethod'" in m and "TypeError" in m for m in said)
    assert base._REGISTRY["adain"] is adain and "wct" in names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loaded once: no second warning
        with pytest.raises(ConfigError, match="unknown method 'nope'; known methods: .*adain.*wct"):
            base.get_method_class("nope")


def test_methods_command_prints_one_line_per_broken_plugin(registries):
    from impasto.cli import app

    registries(plugins.METHODS_GROUP, {
        "broken": ("impasto_test_plugin_broken2", "raise RuntimeError('boom at import')\n", "X"),
        "identity-plugin": ("impasto_test_plugin_m2", PLUGIN_METHOD, "Identity"),
    })
    res = CliRunner().invoke(app, ["methods", "--json"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    said = " ".join(res.output.split())  # rich wraps the line at the terminal width
    assert said.count("warning:") == 1
    assert "warning: plugin 'broken' (impasto.methods = 'impasto_test_plugin_broken2:X') was skipped: " \
           "RuntimeError: boom at import" in said
    rows = json.loads(res.output[res.output.index("["):])
    assert {"adain", "identity-plugin"} <= {r["method"] for r in rows}
    assert next(r for r in rows if r["method"] == "identity-plugin")["runs"] is True


def test_plugin_tasks(registries):
    registries(plugins.TASKS_GROUP, {
        "one-weight": ("impasto_test_plugin_t", PLUGIN_TASK, "OneWeight"),
        "broken-task": ("impasto_test_plugin_tb", "1 / 0\n", None),
    })
    with pytest.warns(plugins.PluginWarning, match=r"plugin 'broken-task' .*ZeroDivisionError"):
        assert "one-weight" in loop.available_tasks()
    cls = loop.get_task("one-weight")
    assert cls.__name__ == "OneWeight" and cls.name == "one-weight"
    with pytest.raises(ConfigError, match="unknown training task 'nope'; known tasks: .*adain.*one-weight"):
        loop.get_task("nope")


def test_get_task_loads_plugins_on_first_lookup(registries):
    registries(plugins.TASKS_GROUP, {"one-weight": ("impasto_test_plugin_t2", PLUGIN_TASK, "OneWeight")})
    assert loop.get_task("one-weight").__name__ == "OneWeight"


# ------------------------------------------------------------------------------------------- a real package
def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


@pytest.mark.slow
def test_installed_plugin_package_in_a_venv(tmp_path):
    """A package with entry points, pip-installed into a venv: ``python -m impasto methods`` lists its method,
    ``python -m impasto stylize -m identity-plugin`` runs it, and its task is trainable by name."""
    start = time.monotonic()
    pkg = tmp_path / "impasto-identity"
    (pkg / "impasto_identity").mkdir(parents=True)
    (pkg / "impasto_identity" / "__init__.py").write_text("")
    (pkg / "impasto_identity" / "method.py").write_text(PLUGIN_METHOD)
    (pkg / "impasto_identity" / "task.py").write_text(PLUGIN_TASK)
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "impasto-identity"
        version = "0.1"

        [project.entry-points."impasto.methods"]
        identity-plugin = "impasto_identity.method:Identity"

        [project.entry-points."impasto.tasks"]
        one-weight = "impasto_identity.task:OneWeight"

        [tool.setuptools]
        packages = ["impasto_identity"]
    '''))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=60)
    py = venv / "bin" / "python"
    # pip of this interpreter, installing into the venv's interpreter; offline (setuptools from the system)
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-build-isolation", "--no-index", "--disable-pip-version-check", str(pkg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    env = _env(IMPASTO_WEIGHTS_DIR=str(tmp_path / "no-weights"))  # the plugin needs none

    r = subprocess.run([str(py), "-m", "impasto", "methods", "--json"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["method"]: row for row in json.loads(r.stdout)}
    assert rows["identity-plugin"]["runs"] is True and "adain" in rows
    assert "warning" not in r.stderr

    photo, style, out = tmp_path / "photo.png", tmp_path / "style.png", tmp_path / "out.png"
    pixels = np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    Image.fromarray(pixels[::-1]).save(style)
    r = subprocess.run([str(py), "-m", "impasto", "stylize", str(photo), "-s", str(style), "-m", "identity-plugin",
                        "-o", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), pixels)

    code = ("from impasto.training import available_tasks, get_task\n"
            "assert 'one-weight' in available_tasks() and 'adain' in available_tasks()\n"
            "print(get_task('one-weight').__module__)")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "impasto_identity.task", r.stderr
    assert time.monotonic() - start < 90
