"""One atomic write for every file topovae produces.

A file is written to a temporary name in the same folder, flushed and fsynced, renamed over the
target with :func:`os.replace` (atomic on POSIX and Windows), and the folder is fsynced where the
platform allows it, so a crash or a kill leaves either the old file or the new one, never a torn
one. Every writer (configs, run results, weights, checkpoints, reports, downloads) goes through
:func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_file", "atomic_write_json",
           "atomic_write_text",
           "fsync_dir", "temporary_path"]


def fsync_dir(directory: str | Path) -> None:
    """fsync a folder so a rename inside it survives a power loss (a no-op where unsupported)."""
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temporary_path(path: str | Path) -> Path:
    """The hidden temporary name beside ``path`` used while it is being written."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None],
                 wrap: Callable[[IO[bytes]], IO[bytes]] | None = None) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary binary file beside it.

    ``wrap`` optionally wraps the raw handle (e.g. to checksum what is written); the wrapper is
    flushed before the fsync.
    """
    path = Path(path)
    with _replacing(path) as tmp:
        with open(tmp, "wb") as raw:
            handle = wrap(raw) if wrap is not None else raw
            write(handle)
            handle.flush()
            os.fsync(raw.fileno())
    return path


def atomic_write_file(path: str | Path, produce: Callable[[Path], None]) -> Path:
    """Atomic write for libraries that only write to a file name (``safetensors.save_file``):
    ``produce(tmp)`` writes the temporary file, which is then fsynced and renamed."""
    path = Path(path)
    with _replacing(path) as tmp:
        produce(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (strict: no NaN or infinity) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")
