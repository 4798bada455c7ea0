"""Bulk stylisation on a Ray cluster: the same (photo, painting) jobs as ``impasto stylize``, run by Ray Data.

    from impasto.bulk import stylize_dataset
    result = stylize_dataset(["photos/"], ["monet.jpg"], "out/", address="auto")
    print(result.written, result.skipped, result.failures, result.images_per_node)

The pipeline (``pip install "impasto[ray]"``):

1. the driver plans the jobs exactly as the local engine does (every photo x every painting, ``--pairs zip``, or one
   mix per photo) with the same output names (``PHOTO__PAINTING.png``) and drops the jobs whose output already
   exists, so a rerun of a killed job does only the missing ones;
2. Ray Data reads the photos' bytes in light tasks (``num_cpus=0``: they overlap with the stylisation and never
   wait for a CPU the actors hold); a missing or unreadable file becomes a per-file error, not a failed job;
3. an actor pool stylises batches: each actor builds one :class:`impasto.pipeline.Stylizer` (model loaded once)
   and encodes the paintings once (the Stylizer's style cache; jobs are ordered painting by painting), then
   decodes, stylises and writes each image with :func:`impasto.io.save_image` (atomic: a temporary file renamed
   over the output, so a killed worker never leaves a partial image under an output name);
4. the driver streams the per-image results (written / skipped / failed, the actor's node and process) into a
   :class:`BulkResult`.

Outputs are byte-identical to the local engine's for the same method, precision and number of threads per worker
(``worker_cpus``; the local engine uses all cores: float32 convolutions may round differently with another thread
count, bf16 ones did not here). Paths are shared: every node must see the photos, paintings, weights and output
folder under the same names (a network file system), as for any Ray job that writes files. A worker killed mid-write
leaves only a hidden temporary (``.NAME.PID-TOKEN.tmp``), never a partial output; the next run on the driver's
machine removes those whose process is gone there (:func:`impasto.io.atomic.clean_stale_temporaries`; temporaries
of workers on other machines stay, hidden and harmless: every write uses a fresh name).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto import DEFAULT_METHOD
from impasto.errors import ConfigError, ImpastoError, MissingExtraError
from impasto.extras import missing_extra, require_extra

__all__ = [
    "BulkJob", "BulkResult", "RAY_MISSING", "cluster_env", "local_cluster", "plan_jobs", "require_ray", "run_jobs",
    "stylize_dataset",
]

#: The message (one line) when Ray is not installed.
RAY_MISSING = missing_extra("ray", "ray")
#: Environment variables passed from the driver to the workers (the weights and settings the driver resolved).
_ENV_PREFIXES = ("IMPASTO_", "OMP_WAIT_POLICY")


@dataclass(frozen=True)
class BulkJob:
    """One output: a content image, its style image(s) and the output file."""

    content: str
    styles: tuple[str, ...]
    dest: str


@dataclass
class BulkResult:
    """What a bulk run did. ``failures`` holds (content path, message); ``nodes``/``workers`` count the images
    each Ray node / actor process stylised (written or failed), keyed by node id / ``node:pid``."""

    total: int = 0
    written: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)
    images_per_node: dict[str, int] = field(default_factory=dict)
    images_per_worker: dict[str, int] = field(default_factory=dict)
    style_encodings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        done = self.written + len(self.failures)
        return done / self.seconds if self.seconds > 0 else 0.0


def require_ray() -> Any:
    """Import and return Ray (with Ray Data), or raise MissingExtraError naming ``pip install "impasto[ray]"``."""
    ray = require_extra("ray", "ray")
    require_extra("ray.data", "ray")
    return ray


def _pool_size(ray: Any, workers: int | None, worker_cpus: float, jobs: int) -> int:
    """Set up Ray Data for a job (quiet, and the whole actor pool started before the first batch, so that the work
    spreads over every worker from the start) and return the pool's size: ``workers``, or the cluster's CPUs /
    ``worker_cpus``; at most one actor per job."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.wait_for_min_actors_s = 600
    if workers is None:
        workers = max(1, int(float(ray.cluster_resources().get("CPU", 1)) // worker_cpus))
    return max(1, min(workers, jobs))


def output_name(content: Path, style: Path | None, suffix: str = ".png") -> str:
    """``PHOTO__PAINTING.png`` (or ``PHOTO__stylized.png`` for a mix): the local engine's names."""
    return f"{content.stem}__{style.stem}{suffix}" if style else f"{content.stem}__stylized{suffix}"


def plan_jobs(
    contents: Sequence[str | Path],
    styles: Sequence[str | Path],
    output: str | Path,
    *,
    pairs: str = "all",
    mixed: bool = False,
    recursive: bool = False,
) -> list[BulkJob]:
    """The jobs ``impasto stylize`` runs: files, folders and globs expanded, then photo x painting (``pairs='all'``),
    one-to-one (``'zip'``) or one mix of all paintings per photo (``mixed``); outputs named as the local engine does
    (``output`` itself when it names an image file and there is one job)."""
    from impasto.io.images import SAVE_EXTENSIONS, iter_image_files

    if pairs not in ("all", "zip"):
        raise ConfigError(f"pairs must be 'all' or 'zip', got {pairs!r}")
    cs = iter_image_files(list(contents), recursive=recursive)
    ss = iter_image_files(list(styles))
    if not cs:
        raise ConfigError(f"no content images found in {', '.join(map(str, contents))}")
    if not ss:
        raise ConfigError(f"no style images found in {', '.join(map(str, styles))}")
    if mixed:
        raw: list[tuple[Path, list[Path]]] = [(c, ss) for c in cs]
    elif pairs == "zip":
        if len(cs) != len(ss):
            raise ConfigError(f"pairs='zip' needs as many styles as contents ({len(ss)} vs {len(cs)})")
        raw = [(c, [s]) for c, s in zip(cs, ss, strict=True)]
    else:
        raw = [(c, [s]) for c, s in itertools.product(cs, ss)]
    output = Path(output)
    single = len(raw) == 1 and output.suffix.lower() in SAVE_EXTENSIONS
    if len(raw) > 1 and output.suffix.lower() in SAVE_EXTENSIONS:
        raise ConfigError(f"{len(raw)} results would be written but output {output} is a single file; give a folder")
    return [
        BulkJob(str(c), tuple(map(str, s)), str(output if single else output / output_name(c, None if mixed else s[0])))
        for c, s in raw
    ]


def _read_content(row: dict[str, Any]) -> dict[str, Any]:
    """Ray Data read step: the photo's bytes, or the reason it cannot be read (the local engine's message)."""
    from impasto.io.images import _check_path

    row = dict(row)
    row["data"], row["read_error"] = b"", ""
    try:
        _check_path(Path(row["content"]))
        row["data"] = Path(row["content"]).read_bytes()
    except ImpastoError as exc:
        row["read_error"] = str(exc)
    except OSError as exc:
        row["read_error"] = f"cannot read {row['content']}: {exc.strerror or exc}"
    return row


class _StylizeWorker:
    """Ray Data actor: one Stylizer (model and style codes loaded once), stylises and writes a batch of jobs."""

    def __init__(
        self,
        method: str,
        stylizer_kwargs: dict[str, Any],
        stylize_kwargs: dict[str, Any],
        styles: list[str],
        overwrite: bool,
        threads: int,
    ) -> None:
        import warnings

        import ray
        import torch

        from impasto.pipeline import Stylizer
        from impasto.runtime import reuse_freed_memory

        torch.set_num_threads(max(1, threads))
        reuse_freed_memory()  # as the `impasto` command does in its own process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the driver already printed them
            self.stylizer = Stylizer(method, **stylizer_kwargs)
        self.stylize_kwargs = stylize_kwargs
        self.overwrite = overwrite
        self.node = ray.get_runtime_context().get_node_id()
        self.worker = f"{self.node[:8]}:{os.getpid()}"
        for s in styles[: self.stylizer._cache_size]:  # encode the paintings once, up front
            try:
                self.stylizer.encode_style(s)
            except ImpastoError:
                pass  # reported per image, as the local engine does

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from impasto.io.images import load_image, save_image

        out: dict[str, list[Any]] = {k: [] for k in ("content", "dest", "status", "error", "config_error",
                                                     "node", "worker", "seconds", "style_encodings")}
        for content, styles, dest, data, read_error in zip(
            batch["content"], batch["styles"], batch["dest"], batch["data"], batch["read_error"], strict=True
        ):
            start = time.perf_counter()
            status, error, config_error = "written", "", False
            if not self.overwrite and os.path.exists(dest):
                status = "skipped"  # written meanwhile (another run): never done twice
            elif read_error:
                status, error = "failed", str(read_error)
            else:
                try:
                    img = load_image(bytes(data), name=str(content))
                    result = self.stylizer.stylize(img, [str(s) for s in styles], **self.stylize_kwargs)
                    save_image(result, dest)
                except ImpastoError as exc:
                    status, error, config_error = "failed", str(exc), isinstance(exc, ConfigError)
                except Exception as exc:  # noqa: BLE001 - one bad image never fails the job
                    status, error = "failed", f"{type(exc).__name__}: {exc}"
            out["content"].append(str(content))
            out["dest"].append(str(dest))
            out["status"].append(status)
            out["error"].append(error)
            out["config_error"].append(config_error)
            out["node"].append(self.node)
            out["worker"].append(self.worker)
            out["seconds"].append(time.perf_counter() - start)
            out["style_encodings"].append(self.stylizer.cache_misses)
        return {k: np.asarray(v) for k, v in out.items()}


def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def _connect(ray: Any, address: str | None, init_kwargs: dict[str, Any] | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so should shut it down)."""
    if ray.is_initialized():
        return False
    import logging

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    kwargs.update(init_kwargs or {})
    if address:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: {exc}; start it with 'ray start'") from None
    return True


def run_jobs(
    jobs: Sequence[BulkJob],
    *,
    method: str = DEFAULT_METHOD,
    stylizer_kwargs: dict[str, Any] | None = None,
    stylize_kwargs: dict[str, Any] | None = None,
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float = 1,
    batch_size: int = 4,
    overwrite: bool = False,
    ray_init_kwargs: dict[str, Any] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> BulkResult:
    """Run planned jobs on Ray Data (see the module docstring); returns a :class:`BulkResult`.

    Args:
        jobs: from :func:`plan_jobs` (or the CLI's own planning).
        method, stylizer_kwargs: the :class:`impasto.pipeline.Stylizer` each actor builds (``precision``,
            ``style_size``, method options...).
        stylize_kwargs: options of :meth:`Stylizer.stylize` (``alpha``, ``style_weights``, ``max_size``...).
        address: ``auto``, ``HOST:PORT`` or ``ray://...``; None: ``RAY_ADDRESS`` or a Ray started in this process.
        workers: actors in the pool (default: the cluster's CPUs / ``worker_cpus``, at most one per job).
        worker_cpus: CPUs each actor holds; it runs torch with that many threads.
        batch_size: jobs per actor call (images are still written one by one, as each is done).
        overwrite: redo outputs that exist (default: skip them, so a rerun resumes a killed job).
        on_result: called on the driver with each finished job's row (``status``: written, skipped, failed).
    """
    ray = require_ray()
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if worker_cpus <= 0:
        raise ConfigError(f"worker_cpus must be > 0, got {worker_cpus}")
    started = time.perf_counter()
    result = BulkResult(total=len(jobs))
    todo, done = [], []
    for j in jobs:
        (done if not overwrite and os.path.exists(j.dest) else todo).append(j)
    result.skipped = len(done)
    for j in done:
        if on_result is not None:
            on_result({"content": j.content, "dest": j.dest, "status": "skipped", "error": ""})
    if not todo:
        result.seconds = time.perf_counter() - started
        return result
    # painting by painting: each actor's batches share a style code (the Stylizer caches the last 32)
    todo.sort(key=lambda j: j.styles)
    styles = sorted({s for j in todo for s in j.styles})
    owns = _connect(ray, address, ray_init_kwargs)
    try:
        workers = _pool_size(ray, workers, worker_cpus, len(todo))
        rows = [{"content": j.content, "styles": list(j.styles), "dest": j.dest} for j in todo]
        # blocks of about two batches: the read tasks stay small and results stream back as they are done
        blocks = min(len(rows), max(workers * 4, -(-len(rows) // (2 * batch_size))), 2000)
        ds = ray.data.from_items(rows, override_num_blocks=max(1, blocks))
        # reading needs no CPU of its own (it never waits for the actors' CPUs), but each concurrent task is a
        # worker process: as many readers as actors keep them ahead without a process per block
        ds = ds.map(_read_content, num_cpus=0, concurrency=workers)
        ds = ds.map_batches(
            _StylizeWorker,
            fn_constructor_kwargs={
                "method": method,
                "stylizer_kwargs": dict(stylizer_kwargs or {}),
                "stylize_kwargs": dict(stylize_kwargs or {}),
                "styles": styles,
                "overwrite": overwrite,
                "threads": max(1, int(worker_cpus)),
            },
            # one block in flight per actor: an actor that started first cannot queue the blocks of a small job
            # before the others are ready for them (a two-node test saw one actor take all 8 under load)
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=worker_cpus,
            scheduling_strategy="SPREAD",  # one actor per node before two on one
            runtime_env={"env_vars": _worker_env()},
        )
        nodes: Counter[str] = Counter()
        per_worker: Counter[str] = Counter()
        for row in ds.iter_rows():
            row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            if row["status"] == "written":
                result.written += 1
            elif row["status"] == "skipped":
                result.skipped += 1
            else:
                result.failures.append((row["content"], row["error"]))
                if row["config_error"]:
                    result.config_errors.append(row["error"])
            if row["status"] != "skipped":
                nodes[row["node"]] += 1
                per_worker[row["worker"]] += 1
                result.compute_seconds += row["seconds"]
            result.style_encodings[row["worker"]] = max(
                result.style_encodings.get(row["worker"], 0), int(row["style_encodings"])
            )
            if on_result is not None:
                on_result(row)
        result.images_per_node = dict(nodes)
        result.images_per_worker = dict(per_worker)
    finally:
        if owns:
            ray.shutdown()
    result.seconds = time.perf_counter() - started
    return result


def stylize_dataset(
    contents: Sequence[str | Path] | str | Path,
    styles: Sequence[str | Path] | str | Path,
    output: str | Path,
    *,
    method: str = DEFAULT_METHOD,
    pairs: str = "all",
    recursive: bool = False,
    alpha: float = 1.0,
    style_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    max_size: int | None = None,
    tile_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "auto",
    style_size: int | None = 512,
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float = 1,
    batch_size: int = 4,
    overwrite: bool = False,
    ray_init_kwargs: dict[str, Any] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **method_options: Any,
) -> BulkResult:
    """Stylise photos x paintings (files, folders, globs) into ``output`` on Ray: ``impasto stylize --engine ray``.

    With ``style_weights`` every photo gets one mix of all paintings (``PHOTO__stylized.png``). See :func:`run_jobs`
    for the Ray options; ``method_options`` go to the method (``encoder``, ``depth``, ``checkpoint``...).
    """
    contents = [contents] if isinstance(contents, (str, Path)) else list(contents)
    styles = [styles] if isinstance(styles, (str, Path)) else list(styles)
    require_ray()
    jobs = plan_jobs(contents, styles, output, pairs=pairs, mixed=bool(style_weights), recursive=recursive)
    from impasto.io.atomic import clean_stale_temporaries

    clean_stale_temporaries(Path(jobs[0].dest).parent)
    return run_jobs(
        jobs,
        method=method,
        stylizer_kwargs={"device": device, "precision": precision, "backend": backend, "style_size": style_size,
                         **method_options},
        stylize_kwargs={
            "alpha": alpha,
            "style_weights": list(style_weights) if style_weights else None,
            "preserve_color": preserve_color,
            "max_size": max_size,
            "tile_size": tile_size,
        },
        address=address,
        workers=workers,
        worker_cpus=worker_cpus,
        batch_size=batch_size,
        overwrite=overwrite,
        ray_init_kwargs=ray_init_kwargs,
        on_result=on_result,
    )


# ----------------------------------------------------------------------------- a cluster on one machine


def cluster_env() -> dict[str, str]:
    """Environment for :func:`local_cluster`'s nodes and drivers: no usage stats, no token authentication (the
    nodes listen on the loopback address only)."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_args(temp_dir: str, cpus: int, object_store_bytes: int) -> list[str]:
    return [
        "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
        f"--object-store-memory={object_store_bytes}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
        f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
    ]


def _groups_using(folders: list[str]) -> set[int]:
    """Process groups of the processes whose command line names one of ``folders`` (our nodes' daemons)."""
    groups = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if any(f in cmd for f in folders):
                groups.add(os.getpgid(int(pid)))
        except OSError:
            continue
    groups.discard(os.getpgid(0))
    return groups


def _stop_nodes(folders: list[str]) -> None:
    """End the nodes' process groups (TERM, then KILL): by id, never ``ray stop``, which ends every Ray of the user."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        groups = _groups_using(folders)
        for g in groups:
            with contextlib.suppress(OSError):
                os.killpg(g, sig)
        deadline = time.time() + wait
        while groups and time.time() < deadline and _groups_using(folders):
            time.sleep(0.2)


@contextlib.contextmanager
def local_cluster(
    nodes: int = 2, cpus_per_node: int = 1, *, object_store_bytes: int = 200_000_000, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A real multi-node Ray cluster on this machine, for tests and benchmarks: ``ray start --head`` plus
    ``nodes - 1`` ``ray start --address`` node processes, each with its own temporary folder, ports and
    ``cpus_per_node`` CPUs. Yields the head's address (``127.0.0.1:PORT``); the nodes are stopped on exit.

    ``env`` is the nodes' environment (default: this process's plus :func:`cluster_env`): the workers import impasto
    and find the weights through it.
    """
    if shutil.which("ray") is None:
        raise MissingExtraError(RAY_MISSING)
    env = dict(env) if env is not None else {**os.environ, **cluster_env()}
    folders = [tempfile.mkdtemp(prefix=f"imray{i}", dir="/tmp") for i in range(nodes)]  # short: socket paths
    address = f"127.0.0.1:{_free_port()}"
    try:
        for i, folder in enumerate(folders):
            first = ["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"]
            args = [*(first if i == 0 else [f"--address={address}"]), *_node_args(folder, cpus_per_node,
                                                                                object_store_bytes)]
            # a session of its own: the node's daemons form one process group that _stop_nodes can end
            r = subprocess.run(["ray", "start", *args], env=env, capture_output=True, text=True, timeout=120,
                               start_new_session=True)
            if r.returncode != 0:
                raise RuntimeError(f"ray start {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        yield address
    finally:
        _stop_nodes(folders)
        for f in folders:
            shutil.rmtree(f, ignore_errors=True)
