"""Your own data on disk: image arrays, folders of PNG/JPEG files and arrays of sequences.

Readers for ``data.source=images`` and ``data.source=sequences`` (see ``docs/your-data.md``).
Files are data, never code: arrays are read with ``allow_pickle=False``, pictures with Pillow.
Every problem is a :class:`DataFileError` (a ``ValueError``) of one line that starts with the
file it is about and says what is wrong: the wrong rank or channel count, mixed image sizes in a
folder, NaN/inf or out-of-range pixels, an empty folder, a file that is not an image, labels or
factors whose length differs from the images.

* **Images** ``(N, H, W)`` or ``(N, C, H, W)``, ``C`` 1 (grey) or 3 (RGB), uint8 (0..255) or float
  in [0, 1]: a ``.npy`` file, a ``.npz`` file (key ``images``, or its only array; optional
  ``labels`` ``(N,)``), or a folder of ``.png``/``.jpg``/``.jpeg`` files of one size (sorted by
  path; when they sit in sub-folders, the label of an image is the index of its sub-folder).
* **Sequences** ``(N, S, C, H, W)``, same pixel rules: a ``.npy`` file (memory-mapped: only the
  rows a batch needs are read), a ``.npz`` file (key ``sequences`` or its only array; optional
  ``factors`` ``(N, S, F)``, ``labels`` ``(N,)``, ``factor_names`` ``(F,)`` strings; an ``.npz``
  is read whole when opened), or a folder of such files (sorted by name) that are concatenated.
  A ``.npy`` file's float pixels are checked in chunks read with plain file reads, so checking
  a file larger than memory does not map it all in.

One module (about 460 lines) on purpose: every reader of your files shares the same checks and
the same one-line error type, so a problem is worded the same way whichever file shape it is in.

Kept as one module (about 460 lines): the readers of the three kinds of files share their checks
and their one error type, and each check is written once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DataFileError", "IMAGE_SUFFIXES", "check_pixels", "check_sequence_array",
           "check_factors", "read_images", "read_image_folder", "read_labels", "SequenceArrays",
           "open_sequences", "as_image_array"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
CHANNELS = (1, 3)
_CHUNK_BYTES = 4 << 20


class DataFileError(ValueError):
    """A data file that is not what it should be (one line: the file, then the problem)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


# -- pixels --------------------------------------------------------------------------------------
def _check_value_block(block: np.ndarray, where: str, first_row: int, what: str) -> None:
    if not np.isfinite(block).all():
        bad = int(np.argwhere(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))[0, 0])
        raise DataFileError(where, f"holds NaN or infinite pixel values (first in {what} "
                                   f"{first_row + bad})")
    low, high = float(block.min()), float(block.max())
    if low < 0.0 or high > 1.0:
        raise DataFileError(where, f"float pixels must lie in [0, 1], found values in "
                                   f"[{low:.4g}, {high:.4g}] (uint8 0..255 is accepted too)")


def _blocks(array: np.ndarray) -> Any:
    """``(first_row, block)`` over ``array`` in chunks; a memory-mapped ``.npy`` array is read
    with plain file reads (its pages are never mapped into this process)."""
    n = len(array)
    row_bytes = max(1, array[:1].nbytes)
    rows = max(1, _CHUNK_BYTES // row_bytes)
    if (isinstance(array, np.memmap) and array.filename and array.flags.c_contiguous
            and isinstance(array.offset, int)):
        with open(array.filename, "rb") as handle:
            for start in range(0, n, rows):
                count = min(rows, n - start)
                handle.seek(array.offset + start * row_bytes)
                data = handle.read(count * row_bytes)
                yield start, np.frombuffer(data, dtype=array.dtype).reshape(count,
                                                                             *array.shape[1:])
        return
    for start in range(0, n, rows):
        yield start, np.asarray(array[start:start + rows])


def check_pixels(array: np.ndarray, where: str | Path, what: str = "image") -> None:
    """Raise :class:`DataFileError` unless ``array`` is uint8, or float finite in [0, 1]."""
    if array.dtype == np.uint8:
        return
    if not np.issubdtype(array.dtype, np.floating):
        raise DataFileError(where, f"pixels must be uint8 (0..255) or float in [0, 1], got dtype "
                                   f"{array.dtype}")
    for start, block in _blocks(array):
        _check_value_block(block, str(where), start, what)


def _channels_hint(shape: tuple[int, ...], axis: int) -> str:
    if shape[-1] in CHANNELS and shape[axis] not in CHANNELS:
        return " (it looks channels-last: move the channel axis, e.g. np.moveaxis(a, -1, "\
               f"{axis}))"
    return ""


def as_image_array(array: np.ndarray, where: str | Path) -> np.ndarray:
    """``(N, C, H, W)`` view of images ``(N, H, W)`` or ``(N, C, H, W)``, checked."""
    if array.dtype == object:
        raise DataFileError(where, "holds Python objects, not a numeric array")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim != 4:
        raise DataFileError(where, f"images must be (N, H, W) or (N, C, H, W), got shape "
                                   f"{tuple(array.shape)}")
    if array.shape[1] not in CHANNELS:
        raise DataFileError(where, f"images must have 1 or 3 channels on axis 1, got shape "
                                   f"{tuple(array.shape)}{_channels_hint(array.shape, 1)}")
    if len(array) == 0:
        raise DataFileError(where, "holds no images")
    if min(array.shape[2:]) < 1:
        raise DataFileError(where, f"images have an empty side: shape {tuple(array.shape)}")
    check_pixels(array, where)
    return array


# -- arrays ----------------------------------------------------------------------------------------
def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise DataFileError(path, "holds Python objects (pickled data is never loaded); "
                                      "save a numeric array") from None
        raise DataFileError(path, f"is not a valid .npy array ({err})") from None
    except OSError as err:
        raise DataFileError(path, f"cannot be read as a .npy array ({err})") from None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise DataFileError(path, "is not an .npz archive")
            return {key: archive[key] for key in archive.files}
    except DataFileError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise DataFileError(path, "holds Python objects (pickled data is never loaded); "
                                      "save numeric arrays") from None
        raise DataFileError(path, f"is not a valid .npz archive ({err})") from None
    except (OSError, EOFError) as err:
        raise DataFileError(path, f"cannot be read as an .npz archive ({err})") from None


def _main_array(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key in arrays:
        return arrays[key]
    others = [k for k in arrays if k not in ("labels", "factors", "factor_names")]
    if len(others) == 1:
        return arrays[others[0]]
    raise DataFileError(path, f"has no array {key!r} (it holds {sorted(arrays)})")


def read_labels(path: str | Path, n: int, what: str = "images",
                source: str | Path = "") -> torch.Tensor:
    """Integer labels ``(n,)`` from a ``.npy`` file (or an array already read)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "labels file does not exist")
    return _labels(_load_npy(path, mmap=False), n, path, what, source)


def _labels(array: np.ndarray, n: int, where: str | Path, what: str,
            source: str | Path = "") -> torch.Tensor:
    array = np.asarray(array)
    of = f" in {source}" if source else ""
    if array.ndim != 1:
        raise DataFileError(where, f"labels must be one integer per entry (N,), got shape "
                                   f"{tuple(array.shape)}")
    if len(array) != n:
        raise DataFileError(where, f"has {len(array)} labels for {n} {what}{of}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        if not (np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all()
                and (array == np.round(array)).all()):
            raise DataFileError(where, f"labels must be integers, got dtype {array.dtype}")
    return torch.from_numpy(array.astype(np.int64))


def read_image_folder(directory: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images ``(N, C, H, W)`` uint8 of every PNG/JPEG file under ``directory`` (sorted by path)
    and labels (index of the sub-folder) when the files sit in more than one folder."""
    from PIL import Image, UnidentifiedImageError

    directory = Path(directory)
    if not directory.is_dir():
        raise DataFileError(directory, "is not a folder")
    files: list[Path] = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue  # hidden files (.DS_Store, editor files) and folders
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataFileError(path, "is not a PNG/JPEG image (an image folder holds only "
                                      ".png/.jpg/.jpeg files, in sub-folders per class if "
                                      "labelled)")
        files.append(path)
    if not files:
        raise DataFileError(directory, "holds no .png/.jpg/.jpeg images")
    arrays: list[np.ndarray] = []
    first: tuple[Path, tuple[int, ...]] | None = None
    for path in files:
        try:
            with Image.open(path) as picture:
                picture.load()
                mode = picture.mode
                if mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):
                    grey = mode in ("1", "L", "LA")
                    array = np.asarray(picture.convert("L" if grey else "RGB"), dtype=np.uint8)
                else:
                    raise DataFileError(path, f"has pixel mode {mode!r} (16-bit or float); save "
                                              "8-bit grey or RGB images")
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataFileError(path, f"is not a readable image ({err})") from None
        array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        if first is None:
            first = (path, array.shape)
        elif array.shape != first[1]:
            def describe(shape: tuple[int, ...]) -> str:
                return f"{shape[2]}x{shape[1]} {'grey' if shape[0] == 1 else 'RGB'}"  # W x H
            raise DataFileError(directory, f"images differ in size or colour: {first[0].name} is "
                                           f"{describe(first[1])}, {path.relative_to(directory)} "
                                           f"is {describe(array.shape)}; resize or convert them "
                                           "to one size and mode")
        arrays.append(array)
    parents = sorted({p.parent for p in files})
    labels = None
    if len(parents) > 1:
        labels = np.array([parents.index(p.parent) for p in files], dtype=np.int64)
    return np.stack(arrays), labels


def read_images(path: str | Path, labels_path: str | Path | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images ``(N, C, H, W)`` (uint8 or float32) and optional labels ``(N,)`` of ``path``: a
    ``.npy``/``.npz`` array or a folder of PNG/JPEG files (see the module docstring)."""
    path = Path(path)
    labels: Any = None
    if path.is_dir():
        images, labels = read_image_folder(path)
    elif not path.exists():
        raise DataFileError(path, "does not exist")
    elif path.suffix.lower() == ".npy":
        images = as_image_array(_load_npy(path, mmap=False), path)
    elif path.suffix.lower() == ".npz":
        arrays = _load_npz(path)
        images = as_image_array(_main_array(arrays, "images", path), path)
        if "labels" in arrays:
            labels = _labels(arrays["labels"], len(images), path, "images")
    else:
        raise DataFileError(path, "is not a .npy/.npz array or a folder of images")
    if labels_path is not None:
        labels = read_labels(labels_path, len(images), "images", path)
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(images)), labels


# -- sequences -------------------------------------------------------------------------------------
def check_sequence_array(array: np.ndarray, where: Path) -> None:
    if array.dtype == object:
        raise DataFileError(where, "holds Python objects, not a numeric array")
    if array.ndim != 5:
        hint = (" (grey sequences (N, S, H, W) need a channel axis: a[:, :, None])"
                if array.ndim == 4 else "")
        raise DataFileError(where, f"sequences must be (N, S, C, H, W), got shape "
                                   f"{tuple(array.shape)}{hint}")
    if array.shape[2] not in CHANNELS:
        raise DataFileError(where, f"sequences must have 1 or 3 channels on axis 2, got shape "
                                   f"{tuple(array.shape)}{_channels_hint(array.shape, 2)}")
    if array.shape[0] == 0:
        raise DataFileError(where, "holds no sequences")
    if array.shape[1] < 2:
        raise DataFileError(where, f"sequences need at least 2 frames, got S={array.shape[1]} "
                                   "(single images: use data.source=images)")
    if min(array.shape[3:]) < 1:
        raise DataFileError(where, f"frames have an empty side: shape {tuple(array.shape)}")


def check_factors(factors: np.ndarray, shape: tuple[int, ...], where: Path,
                   source: Path) -> np.ndarray:
    if factors.dtype == object:
        raise DataFileError(where, "factors hold Python objects, not numbers")
    if factors.ndim == 2 and factors.shape == shape[:2]:
        factors = factors[..., None]
    if factors.ndim != 3 or factors.shape[:2] != shape[:2]:
        raise DataFileError(where, f"factors must be (N, S, F) = ({shape[0]}, {shape[1]}, F) "
                                   f"for the sequences of {source}, got shape "
                                   f"{tuple(factors.shape)}")
    if not (np.issubdtype(factors.dtype, np.number) or factors.dtype == np.bool_):
        raise DataFileError(where, f"factors must be numbers, got dtype {factors.dtype}")
    if np.issubdtype(factors.dtype, np.floating) and not np.isfinite(factors).all():
        raise DataFileError(where, "factors hold NaN or infinite values")
    return factors


@dataclasses.dataclass
class _Part:
    sequences: np.ndarray  # (n, S, C, H, W), possibly memory-mapped
    factors: np.ndarray | None
    labels: np.ndarray | None
    names: list[str] | None
    path: Path


def _read_part(path: Path) -> _Part:
    if path.suffix.lower() == ".npy":
        array = _load_npy(path, mmap=True)
        check_sequence_array(array, path)
        return _Part(array, None, None, None, path)
    arrays = _load_npz(path)
    array = _main_array(arrays, "sequences", path)
    check_sequence_array(array, path)
    factors = arrays.get("factors")
    if factors is not None:
        factors = check_factors(factors, array.shape, path, path)
    labels = arrays.get("labels")
    if labels is not None:
        labels = _labels(labels, len(array), path, "sequences").numpy()
    names = None
    if "factor_names" in arrays:
        names = [str(v) for v in np.atleast_1d(arrays["factor_names"])]
    return _Part(array, factors, labels, names, path)


class SequenceArrays:
    """Sequences ``(N, S, C, H, W)`` held in one or more arrays (memory-mapped ``.npy`` files are
    not read until indexed). ``store[rows]`` returns a torch tensor of those rows (uint8 or
    float32), reading only them; so does ``store.factors[rows]`` when factors exist."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.bounds = np.cumsum([0] + [len(p) for p in self.parts])
        first = self.parts[0]
        self.shape = (int(self.bounds[-1]), *first.shape[1:])
        self.dtype = first.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> torch.Tensor:
        rows = np.atleast_1d(np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index,
                                        dtype=np.int64))
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range [0, {len(self)})")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        part_of = np.searchsorted(self.bounds, sorted_rows, side="right") - 1
        for part in np.unique(part_of):
            chosen = part_of == part
            out[order[chosen]] = self.parts[part][sorted_rows[chosen] - self.bounds[part]]
        if out.dtype not in (np.uint8, np.float32):
            out = out.astype(np.float32)
        return torch.from_numpy(out)


@functools.lru_cache(maxsize=32)
def _checked_pixels(path: str, size: int, mtime_ns: int) -> None:
    array = _load_npy(Path(path), mmap=True)
    check_pixels(array, path, what="sequence")


def _check_part_pixels(part: _Part) -> None:
    if part.path.suffix.lower() == ".npy":
        stat = os.stat(part.path)  # the same unchanged file is checked once per process
        _checked_pixels(str(part.path), stat.st_size, stat.st_mtime_ns)
    else:
        check_pixels(part.sequences, part.path, what="sequence")


@dataclasses.dataclass
class OpenedSequences:
    """What :func:`open_sequences` returns."""

    frames: SequenceArrays
    factors: SequenceArrays | None
    factor_names: list[str]
    labels: torch.Tensor | None
    description: str


def open_sequences(path: str | Path, factors_path: str | Path | None = None,
                   labels_path: str | Path | None = None,
                   factor_names: Sequence[str] | None = None) -> OpenedSequences:
    """Open the sequences of ``path`` (``.npy``, ``.npz`` or a folder of them), checked.

    ``factors_path`` (``.npy`` ``(N, S, F)``, memory-mapped) and ``labels_path`` (``.npy``
    ``(N,)``) replace factors and labels stored in the ``.npz`` files.
    """
    path = Path(path)
    if path.is_dir():
        files = []
        for item in sorted(path.iterdir()):
            if item.name.startswith(".") or item.is_dir():
                continue
            if item.suffix.lower() not in ARRAY_SUFFIXES:
                raise DataFileError(item, "is not a .npy/.npz array (a sequences folder holds "
                                          "only .npy/.npz files)")
            files.append(item)
        if not files:
            raise DataFileError(path, "holds no .npy/.npz files")
    elif not path.exists():
        raise DataFileError(path, "does not exist")
    elif path.suffix.lower() not in ARRAY_SUFFIXES:
        raise DataFileError(path, "is not a .npy/.npz array or a folder of them")
    else:
        files = [path]
    parts = [_read_part(f) for f in files]
    first = parts[0]
    for part in parts[1:]:
        if part.sequences.shape[1:] != first.sequences.shape[1:]:
            raise DataFileError(part.path, f"holds sequences shaped (n, "
                                           f"{', '.join(map(str, part.sequences.shape[1:]))}) "
                                           f"but {first.path.name} holds (n, "
                                           f"{', '.join(map(str, first.sequences.shape[1:]))})")
        if (part.factors is None) != (first.factors is None):
            raise DataFileError(part.path, "some files of the folder have factors and others not")
        if part.factors is not None and part.factors.shape[2] != first.factors.shape[2]:
            raise DataFileError(part.path, f"has {part.factors.shape[2]} factors, "
                                           f"{first.path.name} {first.factors.shape[2]}")
    for part in parts:
        _check_part_pixels(part)
    frames = SequenceArrays([p.sequences for p in parts])
    shape = frames.shape
    factors = None
    names = first.names
    if factors_path is not None:
        factors_path = Path(factors_path)
        if not factors_path.is_file():
            raise DataFileError(factors_path, "factors file does not exist")
        array = check_factors(_load_npy(factors_path, mmap=True), shape, factors_path, path)
        factors = SequenceArrays([array])
    elif first.factors is not None:
        factors = SequenceArrays([p.factors for p in parts])  # type: ignore[misc]
    n_factors = factors.shape[2] if factors is not None else 0
    if factor_names is not None:
        names = list(factor_names)
    if names is None or len(names) != n_factors:
        if names is not None and factor_names is not None:
            raise DataFileError(path, f"{len(names)} factor names {names} for {n_factors} "
                                      "factors")
        names = [f"factor_{i}" for i in range(n_factors)]
    labels = None
    if labels_path is not None:
        labels = read_labels(labels_path, shape[0], "sequences", path)
    elif all(p.labels is not None for p in parts):
        labels = torch.from_numpy(np.concatenate([p.labels for p in parts]))  # type: ignore
    what = f"{len(files)} files in {path}" if path.is_dir() else str(path)
    description = (f"{shape[0]} sequences of {shape[1]} frames {shape[2]}x{shape[3]}x{shape[4]} "
                   f"from {what}" + (f", factors {names}" if n_factors else ""))
    return OpenedSequences(frames, factors, names, labels, description)
