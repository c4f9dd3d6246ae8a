"""IDX reader and the file search / checksummed download logic (no network)."""

import gzip
import hashlib
import io

import numpy as np
import pytest

from topovae.data import download as dl
from topovae.data.idx import read_idx, write_idx


def test_roundtrip_gzip_and_plain(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte.gz", "a-idx3-ubyte"):
        write_idx(tmp_path / name, array)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    write_idx(tmp_path / "f.idx", floats)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


def test_corrupt_files_raise_naming_the_file(tmp_path):
    array = np.zeros((5, 28, 28), dtype=np.uint8)
    good = tmp_path / "good"
    write_idx(good, array, compress=False)
    raw = good.read_bytes()
    cases = {
        "truncated": raw[:-10],
        "longer": raw + b"\x00",
        "badmagic": b"\x01\x00" + raw[2:],
        "baddtype": raw[:2] + b"\x07" + raw[3:],
        "badndim": raw[:3] + b"\x04" + raw[4:],
        "short": raw[:2],
        "truncgz": gzip.compress(raw)[:-20],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=name):
            read_idx(path)
    with pytest.raises(ValueError, match="does not exist"):
        read_idx(tmp_path / "missing")


def test_real_mnist_test_file(mnist_dir):
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    # official class counts of the MNIST test set
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # decompressed content is the official file (md5 published with the dataset)
    header = bytes([0, 0, 8, 3]) + np.array(images.shape, dtype=">u4").tobytes()
    md5 = hashlib.md5(header + images.tobytes()).hexdigest()
    assert md5 == "2646ac647ad5339dbf082846283269ea"


def _dataset(tmp_path, content: bytes, checksum: str | None = None) -> dl.DatasetFiles:
    source = tmp_path / "remote" / "x.gz"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(content)
    checksum = checksum or "sha256:" + hashlib.sha256(content).hexdigest()
    return dl.DatasetFiles("toy", (dl.RemoteFile("x.gz", checksum, (source.as_uri(),)),))


def test_download_verifies_checksum_and_renames(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(dl.ENV_VAR, raising=False)
    dataset = _dataset(tmp_path, b"payload")
    paths = dl.locate_files(dataset, ["x.gz"])
    assert paths["x.gz"] == tmp_path / "cache" / "topovae" / "toy" / "x.gz"
    assert paths["x.gz"].read_bytes() == b"payload"
    assert list(paths["x.gz"].parent.iterdir()) == [paths["x.gz"]]  # no temp files left


def test_bad_checksum_deletes_download(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(dl.ENV_VAR, raising=False)
    dataset = _dataset(tmp_path, b"payload", checksum="sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch"):
        dl.locate_files(dataset, ["x.gz"])
    folder = tmp_path / "cache" / "topovae" / "toy"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_search_order_and_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env_dir = tmp_path / "env"
    (env_dir / "toy").mkdir(parents=True)
    (env_dir / "toy" / "x").write_bytes(b"uncompressed copy")  # .gz name, stored unzipped
    monkeypatch.setenv(dl.ENV_VAR, str(env_dir))

    def no_network(url):
        raise AssertionError("must not download when the file is found")

    dataset = _dataset(tmp_path, b"payload")
    assert dl.locate_files(dataset, ["x.gz"], opener=no_network)["x.gz"] == env_dir / "toy" / "x"
    # an explicit data_dir lacking the file is an error, never a fallback to $TOPOVAE_DATA
    with pytest.raises(ValueError, match="lacks"):
        dl.locate_files(dataset, ["x.gz"], data_dir=tmp_path / "empty", opener=no_network)
    monkeypatch.delenv(dl.ENV_VAR)

    def offline(url):
        raise OSError("network unreachable")

    with pytest.raises(dl.DataNotFoundError, match="TOPOVAE_DATA") as info:
        dl.locate_files(dataset, ["x.gz"], opener=offline)
    assert "x.gz" in str(info.value) and "--data-dir" in str(info.value)
    with pytest.raises(dl.DataNotFoundError, match="downloads disabled"):
        dl.locate_files(dataset, ["x.gz"], download=False)


def test_monkeypatched_fetch_with_md5(tmp_path):
    content = b"abc" * 1000
    md5 = "md5:" + hashlib.md5(content).hexdigest()
    out = dl.download_file(
        "http://example.invalid/f",
        tmp_path / "f",
        md5,
        opener=lambda url: io.BytesIO(content),
        progress=False,
    )
    assert out.read_bytes() == content


def test_http_download_through_pooch_on_a_local_server(tmp_path, monkeypatch):
    """The real HTTP path (pooch's downloader, checksum, progress bar) against 127.0.0.1."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(dl.ENV_VAR, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    content = bytes(range(256)) * 64
    (served / "x.gz").write_bytes(content)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            good = "sha256:" + hashlib.sha256(content).hexdigest()
            missing = dl.RemoteFile("x.gz", good, (base + "missing.gz", base + "x.gz"))
            paths = dl.locate_files(dl.DatasetFiles("toy", (missing,)), ["x.gz"])
            assert paths["x.gz"].read_bytes() == content  # the second mirror, after a 404
            paths["x.gz"].unlink()
            bad = dl.RemoteFile("x.gz", "md5:" + "0" * 32, (base + "x.gz",))
            with pytest.raises(ValueError, match="checksum mismatch"):
                dl.locate_files(dl.DatasetFiles("toy", (bad,)), ["x.gz"])
            assert list(paths["x.gz"].parent.iterdir()) == []
        finally:
            server.shutdown()
