"""The one atomic write: the new content or the old one, never a torn file or a stray temp."""

import json

import pytest

from topovae.io import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_file,
    atomic_write_json,
    atomic_write_text,
    temporary_path,
)


def test_writes_replace_the_content(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "b.json", {"x": [1, 2.5]})
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": [1, 2.5]}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.json", "sub"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"old")

    def half_then_fail(handle):
        handle.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert not temporary_path(path).exists()

    def produce_then_fail(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("library failed")

    with pytest.raises(RuntimeError):
        atomic_write_file(path, produce_then_fail)
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"x": float("nan")})
    assert not (tmp_path / "n.json").exists()


def test_the_wrapper_sees_every_byte(tmp_path):
    import hashlib
    import io

    digest = hashlib.sha256()

    class Hashing(io.RawIOBase):
        def __init__(self, raw):
            self.raw = raw

        def write(self, data):
            digest.update(data)
            return self.raw.write(data)

        def flush(self):
            self.raw.flush()

    atomic_write(tmp_path / "w", lambda h: h.write(b"abc" * 10), wrap=Hashing)
    assert digest.hexdigest() == hashlib.sha256(b"abc" * 10).hexdigest()
    assert (tmp_path / "w").read_bytes() == b"abc" * 10
