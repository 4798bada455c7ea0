"""Old code against new code in one process: interleaved timings of ``Stylizer.stylize_tensor``.

Usage (from the repository root)::

    IMPASTO_WEIGHTS_DIR=/work/shared/weights python benchmarks/bench_backends.py
    python benchmarks/bench_backends.py --old HEAD --cases adain-16x --sizes 512 --rounds 9 --backends auto,eager,fused

The old code is ``src/impasto`` at the git revision ``--old`` (default :data:`REFACTOR_BASE`, the commit the
backend refactor started from), taken with ``git archive`` into a temporary folder and renamed ``impasto_old``:
every ``impasto.`` / ``from impasto import`` / ``import impasto`` in its ``.py`` files is rewritten so that the copy
imports itself, and its other files (``server/static/``, ``checkpoints/``, ...) come along unchanged. The new code
is whatever ``import impasto`` gives (the working tree of an editable install, uncommitted changes included). Both
``impasto_old.pipeline.Stylizer`` and ``impasto.pipeline.Stylizer`` run in this one process, so they share the
machine state (load, frequency, memory allocator, OpenMP threads) far more closely than two processes run one
after the other.

For every case (method options as in ``bench_inference.py``, image size, precision) both Stylizers are built and
warmed up (the style is then cached), then ``--rounds`` rounds each time one ``stylize_tensor(content, style)`` of
the old Stylizer, then one of the new Stylizer for each ``--backends`` entry. Reported: the median time of each
side, new / old, the noise (interquartile range / median of each side's runs, and the ratio of the medians of the
first and second halves of the old runs, i.e. how much the old code "changed" against itself), PASS when new / old
<= 1.10, and the PSNR of the new output against the old one (identical code gives inf).

``backend=`` is passed to the new Stylizer only if ``inspect.signature(Stylizer.__init__)`` has that parameter;
the old code is always built without it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import inspect
import io
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("IMPASTO_SHARED_DIR", ROOT.parent / "shared"))
DEFAULT_CONTENT = SHARED / "data" / "content" / "pytorch-AdaIN__chicago.jpg"
DEFAULT_STYLE = SHARED / "data" / "style" / "AdaAttN__udnie.jpg"

#: The commit the backend refactor (issue 23) started from: the default ``--old``.
REFACTOR_BASE = "2aab320"
#: Name the old copy of the package is imported under.
OLD_PACKAGE = "impasto_old"
#: Cases run by default (labels of ``bench_inference.CONFIGS``).
DEFAULT_CASES = ("adain-16x", "microast", "wct-16x", "adain-vgg19-r31")
#: new / old at or under this passes.
PASS_RATIO = 1.10


def _bench_inference() -> Any:
    """benchmarks/bench_inference.py as a module (for its case configurations and machine descriptions)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module("bench_inference")


# ---------------------------------------------------------------------------------------------------------------
# The old code as a second package
# ---------------------------------------------------------------------------------------------------------------
_REWRITES = (
    (re.compile(r"\bimpasto\."), OLD_PACKAGE + "."),  # impasto.x.y in imports, strings, docstrings
    (re.compile(r"\bfrom impasto import\b"), f"from {OLD_PACKAGE} import"),
    (re.compile(r"\bimport impasto\b(?![\w.])"), f"import {OLD_PACKAGE}"),
)


def rewrite_package_refs(source: str) -> str:
    """A .py file's text with its references to the package ``impasto`` pointing at :data:`OLD_PACKAGE`."""
    for pattern, repl in _REWRITES:
        source = pattern.sub(repl, source)
    return source


def resolve_rev(rev: str, repo: Path = ROOT) -> str:
    """The full commit hash of a git revision (SystemExit with git's message if it is not one)."""
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"--old {rev!r} is not a commit of {repo}")
    return proc.stdout.strip()


def extract_old_package(rev: str, dest: Path, repo: Path = ROOT) -> Path:
    """``git archive rev src/impasto`` unpacked as ``dest/impasto_old`` with its imports rewritten; returns the
    package folder. Put ``dest`` on ``sys.path`` to import it."""
    proc = subprocess.run(["git", "archive", "--format=tar", rev, "src/impasto"], cwd=repo, capture_output=True)
    if proc.returncode:
        raise SystemExit(f"git archive {rev} src/impasto failed: {proc.stderr.decode(errors='replace').strip()}")
    raw = dest / "_archive"
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(raw, filter="data")
        else:  # pragma: no cover - Python without extraction filters (our own repository's archive)
            tar.extractall(raw)
    pkg = dest / OLD_PACKAGE
    (raw / "src" / "impasto").rename(pkg)
    for path in pkg.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        new = rewrite_package_refs(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
    return pkg


def import_old_stylizer(folder: Path) -> Any:
    """``impasto_old.pipeline.Stylizer`` from ``folder`` (which holds ``impasto_old/``). Checks that importing it
    pulled in no module of the new package."""
    before = {m for m in sys.modules if m == "impasto" or m.startswith("impasto.")}
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    pipeline = importlib.import_module(f"{OLD_PACKAGE}.pipeline")
    if not Path(pipeline.__file__).resolve().is_relative_to(folder.resolve()):
        raise RuntimeError(f"{OLD_PACKAGE}.pipeline was imported from {pipeline.__file__}, not from {folder}")
    leaked = {m for m in sys.modules if m == "impasto" or m.startswith("impasto.")} - before
    if leaked:
        raise RuntimeError(f"importing {OLD_PACKAGE} imported the new package's modules: {sorted(leaked)[:5]}")
    return pipeline.Stylizer


def import_new_stylizer() -> Any:
    pipeline = importlib.import_module("impasto.pipeline")
    return pipeline.Stylizer


def accepts_backend(stylizer_cls: Any) -> bool:
    """Whether ``Stylizer.__init__`` declares a ``backend`` parameter."""
    try:
        return "backend" in inspect.signature(stylizer_cls.__init__).parameters
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------------------------
# Inputs and statistics
# ---------------------------------------------------------------------------------------------------------------
def load_style(path: str | Path, style_size: int) -> torch.Tensor:
    """The style image with its long side shrunk to ``style_size`` (as ``bench_inference.py`` passes it)."""
    from PIL import Image

    with Image.open(path) as im:
        sw, sh = im.size
    scale = min(1.0, style_size / max(sw, sh))
    return _bench_inference().load_rgb(path, max(1, round(sw * scale)), max(1, round(sh * scale)))


def iqr_rel(xs: Sequence[float]) -> float:
    """(p75 - p25) / median of the runs; 0 for a single run."""
    if len(xs) < 2:
        return 0.0 if xs else float("nan")
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(xs)


def halves_ratio(xs: Sequence[float]) -> float:
    """Median of the second half of the runs / median of the first half (NaN under 2 runs): the drift of one
    side against itself during the case."""
    if len(xs) < 2:
        return float("nan")
    h = len(xs) // 2
    return statistics.median(xs[len(xs) - h :]) / statistics.median(xs[:h])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (inf when identical; NaN when their shapes differ)."""
    if a.shape != b.shape:
        return float("nan")
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def bf16_supported() -> bool:
    with contextlib.suppress(AttributeError, RuntimeError):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


# ---------------------------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    label: str
    method: str
    options: dict[str, Any]
    width: int
    height: int
    precision: str

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass
class Side:
    """One Stylizer of a case and its timed runs."""

    name: str  # "old" or the new Stylizer's backend
    stylizer: Any = None
    times: list[float] = field(default_factory=list)
    out: torch.Tensor | None = None
    describe: str = ""
    error: str | None = None


def _run(side: Side, content: torch.Tensor, style: torch.Tensor) -> float:
    gc.collect()
    t0 = time.perf_counter()
    side.out = side.stylizer.stylize_tensor(content, style)
    return time.perf_counter() - t0


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def run_case(
    case: Case,
    old_cls: Any,
    new_cls: Any,
    backends: Sequence[str | None],
    content: torch.Tensor,
    style: torch.Tensor,
    rounds: int,
    warmup: int = 1,
    style_size: int = 512,
) -> list[dict[str, Any]]:
    """Build, warm up and time the old Stylizer and one new Stylizer per backend (None: no ``backend=``),
    interleaved; one result row per backend."""
    common = dict(device="cpu", precision=case.precision, style_size=style_size, **case.options)
    old = Side("old")
    news = [Side(b or "-") for b in backends]
    try:
        old.stylizer = old_cls(case.method, **common)
        old.describe = old.stylizer.describe()
    except Exception as exc:  # reported in the table
        old.error = _err(exc)
    for side, backend in zip(news, backends, strict=True):
        try:
            extra = {"backend": backend} if backend is not None else {}
            side.stylizer = new_cls(case.method, **common, **extra)
            side.describe = side.stylizer.describe()
        except Exception as exc:
            side.error = _err(exc)
    sides = [s for s in [old, *news] if s.error is None]
    for side in sides:  # warm-up: the first call encodes and caches the style
        try:
            for _ in range(max(1, warmup)):
                _run(side, content, style)
        except Exception as exc:
            side.error = _err(exc)
    sides = [s for s in sides if s.error is None]
    for _ in range(rounds):
        for side in sides:  # old first, then each backend of the new code
            if side.error is None:
                try:
                    side.times.append(_run(side, content, style))
                except Exception as exc:
                    side.error = _err(exc)
    rows = []
    for side in news:
        row: dict[str, Any] = {
            "label": case.label,
            "method": case.method,
            "options": " ".join(f"{k}={v}" for k, v in case.options.items()) or "-",
            "precision": case.precision,
            "size": case.size,
            "backend": side.name,
            "rounds": rounds,
            "old_describe": old.describe,
            "new_describe": side.describe,
            "old_times": [round(t, 6) for t in old.times],
            "new_times": [round(t, 6) for t in side.times],
        }
        error = f"old: {old.error}" if old.error else f"new: {side.error}" if side.error else None
        if error or not old.times or not side.times:
            row["error"] = error or "no timed runs"
            rows.append(row)
            continue
        row.update(
            old_s=_bench_inference()._median(old.times),
            new_s=_bench_inference()._median(side.times),
            old_iqr=iqr_rel(old.times),
            new_iqr=iqr_rel(side.times),
            old_halves=halves_ratio(old.times),
            new_halves=halves_ratio(side.times),
        )
        row["ratio"] = row["new_s"] / row["old_s"]
        row["verdict"] = "PASS" if row["ratio"] <= PASS_RATIO else "FAIL"
        row["psnr"] = psnr(side.out, old.out) if side.out is not None and old.out is not None else float("nan")
        rows.append(row)
    for side in [old, *news]:  # free the models before the next case
        side.stylizer = None
        side.out = None
    gc.collect()
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------
def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.{nd}f}"
    return str(x)


CSV_FIELDS = [
    "label", "method", "options", "precision", "size", "backend", "rounds", "old_s", "new_s", "ratio", "verdict",
    "old_iqr", "new_iqr", "old_halves", "new_halves", "psnr", "old_times", "new_times", "old_describe",
    "new_describe", "error",
]  # fmt: skip


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    _bench_inference().write_rows(rows, path, CSV_FIELDS)


def table_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The results table (markdown)."""
    L = [
        "| case | prec | size | backend | old s | new s | new/old | <= 1.10 | old IQR/med | new IQR/med "
        "| old 2nd/1st half | PSNR new vs old dB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['label']} | {r['precision']} | {r['size']} | {r['backend']} |"
        if "error" in r:
            L.append(f"{head} error: {r['error'][:120]} | | | | | | | |")
            continue
        L.append(
            f"{head} {_fmt(r['old_s'])} | {_fmt(r['new_s'])} | {_fmt(r['ratio'], 2)} | {r['verdict']} | "
            f"{_fmt(r['old_iqr'], 2)} | {_fmt(r['new_iqr'], 2)} | {_fmt(r['old_halves'], 2)} | "
            f"{_fmt(r['psnr'], 1)} |"
        )
    return L


def _verdict(rows: list[dict], what: str) -> str:
    """One line: how many of ``rows`` are within PASS_RATIO of the old code, and which are not."""
    if not rows:
        return ""
    fails = [r for r in rows if r["ratio"] > PASS_RATIO]
    ratios = [r["ratio"] for r in rows]
    return (f"Verdict, {what}: {len(rows) - len(fails)} of {len(rows)} rows within {PASS_RATIO:.2f}x of the old "
            f"code (new/old {min(ratios):.2f}-{max(ratios):.2f})"
            + ("; over it: " + ", ".join(_row_name(r) + f" {r['ratio']:.2f}x" for r in fails) if fails else "")
            + ".\n")


def _row_name(r: dict[str, Any]) -> str:
    return f"{r['label']} {r['precision']} {r['size']} backend {r['backend']}"


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, command: str, meta: dict[str, Any]) -> None:
    ok = [r for r in rows if "error" not in r]
    L = [
        "# impasto: old against new code, in one process",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"- Date: {meta['date']}; machine: {meta['cpu']}, {meta['threads']} threads (`torch.set_num_threads`), "
        f"torch {meta['torch']}, Python {meta['python']}, OMP_WAIT_POLICY {meta['omp']}.",
        f"- Old code: `src/impasto` at {meta['old_rev']} (`--old {meta['old_arg']}`), imported as "
        f"`{OLD_PACKAGE}`. New code: `impasto` from `{meta['new_path']}`, repository at commit {meta['commit']}.",
        f"- New `Stylizer` has a `backend` parameter: {'yes' if meta['has_backend'] else 'no'}; backends run: "
        f"{', '.join(meta['backends'])}.",
        f"- Load average (1 min) at start / end: {meta['load_start']} / {meta['load_end']}. Content "
        f"`{meta['content']}` resized to each size; style `{meta['style']}` (style_size {meta['style_size']}), "
        f"cached. {meta['rounds']} rounds after {meta['warmup']} warm-up run(s) per Stylizer; wall time "
        f"{meta['wall_s'] / 60:.1f} min.",
    ]
    if meta.get("skipped"):
        L.append(f"- Not run: {meta['skipped']}.")
    L += [
        "",
        "Each round times one `stylize_tensor(content, style)` of the old Stylizer, then one of the new Stylizer "
        "per backend (same process, same inputs, style cached). old s / new s = medians of the rounds; new/old = "
        f"their ratio, PASS when <= {PASS_RATIO:.2f}; IQR/med = (p75 - p25) / median of that side's runs; old "
        "2nd/1st half = median of the old code's second half of rounds / median of its first half (the old code "
        "against itself: differences of that size between old and new are noise); PSNR = the new output against "
        "the old one (inf: identical).",
        "",
        *table_lines(rows),
        "",
        "Noise: "
        + (
            f"old IQR/median {min(r['old_iqr'] for r in ok):.2f}-{max(r['old_iqr'] for r in ok):.2f}, new "
            f"{min(r['new_iqr'] for r in ok):.2f}-{max(r['new_iqr'] for r in ok):.2f}; old against itself "
            "(2nd/1st half) "
            + (
                f"{min(r['old_halves'] for r in ok if not math.isnan(r['old_halves'])):.2f}-"
                f"{max(r['old_halves'] for r in ok if not math.isnan(r['old_halves'])):.2f}."
                if any(not math.isnan(r["old_halves"]) for r in ok)
                else "- (one round)."
            )
            if ok
            else "no case ran."
        ),
        "",
        _verdict([r for r in ok if r["backend"] == "auto"], "the default backend (auto)"),
        _verdict([r for r in ok if r["backend"] != "auto"], "the other backends (opt-in, for information)"),
        (f"{len(rows) - len(ok)} rows with errors." if len(rows) > len(ok) else ""),
        "",
        "Resolved configurations (`describe()`):",
        "",
    ]
    seen = set()
    for r in rows:
        for who, d in (("old", r.get("old_describe")), (f"new, backend {r['backend']}", r.get("new_describe"))):
            key = (r["label"], r["precision"], who, d)
            if d and key not in seen:
                seen.add(key)
                L.append(f"- {r['label']} {r['precision']} ({who}): {d}")
    L.append("")
    path.write_text("\n".join(L))


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def _show_path(path: Path) -> str:
    """``path`` relative to the current folder when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _parse_size(s: str) -> tuple[int, int]:
    if "x" in s.lower():
        w, h = s.lower().split("x")
        return int(w), int(h)
    return int(s), int(s)


def main(argv: Sequence[str] | None = None) -> int:
    bi = _bench_inference()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", default=REFACTOR_BASE, help=f"git revision of the old code (default {REFACTOR_BASE}, "
                   "the refactor's base)")
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, from: {', '.join(bi.CONFIGS)}")
    p.add_argument("--sizes", default="512,1024", help="comma-separated sides or WxH")
    p.add_argument("--precisions", default="bf16,fp32", help="bf16 runs only where oneDNN has native bf16")
    p.add_argument("--backends", default="auto", help="comma-separated backend= values for the new Stylizer")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (old, new...) per case")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per Stylizer before the rounds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--style-size", type=int, default=512)
    p.add_argument("--content", default=str(DEFAULT_CONTENT))
    p.add_argument("--style", default=str(DEFAULT_STYLE))
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--name", default="backends", help="base name of the .md/.csv written to --out")
    p.add_argument(
        "--omp-wait-policy",
        default=None,
        choices=["active", "passive"],
        help="run the benchmark in a child process with this OMP_WAIT_POLICY (libgomp reads it at start-up); "
        "passive stops idle OpenMP threads from spinning, which matters when other processes share the cores",
    )
    args = p.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.omp_wait_policy and os.environ.get("OMP_WAIT_POLICY", "").lower() != args.omp_wait_policy:
        env = dict(os.environ, OMP_WAIT_POLICY=args.omp_wait_policy)
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv], env=env)

    os.environ.setdefault("IMPASTO_WEIGHTS_DIR", str(SHARED / "weights"))
    labels = [s.strip() for s in args.cases.split(",") if s.strip()]
    for label in labels:
        if label not in bi.CONFIGS:
            raise SystemExit(f"unknown case {label!r}; known: {', '.join(bi.CONFIGS)}")
    sizes = [_parse_size(s.strip()) for s in args.sizes.split(",") if s.strip()]
    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    skipped = []
    if "bf16" in precisions and not bf16_supported():
        precisions.remove("bf16")
        skipped.append("bf16 (no native bf16 in oneDNN on this CPU)")
    torch.set_num_threads(args.threads)
    old_rev = resolve_rev(args.old)
    command = "python " + " ".join(
        shlex.quote(a)
        for a in [os.path.relpath(Path(__file__).resolve(), Path.cwd()), *argv]
    )
    if "IMPASTO_WEIGHTS_DIR" in os.environ:
        command = f"IMPASTO_WEIGHTS_DIR={os.environ['IMPASTO_WEIGHTS_DIR']} " + command
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="impasto-old-") as tmp:
        folder = Path(tmp)
        extract_old_package(old_rev, folder)
        old_cls = import_old_stylizer(folder)
        new_cls = import_new_stylizer()
        has_backend = accepts_backend(new_cls)
        requested = [b.strip() for b in args.backends.split(",") if b.strip()] or ["auto"]
        backends: list[str | None] = list(requested) if has_backend else [None]
        if not has_backend:
            skipped.append(f"backends {', '.join(requested)}: the new Stylizer has no backend parameter, so it ran "
                           "with its defaults (backend '-')")
        with contextlib.suppress(ImportError, AttributeError):  # process-wide, as the impasto command does
            importlib.import_module("impasto.runtime").reuse_freed_memory()
        meta: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpu": bi._cpu_name(),
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "omp": os.environ.get("OMP_WAIT_POLICY") or "unset (libgomp default)",
            "old_arg": args.old,
            "old_rev": old_rev[:10],
            "new_path": _show_path(Path(importlib.import_module("impasto").__file__).parent),
            "commit": bi._git_commit(),
            "has_backend": has_backend,
            "backends": [b or "-" for b in backends],
            "load_start": bi._loadavg(),
            "content": Path(args.content).name,
            "style": Path(args.style).name,
            "style_size": args.style_size,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "skipped": "; ".join(skipped),
        }
        print(f"old: {OLD_PACKAGE} at {old_rev[:10]}; new: {meta['new_path']} ({meta['commit']}); backends "
              f"{meta['backends']}", flush=True)
        style = load_style(args.style, args.style_size)
        rows: list[dict[str, Any]] = []
        for label in labels:
            method, options = bi.CONFIGS[label]
            for w, h in sizes:
                content = bi.load_rgb(args.content, w, h)
                for prec in precisions:
                    case = Case(label, method, dict(options), w, h, prec)
                    t0 = time.perf_counter()
                    for r in run_case(case, old_cls, new_cls, backends, content, style, args.rounds, args.warmup,
                                      args.style_size):
                        rows.append(r)
                        if "error" in r:
                            print(f"{label:16s} {case.size:>10s} {prec} {r['backend']:>8s}  ERROR {r['error']}",
                                  flush=True)
                        else:
                            print(
                                f"{label:16s} {case.size:>10s} {prec} {r['backend']:>8s}  old {r['old_s']:.3f} s  "
                                f"new {r['new_s']:.3f} s  new/old {r['ratio']:.2f} {r['verdict']}  noise "
                                f"{r['old_iqr']:.2f}/{r['new_iqr']:.2f}  PSNR {_fmt(r['psnr'], 1)} dB  "
                                f"[{time.perf_counter() - t0:.0f} s]",
                                flush=True,
                            )
    meta["load_end"] = bi._loadavg()
    meta["wall_s"] = time.perf_counter() - t_start
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / f"{args.name}.csv")
    write_markdown(rows, out_dir / f"{args.name}.md", command, meta)
    print("\n".join(table_lines(rows)))
    print(f"wrote {out_dir / (args.name + '.md')} and .csv ({meta['wall_s'] / 60:.1f} min)")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
