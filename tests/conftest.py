"""Shared fixtures: paths to the real weights and data in ../shared, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMPASTO_SHARED_DIR", ROOT.parent / "shared"))
WEIGHTS_DIR = Path(os.environ.get("IMPASTO_WEIGHTS_DIR", str(SHARED / "weights")).split(os.pathsep)[0])
DATA_DIR = SHARED / "data"

os.environ.setdefault("IMPASTO_WEIGHTS_DIR", str(WEIGHTS_DIR))


@pytest.fixture
def fork_safe():
    """For a test that forks without exec (DataLoader workers): see forked.frozen_for_fork."""
    from forked import frozen_for_fork

    with frozen_for_fork():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``bf16`` run bfloat16 convolutions: skipped, with the reason, on CPUs that cannot run them."""
    from impasto.hardware import BF16_MISSING, cpu_bf16_convolutions

    if cpu_bf16_convolutions():
        return
    skip = pytest.mark.skip(reason=f"{BF16_MISSING} (impasto.hardware.cpu_bf16_convolutions)")
    for item in items:
        if "bf16" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    if not WEIGHTS_DIR.is_dir():
        pytest.skip(f"real weights not found at {WEIGHTS_DIR}; set IMPASTO_WEIGHTS_DIR")
    return WEIGHTS_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def content_path(data_dir: Path) -> Path:
    return data_dir / "content" / "pytorch-AdaIN__chicago.jpg"


@pytest.fixture(scope="session")
def style_path(data_dir: Path) -> Path:
    return data_dir / "style" / "AdaAttN__udnie.jpg"


def _order_line(config: pytest.Config) -> str | None:
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and getattr(config.option, "randomly_reorganize", True):
        return f"test order: random, --randomly-seed={seed}"
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Print pytest-randomly's seed before the first test, even under -q, so that the order of a run that hangs
    (and never reaches its summary) can be rerun with ``--randomly-seed=N``; ``-p no:randomly`` runs in file order."""
    line = _order_line(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if line and reporter is not None:
        reporter.write_line(line)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """And again at the end, beside the failures."""
    line = _order_line(config)
    if line:
        terminalreporter.write_line(line)
