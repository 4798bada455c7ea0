"""Atomic file writing: output appears complete under its final name, or not at all.

Both helpers write to a temporary file in the destination's own directory (so that the final
``os.replace`` is a rename within one file system, which POSIX and Windows make atomic), flush
and ``fsync`` it, then rename it over the destination. If the ``with`` block raises (any
exception, ``KeyboardInterrupt`` included) the temporary file is deleted and an existing
destination file is left untouched.

:func:`atomic_folder` does the same for a folder of files (video frames). Every impasto writer that renames a
temporary into place goes through this module.

Temporary names are hidden (``.name.<random>.tmp``) so that folder listings such as
:func:`impasto.io.iter_image_files` skip them. They are created with ``os.open(..., 0o666)``, so
the final file gets the usual permissions (umask applied) rather than ``mkstemp``'s 0600; a file
that replaces an existing one keeps the existing file's permission bits.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_folder", "atomic_path", "atomic_write", "clean_stale_temporaries", "file_in_the_way", "temp_path"]

_WRITE_MODES = {"w", "wb", "wt", "w+", "wb+", "w+b", "wt+", "w+t"}


#: impasto's temporary names: ``.NAME.PID-TOKEN.tmp`` (or ``.STEM.PID-TOKEN.tmp.SUFFIX``), see :func:`_temp_name`
_TEMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def _temp_name(path: Path, keep_suffix: bool) -> Path:
    """A hidden, random, currently unused name next to ``path``, carrying the writer's process id.

    ``.out.png.4242-1a2b3c4d.tmp`` for ``out.png``, or ``.out.4242-1a2b3c4d.tmp.png`` with ``keep_suffix``; a later
    run removes the ones whose process is gone (:func:`clean_stale_temporaries`).
    """
    for _ in range(100):
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        if keep_suffix:
            name = f".{path.stem}.{token}.tmp{path.suffix}"
        else:
            name = f".{path.name}.{token}.tmp"
        candidate = path.with_name(name)
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"could not find a free temporary name next to {path}")  # pragma: no cover


def _existing_mode(path: Path) -> int | None:
    """Permission bits of an existing regular file at ``path``, else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def _fsync_dir(directory: Path) -> None:
    """Best effort: make the rename durable (POSIX only; silently skipped elsewhere)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def temp_path(path: str | os.PathLike[str], keep_suffix: bool = False) -> Path:
    """A fresh temporary name next to ``path`` in impasto's pattern (for writers that rename it themselves)."""
    return _temp_name(Path(path), keep_suffix)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its files
    return True


def clean_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries impasto left in ``folder`` when a writer was killed (SIGKILL, power loss).

    Only names in impasto's own pattern (``.NAME.PID-TOKEN.tmp[.SUFFIX]``) whose process no longer runs are removed
    (files, and the folders of ``impasto video`` frame output); a run still writing keeps its files. Returns them.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m or _process_alive(int(m["pid"])):
            continue
        p = Path(e.path)
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def file_in_the_way(folder: str | os.PathLike[str]) -> Path | None:
    """The existing non-folder (a file) at ``folder`` or at one of its parents, which makes the folder impossible
    to create; None when there is none. For checking an output location before any work is done."""
    folder = Path(folder)
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def _rename_into_place(tmp: Path, path: Path, keep_mode: int | None) -> None:
    """The final step of the file writers here: give ``tmp`` the permissions of the file it replaces, rename it over
    ``path``, make the rename durable."""
    if keep_mode is not None:
        os.chmod(tmp, keep_mode)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _prepare(path: str | os.PathLike[str], make_parents: bool) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name to write to")
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    make_parents: bool = True,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` only if the block succeeds.

    Args:
        path: final destination. Its parent folders are created when ``make_parents`` is true.
        mode: a write mode (``"wb"``, ``"w"``, ``"wt"``, optionally with ``+``); append and read
            modes make no sense for a fresh temporary file and raise ``ValueError``.
        encoding, newline: passed to ``open`` in text mode (``encoding`` defaults to UTF-8 there).

    Yields:
        The open file object. On normal exit it is flushed, fsync-ed, closed and renamed over
        ``path``; on an exception it is closed and deleted and the exception propagates.

    Raises:
        OSError: the folder cannot be created or written, or the rename fails (the temporary
            file is removed in every case).
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"atomic_write needs a write mode such as 'wb' or 'w', got {mode!r}")
    binary = "b" in mode
    if binary and (encoding is not None or newline is not None):
        raise ValueError("encoding and newline apply only to text modes")
    path = _prepare(path, make_parents)
    keep_mode = _existing_mode(path)
    tmp = _temp_name(path, keep_suffix=False)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        if binary:
            f: IO[Any] = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding=encoding or "utf-8", newline=newline)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _rename_into_place(tmp, path, keep_mode)
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary file name that is renamed to ``path`` if the block succeeds.

    For libraries that insist on a file name (PyAV, OpenCV's VideoWriter, ``torch.save`` to a
    path): the temporary name lives in the same folder and ends with the same suffix as ``path``
    (``.out.1a2b3c4d.tmp.mp4`` for ``out.mp4``), so that format detection by extension works. The
    file is not created in advance; the block must create it.

    Yields:
        The temporary ``Path``. On normal exit it is fsync-ed and renamed over ``path``; on an
        exception it is deleted (if it exists) and the exception propagates.

    Raises:
        FileNotFoundError: the block finished without creating the temporary file.
        OSError: the folder cannot be created or the rename fails.
    """
    path = _prepare(path, make_parents)
    keep_mode = _existing_mode(path)
    tmp = _temp_name(path, keep_suffix=True)
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise FileNotFoundError(
                f"nothing was written to the temporary file {tmp}; {path} was left unchanged"
            )
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _rename_into_place(tmp, path, keep_mode)
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder name next to ``path`` that is renamed to ``path`` if the block succeeds.

    For outputs made of many files (the frames of ``impasto video``): the block creates the folder and fills it.
    An existing ``path`` must be an empty folder (the caller checks that before the work starts); it is replaced.
    On an exception (KeyboardInterrupt included) the temporary folder is removed and ``path`` is left untouched.
    """
    path = Path(path)
    tmp = _temp_name(path, keep_suffix=False)
    try:
        yield tmp
        if path.is_dir():
            path.rmdir()  # empty: checked before the work started
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _unlink_quietly(tmp)
        raise
