"""Start test worker processes by fork, safely and with a time limit.

Fork keeps the tests fast (the children reuse the parent's imports), but a forked child inherits the parent's
objects without their threads. An onnxruntime session left as garbage by an earlier test (in a reference cycle),
finalised by a ``gc.collect()`` in the child, waits forever for its thread pool's threads: the CI hang of stop 34,
reproduced with the onnxruntime backend tests run before the DDP test. So the parent collects its garbage and
freezes what is left before forking (:func:`frozen_for_fork`, also the ``fork_safe`` fixture of conftest.py for
tests whose DataLoader forks workers), and a child that still hangs fails the test after ``timeout`` seconds
instead of holding the suite.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp


@contextmanager
def frozen_for_fork() -> Iterator[None]:
    """Collect the garbage here, where its objects' threads still exist, and keep forked children's collections
    off every object that exists now."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_forked(fn: Callable[..., None], args: tuple[Any, ...], nprocs: int, timeout: float = 300.0) -> None:
    """``torch.multiprocessing.start_processes(fn, args, nprocs, start_method="fork")`` with the guards above."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)  # torch's lazy optimizer imports, before fork
    with frozen_for_fork():
        ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="fork")
        deadline = time.monotonic() + timeout
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.kill()
                pytest.fail(f"forked workers did not finish within {timeout:.0f} s (killed)")
