"""onnxruntime-web for the web page's "in my browser" mode: fetched on request, checked, cached.

The page can run an exported model (:mod:`impasto.export`) in the visitor's browser with onnxruntime-web, so that
photos never leave their machine. onnxruntime-web is not shipped with impasto (its WebAssembly runtime alone is
14 MB): ``impasto web-assets`` downloads the pinned npm tarball (:data:`ORT_WEB_URL`), refuses it unless its sha512
matches npm's ``dist.integrity`` pinned here (:data:`ORT_WEB_INTEGRITY`), and extracts only the files the page loads
(:data:`ORT_WEB_FILES`, plus its ``package.json``) into :func:`ort_web_dir` (``IMPASTO_ORT_WEB_DIR``, default
``~/.cache/impasto/onnxruntime-web-VERSION``). Nothing here touches the network at import or server start; the server
only looks for the extracted files (:func:`ort_web_status`).

On a machine without internet: ``npm pack onnxruntime-web@VERSION`` elsewhere, copy the ``.tgz`` over and run
``impasto web-assets --tarball onnxruntime-web-VERSION.tgz`` (the same integrity check applies).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from impasto.errors import ImpastoError

ORT_WEB_VERSION = "1.30.0"
ORT_WEB_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
#: npm's ``dist.integrity`` of the tarball (``npm view onnxruntime-web@1.30.0 dist.integrity``)
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
#: What the page loads, from ``package/dist/``: the wasm-only script (global ``ort``), the Emscripten glue it imports,
#: and the SIMD WebAssembly runtime (the threaded build also runs single-threaded, without cross-origin isolation).
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: Files copied from ``package/`` beside them (its name, version and licence, MIT).
ORT_WEB_EXTRA = ("package.json",)
ENV_DIR = "IMPASTO_ORT_WEB_DIR"
FETCH_COMMAND = "impasto web-assets"
MARKER = "impasto-ort-web.json"

__all__ = ["ORT_WEB_VERSION", "ORT_WEB_URL", "ORT_WEB_INTEGRITY", "ORT_WEB_FILES", "FETCH_COMMAND", "WebAssetsError",
           "ort_web_dir", "ort_web_status", "fetch_ort_web", "integrity_of"]

Progress = Callable[[int, "int | None"], None]


class WebAssetsError(ImpastoError):
    """The browser runtime cannot be fetched or installed (network, checksum, archive contents)."""


def cache_root() -> Path:
    """impasto's user cache folder (``~/.cache/impasto``)."""
    return Path.home() / ".cache" / "impasto"


def ort_web_dir() -> Path:
    """Where the onnxruntime-web files live: ``IMPASTO_ORT_WEB_DIR`` or the user cache."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else cache_root() / f"onnxruntime-web-{ORT_WEB_VERSION}"


def ort_web_status(directory: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    """(ready, why not): are the extracted files present, complete and of the pinned version? No network."""
    d = Path(directory) if directory is not None else ort_web_dir()
    hint = f"run `{FETCH_COMMAND}` to fetch onnxruntime-web {ORT_WEB_VERSION} (once, about 33 MB)"
    try:
        info = json.loads((d / MARKER).read_text())
    except (OSError, ValueError):
        return False, f"onnxruntime-web is not installed in {d}; {hint}"
    if info.get("version") != ORT_WEB_VERSION or info.get("integrity") != ORT_WEB_INTEGRITY:
        return False, (f"{d} holds onnxruntime-web {info.get('version')}, not the pinned {ORT_WEB_VERSION}; "
                       f"run `{FETCH_COMMAND} --force`")
    for name in ORT_WEB_FILES:
        f = d / name
        if not f.is_file() or f.stat().st_size != info.get("sizes", {}).get(name):
            return False, f"{f} is missing or incomplete; run `{FETCH_COMMAND} --force`"
    return True, ""


def integrity_of(path: str | os.PathLike[str], algorithm: str = "sha512") -> str:
    """A file's Subresource-Integrity string (``sha512-BASE64``), the form of npm's ``dist.integrity``."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{algorithm}-{base64.b64encode(h.digest()).decode()}"


def _download(url: str, dest: Path, progress: Progress | None, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WebAssetsError(
            f"could not download {url} ({reason}); check the network (or a proxy: HTTPS_PROXY), or on a machine "
            f"without internet run `npm pack onnxruntime-web@{ORT_WEB_VERSION}` elsewhere and "
            f"`{FETCH_COMMAND} --tarball onnxruntime-web-{ORT_WEB_VERSION}.tgz` here") from None


def fetch_ort_web(directory: str | os.PathLike[str] | None = None, *,
                  tarball: str | os.PathLike[str] | None = None,
                  url: str | None = None, integrity: str | None = None, force: bool = False,
                  progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Download (or take ``tarball``), verify and extract onnxruntime-web into ``directory``; returns it.

    Does nothing when the files are already there (unless ``force``). The archive's hash must equal ``integrity``
    (``ALGO-BASE64``, default :data:`ORT_WEB_INTEGRITY`) before anything is extracted: a changed or corrupted
    tarball raises :class:`WebAssetsError` and leaves ``directory`` as it was. Only ``package/dist/<name>`` for the
    names in :data:`ORT_WEB_FILES` (and ``package.json``) are read from the archive, as regular files, by exact
    name: no other path can be written. ``progress(bytes_done, bytes_total_or_None)`` is called while downloading.
    """
    dest = Path(directory) if directory is not None else ort_web_dir()
    url, integrity = url or ORT_WEB_URL, integrity or ORT_WEB_INTEGRITY
    if not force and integrity == ORT_WEB_INTEGRITY and ort_web_status(dest)[0]:
        return dest
    algorithm, _, _ = integrity.partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise WebAssetsError(f"unsupported integrity string {integrity[:20]!r}...; expected sha512-BASE64")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WebAssetsError(f"cannot create {dest} ({exc.strerror or exc}); set {ENV_DIR} to a writable "
                             "folder") from None
    with tempfile.TemporaryDirectory(prefix=".ort-web-", dir=dest) as tmp:
        if tarball is not None:
            archive = Path(tarball)
            if not archive.is_file():
                raise WebAssetsError(f"--tarball {archive}: no such file (make it with `npm pack "
                                     f"onnxruntime-web@{ORT_WEB_VERSION}`)")
            source = str(archive)
        else:
            archive, source = Path(tmp) / "onnxruntime-web.tgz", url
            _download(url, archive, progress, timeout)
        got = integrity_of(archive, algorithm)
        if got != integrity:
            raise WebAssetsError(
                f"the onnxruntime-web tarball from {source} does not match its pinned checksum (expected "
                f"{integrity}, got {got}): it is not the published onnxruntime-web {ORT_WEB_VERSION} (changed or "
                f"corrupted on the way); refusing to install it, nothing was written to {dest}")
        wanted = {f"package/dist/{n}": n for n in ORT_WEB_FILES} | {f"package/{n}": n for n in ORT_WEB_EXTRA}
        staged = Path(tmp) / "files"
        staged.mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = wanted.get(member.name)
                    if name is None or not member.isreg() or (staged / name).exists():
                        continue
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    with src, open(staged / name, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise WebAssetsError(f"the onnxruntime-web tarball {source} cannot be read ({exc})") from None
        missing = [n for n in ORT_WEB_FILES if not (staged / n).is_file()]
        if missing:
            raise WebAssetsError(f"the onnxruntime-web tarball {source} lacks package/dist/{', '.join(missing)}; "
                                 f"is it onnxruntime-web {ORT_WEB_VERSION}?")
        (dest / MARKER).unlink(missing_ok=True)  # not ready while files are replaced
        sizes = {}
        for f in sorted(staged.iterdir()):
            sizes[f.name] = f.stat().st_size
            os.replace(f, dest / f.name)
        marker = {"version": ORT_WEB_VERSION, "integrity": integrity, "source": source, "sizes": sizes}
        (dest / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    return dest
