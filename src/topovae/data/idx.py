"""A validated reader of the IDX format used by MNIST, Fashion-MNIST and KMNIST.

IDX files start with a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the data in row-major order. A truncated download or a file
that is not IDX at all would otherwise surface much later as a reshape error or, worse, as a
silently wrong array; :func:`read_idx` checks every part of the header and the exact length and
raises a ``ValueError`` naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from topovae.io import atomic_write_bytes

# IDX dtype codes -> numpy dtypes (multi-byte types are big-endian in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """Whole file content, decompressed when it is gzip (detected by its magic, not its name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise ValueError(
                f"IDX file {path} is a corrupt or truncated gzip archive ({err}); "
                "delete it and download it again"
            ) from err
    return raw


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file; ``name`` is used in error messages."""
    if len(data) < 4:
        raise ValueError(f"IDX file {name} is too short ({len(data)} bytes) to hold a header")
    zero0, zero1, dtype_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"IDX file {name} has a bad magic number {data[:4].hex()} (must start with 0000)"
        )
    if dtype_code not in IDX_DTYPES:
        raise ValueError(
            f"IDX file {name} has unknown dtype code 0x{dtype_code:02x}; "
            f"valid codes: {[hex(c) for c in IDX_DTYPES]}"
        )
    if ndim < 1:
        raise ValueError(f"IDX file {name} declares {ndim} dimensions (must be >= 1)")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"IDX file {name} is truncated inside its header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[dtype_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {name} is {kind}: header {dims} of {dtype} needs {expected} data bytes, "
            f"found {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array.

    Raises ``ValueError`` naming ``path`` if the file is missing, is not gzip-decodable, has a bad
    magic number (dtype code or number of dimensions) or its length disagrees with the header.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IDX file {path} does not exist")
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip when ``compress`` or, by default, when the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"array dtype {array.dtype} has no IDX code")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = array.astype(IDX_DTYPES[code], copy=False).tobytes()
    data = header + body
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    atomic_write_bytes(path, data)
