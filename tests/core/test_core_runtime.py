"""impasto.runtime: freed memory is reused, so large activations stop page-faulting (counted, not timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent(
    """
    import json, resource, torch
    from impasto.runtime import malloc_tuned, reuse_freed_memory
    applied = reuse_freed_memory()
    x = torch.rand(1, 16, 1024, 1024)  # 64 MB: above glibc's largest mmap threshold (32 MiB)
    for _ in range(20):  # the heap grows to the working set first (a few ops), then serves it from freed blocks
        y = torch.relu(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        y = torch.relu(x)  # a fresh 64 MB output each time, freed when y is rebound
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"applied": applied, "tuned": malloc_tuned(), "faults_per_op": faults / 10}))
    """
)


def _run(env_extra: dict[str, str]) -> dict:
    env = {**os.environ, **env_extra}
    res = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_memory_is_reused_instead_of_page_faulting() -> None:
    tuned = _run({"IMPASTO_MALLOC": ""})
    system = _run({"IMPASTO_MALLOC": "system"})
    assert tuned["applied"] and tuned["tuned"]
    assert not system["applied"] and not system["tuned"]
    # a 64 MB buffer is 16384 pages of 4 KiB: the system setting faults them all in on every op, the tuned
    # one reuses freed blocks once the heap holds the working set (measured: 16385 vs 0 faults per op)
    assert system["faults_per_op"] > 8000
    assert tuned["faults_per_op"] < system["faults_per_op"] / 4


@pytest.mark.weights
def test_the_library_leaves_malloc_alone_and_the_command_tunes_it(weights_dir) -> None:
    """Stylizer() changed glibc's mallopt for the whole process; now only impasto's own entry points do."""
    code = ("from impasto import Stylizer\nfrom impasto.runtime import malloc_tuned\n"
            "Stylizer('adain')\nprint(malloc_tuned())\n"
            "from impasto.cli import _stylizer\n_stylizer('adain')\nprint(malloc_tuned())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "IMPASTO_MALLOC": ""}).stdout.split()
    assert out[-2:] == ["False", "True" if sys.platform.startswith("linux") else "False"]
