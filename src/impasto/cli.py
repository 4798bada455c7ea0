"""The ``impasto`` command line: stylize | export | methods | weights | serve | web-assets | video | train | evaluate.

The commands only parse options and call the library (Stylizer, trainers, evaluation); user errors are printed
as one message, never as a traceback, and the exit code is non-zero.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from impasto import DEFAULT_METHOD
from impasto.errors import ConfigError, ImpastoError

#: impasto.pipeline.MIN_SIZE_OPTION, for typer's range check of --max-size/--style-size (not imported: the
#: pipeline imports torch, which `impasto --help` should not wait for; a test keeps the two equal)
MIN_SIZE_OPTION = 16

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="impasto: arbitrary artistic style transfer.",
)
weights_app = typer.Typer(no_args_is_help=True, help="List and verify pretrained weight files.")
app.add_typer(weights_app, name="weights")
console = Console(stderr=True)
out_console = Console()
F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def user_errors(fn: F) -> F:
    """Turn ImpastoError into a one-line message and exit code 2, KeyboardInterrupt into exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ImpastoError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)  # [x]: text
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> dict with ints, floats and booleans parsed."""
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"option {p!r} must look like key=value")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = _parse_value(v.strip())
    return out


def method_options(pairs: list[str] | None, **named: Any) -> dict[str, Any]:
    """Method options from ``-O key=value`` strings plus the named options that were given (not None)."""
    opts = parse_options(pairs or [])
    opts.update({k: v for k, v in named.items() if v is not None})
    return opts


def _parse_value(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and not _force_progress(),
    )


def _force_progress() -> bool:
    import os

    return os.environ.get("IMPASTO_PROGRESS", "") == "1"


def _output_name(content: Path, style: Path | None, suffix: str) -> str:
    return f"{content.stem}__{style.stem}{suffix}" if style else f"{content.stem}__stylized{suffix}"


# the method and hardware options of stylize and video (one definition each)
_ENCODER_OPTION = typer.Option(None, "--encoder", help="vgg19 | vgg19-16x (default: best available).")
_DEPTH_OPTION = typer.Option(None, "--depth", help="Encoder depth, e.g. relu3_1.")
_CHECKPOINT_OPTION = typer.Option(None, "--checkpoint", help="Trained model file for the method.")
_OPTIMIZE_OPTION = typer.Option(None, "--optimize/--no-optimize", help="style-swap: pixel optimisation.")
_METHOD_OPTIONS = typer.Option(None, "--option", "-O", help="Extra method option key=value.")
_DEVICE_OPTION = typer.Option("auto", "--device", help="auto | cpu | cuda.")
_PRECISION_OPTION = typer.Option(
    "auto", "--precision", help="auto (bf16 where the hardware has it) | fp32 (exact) | bf16 (about 2x faster)."
)
_BACKEND_OPTION = typer.Option(
    "auto", "--backend", help="How the networks run: auto (fused on a CPU with oneDNN, else eager) | eager (plain "
    "PyTorch) | fused (faster exact CPU kernels) | compile (torch.compile; slow first call per size) | onnxruntime "
    "(float32 ONNX graphs, exported once and cached).",
)


@app.command()
@user_errors
def stylize(
    content: list[str] = typer.Argument(..., help="Content images: files, folders or glob patterns."),
    style: list[str] = typer.Option(..., "--style", "-s", help="Style image(s), folders or globs."),
    output: Path = typer.Option(
        Path("stylized"), "--output", "-o", help="Output file (one result) or folder (several results)."
    ),
    method: str = typer.Option(DEFAULT_METHOD, "--method", "-m", help="Method (see 'impasto methods')."),
    alpha: float = typer.Option(1.0, "--alpha", "-a", help="Style strength in [0, 1]."),
    style_weight: list[float] = typer.Option(
        None, "--style-weight", "-w", help="Mix all styles into one result with these weights."
    ),
    mask: list[str] = typer.Option(None, "--mask", help="Mask image(s): one style per region (see README)."),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the photo's colours."),
    max_size: int = typer.Option(
        None, "--max-size", min=MIN_SIZE_OPTION, help="Cap the long side of the output (pixels)."
    ),
    style_size: int = typer.Option(
        512, "--style-size", min=MIN_SIZE_OPTION, help="Long side the style is resized to."
    ),
    tile_size: int = typer.Option(
        None,
        "--tile-size",
        help="Process in tiles of this size; 0 = never (default: above 4 MP, 1024 px tiles on the real VGG-19, "
        "2048 on the distilled VGG and MicroAST).",
    ),
    pairs: str = typer.Option("all", "--pairs", help="'all': every content x style; 'zip': one-to-one."),
    encoder: str = _ENCODER_OPTION,
    depth: str = _DEPTH_OPTION,
    checkpoint: str = _CHECKPOINT_OPTION,
    optimize: bool = _OPTIMIZE_OPTION,
    option: list[str] = _METHOD_OPTIONS,
    device: str = _DEVICE_OPTION,
    precision: str = _PRECISION_OPTION,
    backend: str = _BACKEND_OPTION,
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search content folders recursively."),
    engine: str = typer.Option(
        "local", "--engine", help="local | ray (Ray Data on a cluster; skips outputs that exist; README: Ray)."
    ),
    address: str = typer.Option(None, "--address", help="--engine ray: cluster address, auto | HOST:PORT (default: "
                                "RAY_ADDRESS, else a Ray started here)."),
    workers: int = typer.Option(None, "--workers", min=1, help="--engine ray: actors (default: cluster CPUs / "
                                "--worker-cpus)."),
    worker_cpus: int = typer.Option(1, "--worker-cpus", min=1, help="--engine ray: CPUs (threads) per actor."),
    overwrite: bool = typer.Option(False, "--overwrite", help="--engine ray: redo outputs that already exist."),
) -> None:
    """Stylise photos with paintings. Exit code 1 if some inputs failed (the others are still written)."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        from impasto.bulk import require_ray

        require_ray()
    from impasto.io.atomic import clean_stale_temporaries, file_in_the_way
    from impasto.io.images import frame_count, iter_image_files, save_image

    if pairs not in ("all", "zip"):
        raise ConfigError(f"--pairs must be 'all' or 'zip', got {pairs!r}")
    contents = iter_image_files(content, recursive=recursive)
    styles = iter_image_files(style)
    if not contents:
        raise ConfigError(f"no content images found in {', '.join(content)}")
    if not styles:
        raise ConfigError(f"no style images found in {', '.join(style)}")
    opts = method_options(option, encoder=encoder, depth=depth, checkpoint=checkpoint, optimize=optimize)
    mixed = bool(style_weight) or bool(mask)
    if mixed:
        jobs: list[tuple[Path, list[Path]]] = [(c, styles) for c in contents]
    elif pairs == "zip":
        if len(contents) != len(styles):
            raise ConfigError(f"--pairs zip needs as many styles as contents ({len(styles)} vs {len(contents)})")
        jobs = [(c, [s]) for c, s in zip(contents, styles, strict=True)]
    else:
        jobs = [(c, [s]) for c, s in itertools.product(contents, styles)]
    single = len(jobs) == 1 and output.suffix.lower() in OUTPUT_SUFFIXES
    if len(jobs) == 1 and not single and output.suffix and not output.is_dir():
        raise ConfigError(
            f"--output {output}: {output.suffix!r} is not an image format impasto writes; name the file "
            f"{output.stem}.png (or {', '.join(OUTPUT_SUFFIXES[1:])}), or create the folder first to write into it"
        )
    if len(jobs) > 1 and output.suffix.lower() in OUTPUT_SUFFIXES:
        raise ConfigError(f"{len(jobs)} results would be written but --output {output} is a single file; give a folder")
    if mask and len(contents) > 1:
        raise ConfigError("--mask works with one content image at a time")
    blocker = file_in_the_way(output.parent if single else output)
    if blocker is not None:  # before the work: every result would fail to be written
        raise ConfigError(f"--output {output}: {blocker} is a file, not a folder; choose another output path")
    for p in clean_stale_temporaries(output.parent if single else output):
        console.print(f"[dim]removed {p}, left by an interrupted run[/]", highlight=False)
    if engine == "ray":
        from impasto.bulk import BulkJob

        bulk = [BulkJob(str(c), tuple(map(str, ss)), str(output if single else output / _output_name(
            c, None if mixed else ss[0], ".png"))) for c, ss in jobs]
        _stylize_on_ray(bulk, output, method=method, address=address, workers=workers, worker_cpus=worker_cpus,
                        overwrite=overwrite, stylizer_kwargs=dict(device=device, precision=precision, backend=backend,
                                                                  style_size=style_size, **opts),
                        stylize_kwargs=dict(alpha=alpha, style_weights=style_weight or None, mask=mask or None,
                                            preserve_color=preserve_color, max_size=max_size, tile_size=tile_size))
        return

    stylizer = _stylizer(method, device=device, precision=precision, backend=backend, style_size=style_size, **opts)
    console.print(f"[dim]{stylizer.describe()}[/]", highlight=False)
    work = stylizer.method.work_size
    if work is not None and max_size is None:
        console.print(
            f"[dim]{stylizer.method.name} works at {work} px on the long side; each result is resized to its photo's "
            f"size (--max-size N: work and write at N px)[/]",
            highlight=False,
        )
    for c in contents:
        frames = frame_count(c)
        if frames > 1:  # impasto video reads animated GIF and PNG (FFmpeg); not multi-page TIFF or animated WebP
            hint = f" ('impasto video {c}' does them all)" if c.suffix.lower() in (".gif", ".png", ".apng") else ""
            console.print(f"[dim]{c} has {frames} frames; the first is stylised{hint}[/]", highlight=False)
    failures: list[tuple[Path, str]] = []
    written = 0
    with _progress() as prog:
        task = prog.add_task("stylizing", total=len(jobs))
        step = prog.add_task("  steps", total=1, visible=stylizer.method.iterative)

        def on_step(done: int, total: int) -> None:
            prog.update(step, completed=done, total=total)

        for c, ss in jobs:
            dest = output if single else output / _output_name(c, None if mixed else ss[0], ".png")
            try:
                img = stylizer.stylize(
                    c,
                    [str(s) for s in ss],
                    alpha=alpha,
                    style_weights=style_weight or None,
                    mask=mask or None,
                    preserve_color=preserve_color,
                    max_size=max_size,
                    tile_size=tile_size,
                    progress=on_step,
                )
                save_image(img, dest)
                written += 1
            except ImpastoError as exc:
                if isinstance(exc, ConfigError) and len(jobs) == 1:
                    raise
                failures.append((c, str(exc)))
                console.print(f"[red]failed:[/] {c}: {exc}", highlight=False)
            prog.advance(task)
    console.print(f"wrote {written} image(s) to {output}" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        for c, msg in failures:
            console.print(f"  - {c}: {msg.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)


def _stylize_on_ray(jobs: list[Any], output: Path, *, method: str, stylizer_kwargs: dict[str, Any],
                    **kwargs: Any) -> None:
    """``impasto stylize --engine ray``: the jobs on Ray Data (impasto.bulk), summarised as the local engine does,
    plus the images skipped (already written) and where the work ran."""
    from impasto.bulk import run_jobs

    # fail fast (exit 2) on a bad method or options, and say what runs, as the local engine does
    console.print(f"[dim]{_stylizer(method, **{**stylizer_kwargs, 'device': 'cpu'}).describe()}[/]", highlight=False)
    with _progress() as prog:
        task = prog.add_task("stylizing", total=len(jobs))

        def on_result(row: dict[str, Any]) -> None:
            if row["status"] == "failed" and not (row.get("config_error") and len(jobs) == 1):
                console.print(f"[red]failed:[/] {escape(row['content'])}: {escape(row['error'])}", highlight=False)
            prog.advance(task)

        result = run_jobs(jobs, method=method, stylizer_kwargs=stylizer_kwargs, on_result=on_result, **kwargs)
    if result.config_errors and len(jobs) == 1:
        raise ConfigError(result.config_errors[0])
    failures = result.failures
    console.print(f"wrote {result.written} image(s) to {output}" + (f", {len(failures)} failed" if failures else ""))
    nodes = ", ".join(f"{n[:8]} {k}" for n, k in sorted(result.images_per_node.items()))
    console.print(
        f"[dim]ray: {result.skipped} already written (skipped); {len(result.images_per_worker)} worker(s) on "
        f"{len(result.images_per_node)} node(s) (images per node: {nodes or 'none'}); paintings encoded per worker: "
        f"{max(result.style_encodings.values(), default=0)} at most; {result.seconds:.1f} s, "
        f"{result.images_per_second:.2f} images/s[/]",
        highlight=False,
    )
    if failures:
        for c, msg in failures:
            console.print(f"  - {c}: {msg.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)


def _table(*columns: str) -> Table:
    """A table whose cells wrap (URLs and paths are printed whole, never cut with '...')."""
    table = Table()
    for c in columns:
        table.add_column(c, overflow="fold")
    return table


def _stylizer(method: str, **kwargs: Any) -> Any:
    """A Stylizer, with the warnings its model files raise (e.g. a smoke-scale checkpoint) printed as lines.

    The command's process is impasto's own, so it also lets glibc keep freed memory for reuse (impasto.runtime);
    the library never changes that process-wide setting by itself."""
    from impasto.pipeline import Stylizer
    from impasto.runtime import reuse_freed_memory

    reuse_freed_memory()

    with _warning_lines():
        return Stylizer(method, **kwargs)


@contextlib.contextmanager
def _warning_lines() -> Iterator[None]:
    """Print the UserWarnings of the block (model files, plugins that fail to load) as one 'warning:' line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                console.print(f"[yellow]warning:[/] {escape(str(w.message))}", highlight=False)


@app.command()
@user_errors
def export(
    method: str = typer.Argument(..., help="Method to export: adain, microast, sanet or iecontraast."),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    int8: bool = typer.Option(False, "--int8", help="Also write NAME.int8.onnx, dynamically quantised to int8."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Trained model file (adain, sanet, iecontraast)."),
) -> None:
    """Export a feed-forward model for deployment (dynamic image sizes; inputs content, style, alpha)."""
    from impasto.export import export_onnx

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt!r} is not supported; use --format onnx")
    opts = {"checkpoint": checkpoint} if checkpoint else {}
    with _progress() as prog:
        prog.add_task(f"exporting {method}", total=None)
        files = export_onnx(method, output, int8=int8, **opts)
    for f in files:
        console.print(f"wrote {f} ({f.stat().st_size / 2**20:.1f} MB)", highlight=False)


@app.command()
@user_errors
def methods(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per method) instead of a table."),
) -> None:
    """List the methods, whether each can run with the weights present, and why not."""
    from impasto.methods import availability, get_method_class, method_names

    with _warning_lines():  # a plugin that fails to load is one line, the other methods are still listed
        method_names()
    if as_json:
        rows = []
        for name in method_names():
            ok, why = availability(name)
            cls = get_method_class(name)
            rows.append({"method": name, "runs": ok, "default": name == DEFAULT_METHOD, "summary": cls.summary,
                         "paper": cls.paper, "why_not": why or ""})
        out_console.print_json(data=rows)
        return
    table = _table("method", "runs here", "about", "details")
    for name in method_names():
        ok, why = availability(name)
        cls = get_method_class(name)
        table.add_row(
            f"{name} (default)" if name == DEFAULT_METHOD else name,
            "[green]yes[/]" if ok else "[red]no[/]",
            f"{cls.summary} ({cls.paper})",
            why if not ok else "",
        )
    out_console.print(table)


@weights_app.command("list")
@user_errors
def weights_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per file) instead of a table."),
) -> None:
    """Show every known weight file: present, missing or corrupt, and where it was found."""
    from impasto import weights

    if as_json:
        rows = [{**r, "url": weights.get(r["name"]).url} for r in weights.status_table()]
        out_console.print_json(data={"files": rows, "searched": [str(d) for d in weights.search_dirs()]})
        return
    table = _table("name", "status", "file", "location / source")
    for row in weights.status_table():
        colour = {"present": "green", "missing": "yellow", "corrupt": "red"}[row["status"]]
        table.add_row(
            row["name"],
            f"[{colour}]{row['status']}[/]",
            row["file"],
            row["location"] or weights.get(row["name"]).url,
        )
    out_console.print(table)
    *given, cache = weights.search_dirs()  # a typo in IMPASTO_WEIGHTS_DIR shows here; a missing cache is normal
    shown = [f"{d} (no such folder; check {weights.ENV_DIRS})" if not d.is_dir() else str(d) for d in given]
    out_console.print(f"searched: {', '.join([*shown, str(cache)])}")


@weights_app.command("verify")
@user_errors
def weights_verify() -> None:
    """Check the sha256 of every weight file present; exit code 1 if any is corrupt."""
    from impasto import weights

    rows = weights.status_table()
    corrupt = [r for r in rows if r["status"] == "corrupt"]
    present = [r for r in rows if r["status"] == "present"]
    for r in present:
        out_console.print(f"[green]ok[/]       {r['name']:28s} {r['location']} ({r['verified']})")
    for r in corrupt:
        out_console.print(f"[red]corrupt[/]  {r['name']:28s} {r['location']} (sha256 mismatch: re-download it)")
    out_console.print(
        f"{len(present)} verified, {len(corrupt)} corrupt, {len(rows) - len(present) - len(corrupt)} missing"
    )
    if corrupt:
        raise typer.Exit(1)


@app.command()
@user_errors
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only; no login)."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="Stylize jobs running at the same time (threads)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest accepted image file (MB)."),
    max_pixels: int = typer.Option(16_000_000, "--max-pixels", help="Largest accepted image (width x height, pixels)."),
    queue: int = typer.Option(8, "--queue", help="Jobs that may wait; more are refused with HTTP 429."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds a job may run before it fails."),
    allow_host: list[str] = typer.Option(
        None, "--allow-host", help="Host name the server answers to besides its own address and localhost (repeat; "
        "'*': any)."),
    allow_origin: list[str] = typer.Option(
        None, "--allow-origin", help="Web origin (https://site.example) allowed to POST jobs (repeat; '*': any)."),
) -> None:
    """Run the web app and HTTP API (page at /, API docs at /docs)."""
    from impasto.runtime import reuse_freed_memory
    from impasto.server.app import ServerConfig, run_server

    reuse_freed_memory()  # impasto's own process: large activations reuse freed memory (impasto.runtime)

    config = ServerConfig(
        host=host,
        port=port,
        workers=workers,
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        queue=queue,
        timeout=timeout,
        allowed_hosts=tuple(allow_host or ()),
        allowed_origins=tuple(allow_origin or ()),
    )
    run_server(config, announce=lambda url: console.print(
        f"impasto web app on {url}/ (API docs at /docs); Ctrl+C stops it", highlight=False))


@app.command("web-assets")
@user_errors
def web_assets(
    tarball: Path = typer.Option(None, "--tarball", help="Use this onnxruntime-web .tgz (from `npm pack "
                                 "onnxruntime-web@VERSION`) instead of downloading it."),
    directory: Path = typer.Option(None, "--dir", help="Install here (default: IMPASTO_ORT_WEB_DIR or the user "
                                   "cache)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even if the files are there."),
) -> None:
    """Fetch onnxruntime-web (pinned, sha512-checked) so the web page can stylize in the visitor's browser."""
    from impasto import webassets

    dest = Path(directory) if directory else webassets.ort_web_dir()
    if not force and webassets.ort_web_status(dest)[0]:
        console.print(f"onnxruntime-web {webassets.ORT_WEB_VERSION} is already in {dest}", highlight=False)
        return
    shown = [-1]

    def progress(done: int, total: int | None) -> None:
        step = done // 2**20 if console.is_terminal else done // (8 * 2**20)  # one line per 8 MB in logs
        if step != shown[0] or (total and done == total):
            shown[0] = step
            of = f" of {total / 2**20:.1f}" if total else ""
            line = f"downloading onnxruntime-web {webassets.ORT_WEB_VERSION}: {done / 2**20:.1f}{of} MB"
            if console.is_terminal:
                console.print("\r" + line, end="", highlight=False)
            else:
                console.print(line, highlight=False)

    try:
        webassets.fetch_ort_web(dest, tarball=tarball, force=force, progress=progress)
    finally:
        if shown[0] >= 0 and console.is_terminal:
            console.print()
    console.print(f"onnxruntime-web {webassets.ORT_WEB_VERSION} verified ({webassets.ORT_WEB_INTEGRITY[:19]}...) and "
                  f"installed in {dest}; `impasto serve` now offers \"in my browser\"", highlight=False)


@app.command()
@user_errors
def video(
    source: Path = typer.Argument(..., help="Video file (mp4, mov, webm, mkv, avi...) or folder of frames."),
    style: list[str] = typer.Option(..., "--style", "-s", help="Style image(s); several are mixed into one."),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Output .mp4 (or .m4v, .mov, .mkv), or a folder for PNG frames (default: IN__STYLE.mp4 here).",
    ),
    method: str = typer.Option(DEFAULT_METHOD, "--method", "-m", help="Method (see 'impasto methods')."),
    alpha: float = typer.Option(1.0, "--alpha", "-a", help="Style strength in [0, 1]."),
    style_weight: list[float] = typer.Option(
        None, "--style-weight", "-w", help="Weights of the styles in the mix (default: equal)."
    ),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the video's colours."),
    max_size: int = typer.Option(
        None, "--max-size", min=MIN_SIZE_OPTION,
        help="Stylise frames at most this long side (pixels); the video keeps its size.",
    ),
    style_size: int = typer.Option(
        512, "--style-size", min=MIN_SIZE_OPTION, help="Long side the style is resized to."
    ),
    encoder: str = _ENCODER_OPTION,
    depth: str = _DEPTH_OPTION,
    checkpoint: str = _CHECKPOINT_OPTION,
    optimize: bool = _OPTIMIZE_OPTION,
    option: list[str] = _METHOD_OPTIONS,
    device: str = _DEVICE_OPTION,
    precision: str = _PRECISION_OPTION,
    backend: str = _BACKEND_OPTION,
    temporal: bool = typer.Option(
        True, "--temporal/--no-temporal", help="Reduce flicker: blend in the previous output warped by optical flow."
    ),
    temporal_strength: float = typer.Option(
        0.5, "--temporal-strength", help="Weight of the warped previous output in [0, 1]."
    ),
    flow: str = typer.Option("dis", "--flow", help="Optical flow: dis | dis-fast (5x faster) | farneback."),
    max_frames: int = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
    fps: str = typer.Option(None, "--fps", help="Frame rate of a frame-folder input, e.g. 25 or 30000/1001."),
    audio: bool = typer.Option(True, "--audio/--no-audio", help="Copy the audio track into the video."),
    crf: int = typer.Option(18, "--crf", help="H.264 quality 0-51 (lower = better and larger)."),
    engine: str = typer.Option("local", "--engine", help="local | ray (segments stylised in parallel on a Ray "
                               "cluster; README: Ray)."),
    address: str = typer.Option(None, "--address", help="--engine ray: cluster address, auto | HOST:PORT."),
    workers: int = typer.Option(None, "--workers", min=1, help="--engine ray: actors (default: cluster CPUs)."),
    segment_frames: int = typer.Option(48, "--segment-frames", min=1, help="--engine ray: frames per segment."),
    overlap: int = typer.Option(8, "--overlap", min=0, help="--engine ray: warm-up frames before each segment "
                                "for the temporal smoothing."),
) -> None:
    """Stylise a video (or a folder of frames) with paintings; keeps frame rate, size and audio."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be 'local' or 'ray', got {engine!r}")
    if engine == "ray":
        from impasto.bulk import require_ray

        require_ray()
    import time
    from fractions import Fraction

    from impasto.io.images import iter_image_files
    from impasto.temporal import TemporalConfig
    from impasto.video import check_video_paths, stylize_video_file

    smoothing = TemporalConfig(strength=temporal_strength, flow=flow) if temporal else None
    rate: Fraction | None = None
    if fps is not None:
        try:
            rate = Fraction(fps)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"--fps must be a number such as 25 or 30000/1001, got {fps!r}") from None
    styles = iter_image_files(style)
    if not styles:
        raise ConfigError(f"no style images found in {', '.join(style)}")
    if output is None:
        output = Path(_output_name(source, styles[0] if len(styles) == 1 else None, ".mp4"))
    info = check_video_paths(source, output, fps=rate)
    opts = method_options(option, encoder=encoder, depth=depth, checkpoint=checkpoint, optimize=optimize)
    stylizer = _stylizer(method, device=device, precision=precision, backend=backend, style_size=style_size, **opts)
    console.print(f"[dim]{stylizer.describe()}[/]", highlight=False)
    with _progress() as prog:
        task = prog.add_task("stylizing", total=info.frames if max_frames is None else min(info.frames, max_frames))
        start = time.perf_counter()

        def on_progress(done: int, total: int | None) -> None:
            speed = done / max(time.perf_counter() - start, 1e-9)
            prog.update(task, completed=done, total=total, description=f"stylizing {speed:5.2f} frames/s")

        if engine == "ray":
            from impasto.bulk_video import stylize_video_on_ray

            result = stylize_video_on_ray(
                source, output, method, [str(s) for s in styles], stylizer_kwargs=dict(
                    device=device, precision=precision, backend=backend, style_size=style_size, **opts), alpha=alpha,
                style_weights=style_weight or None, preserve_color=preserve_color, max_size=max_size,
                temporal=smoothing, max_frames=max_frames, fps=rate, batch_size=1 if stylizer.method.iterative else 4,
                segment_frames=segment_frames, overlap=overlap, address=address, workers=workers,
                progress=on_progress, audio=audio, crf=crf)
            console.print(f"[dim]ray: {len(result.segments)} worker(s) on {len(result.nodes)} node(s) (frames per "
                          f"node: {', '.join(f'{n[:8]} {k}' for n, k in sorted(result.nodes.items()))})[/]",
                          highlight=False)
        else:
            result = stylize_video_file(
                source,
                output,
                stylizer,
                [str(s) for s in styles],
                alpha=alpha,
                style_weights=style_weight or None,
                preserve_color=preserve_color,
                max_size=max_size,
                temporal=smoothing,
                max_frames=max_frames,
                fps=rate,
                batch_size=1 if stylizer.method.iterative else 4,
                progress=on_progress,
                audio=audio,
                crf=crf,
            )
    out = result.output
    details = f"{out.width}x{out.height} at {float(out.fps):.4g} fps"
    if result.processed_size and result.processed_size != (info.width, info.height):
        details += f" (stylised at {result.processed_size[0]}x{result.processed_size[1]})"
    if out.has_audio:
        details += ", audio kept"
    if smoothing is not None:
        details += f", temporal {smoothing.strength:g} ({smoothing.flow})"
    console.print(
        f"wrote {output}: {result.frames} frames, {details}, in {result.seconds:.1f} s "
        f"({result.frames_per_second:.2f} frames/s)",
        highlight=False,
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def train(
    ctx: typer.Context,
    task: str = typer.Argument(
        ..., help="Training task: adain, sanet, iecontraast, refine-encoder, style-swap-inverse."
    ),
    content: str = typer.Option(None, "--content", help="Folder of content photos."),
    style: str = typer.Option(None, "--style", help="Folder of style paintings."),
    config: str = typer.Option(None, "--config", help="YAML configuration file."),
    out: str = typer.Option(None, "--out", help="Output folder (default runs/TASK)."),
    steps: int = typer.Option(None, "--steps", help="Total number of training steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's)."),
) -> None:
    """Train a model; extra arguments are key=value overrides (task_options.NAME=VALUE for task options)."""
    from impasto.training.cli import run_train
    from impasto.training.loop import available_tasks

    with _warning_lines():  # a plugin task that fails to load is one line
        available_tasks()
    result = run_train(task, content, style, config, out, steps, resume, list(ctx.args), threads=threads)
    console.print(
        f"stopped at step {result.step} (interrupted)" if result.interrupted else f"done: step {result.step}",
        highlight=False,
    )
    console.print(f"model: {result.out_dir / 'model.pt'}; checkpoint: {result.checkpoint}", highlight=False)
    if result.interrupted:  # the shell's convention (128 + signal number), so schedulers see the run did not finish
        raise typer.Exit(143 if result.signal == "SIGTERM" else 130)


@app.command()
@user_errors
def evaluate(
    content: str = typer.Option(..., "--content", help="Folder of content photos."),
    style: str = typer.Option(..., "--style", help="Folder of style paintings."),
    out: str = typer.Option(..., "--out", help="Report folder (report.md, CSV files, PNG plots)."),
    methods: str = typer.Option(
        "adain,wct,microast,magenta,style-swap", "--methods", help="Comma-separated methods for studies 1, 2, 5, 6."
    ),
    video: str = typer.Option(None, "--video", help="Folder of video clips (study 5)."),
    pairs: int = typer.Option(24, "--pairs", help="Number of (content, style) pairs sampled."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pair sampling and reshuffles."),
    studies: str = typer.Option(
        None, "--studies", help="Comma-separated study numbers 1-6 (default: all that the given options allow)."
    ),
    checkpoint_classic: str = typer.Option(
        None, "--checkpoint-classic", help="AdaIN model.pt trained with the classic style loss (study 3)."
    ),
    checkpoint_balanced: str = typer.Option(
        None, "--checkpoint-balanced", help="AdaIN model.pt trained with the balanced style loss (study 3)."
    ),
    checkpoint_refined: str = typer.Option(
        None, "--checkpoint-refined", help="model.pt with a refined encoder (encoder_state) for study 4."
    ),
    max_size: int = typer.Option(256, "--max-size", help="Long side of every image."),
    gatys_steps: int = typer.Option(20, "--gatys-steps", help="L-BFGS steps of gatys in the timing study."),
) -> None:
    """Run the papers' evaluation studies and write REPORT_DIR/report.md with tables, plots and raw CSV."""
    from impasto.evaluation.report import prepare_report_dir
    from impasto.evaluation.studies import make_context, parse_studies, run_evaluation

    chosen = parse_studies(studies)
    prepare_report_dir(out)  # before the models load and the studies run
    if studies is None:
        if not (checkpoint_classic and checkpoint_balanced):
            chosen = [s for s in chosen if s != 3]
        if video is None:
            chosen = [s for s in chosen if s != 5]
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    command = "impasto evaluate " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "impasto evaluate"
    with _progress() as progress:
        task = progress.add_task("evaluate", total=len(chosen))
        started = [0]

        def report(desc: str, n: int = 0) -> None:
            if n and desc.startswith("study"):
                if started[0]:
                    progress.advance(task)
                started[0] += 1
            progress.update(task, description=desc)

        ctx = make_context(
            content, style, method_list, pairs=pairs, seed=seed, max_size=max_size, video_dir=video, progress=report
        )
        run_evaluation(
            ctx,
            out,
            chosen,
            checkpoint_classic=checkpoint_classic,
            checkpoint_balanced=checkpoint_balanced,
            checkpoint_refined=checkpoint_refined,
            command=command,
            gatys_steps=gatys_steps,
        )
        progress.update(task, completed=len(chosen), description="done")
    console.print(f"wrote {Path(out) / 'report.md'} (studies {', '.join(map(str, chosen))})", highlight=False)


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
