"""Find data files on disk, or download them with checksum verification (through pooch).

Files of a dataset (e.g. the four MNIST IDX files) are looked for in this order:

1. an explicit ``data_dir`` (``--data-dir DIR`` on the command line). If it is given, it is the
   *only* place looked at: a directory lacking the files is an error, never a silent fallback to
   some other copy of the data.
2. the directory named by the environment variable ``TOPOVAE_DATA``;
3. the user cache, ``pooch.os_cache("topovae")``: ``$XDG_CACHE_HOME/topovae`` (default
   ``~/.cache/topovae``) on Linux, the platform's cache folder elsewhere;
4. a download from the canonical mirrors into the user cache (when ``download`` is true).

In directories 1-3 a file may sit directly in the directory or in a sub-directory named after the
dataset (``DIR/mnist/train-images-idx3-ubyte.gz``), gzipped or not. Downloads are pooch's
(``pooch.retrieve``, with its progress bar): the bytes go to a temporary file beside the
destination, are verified against the published checksum, and only then are renamed into place
(:func:`topovae.io.atomic_write_file`); a file with the wrong checksum is deleted and reported.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pooch

from topovae.io import atomic_write_file

ENV_VAR = "TOPOVAE_DATA"


class DataNotFoundError(ValueError):
    """The files of a dataset are in none of the search locations and could not be downloaded."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its name, published checksum (``"sha256:<hex>"`` or ``"md5:<hex>"``)
    and the mirrors serving it, tried in order."""

    name: str
    checksum: str
    urls: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DatasetFiles:
    """The files of one dataset; ``key`` is also the name of its sub-directory in the cache."""

    key: str
    files: tuple[RemoteFile, ...]

    def file(self, name: str) -> RemoteFile:
        for remote in self.files:
            if remote.name == name:
                return remote
        raise ValueError(f"dataset {self.key!r} has no file {name!r}")


def _mirrored(names_and_sums: dict[str, str], mirrors: list[str]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(name, checksum, tuple(m + name for m in mirrors))
        for name, checksum in names_and_sums.items()
    )


# Published checksums of the files as the mirrors serve them. MNIST: SHA-256 of the original
# archives; Fashion-MNIST, KMNIST and dSprites publish MD5 only, which is what is verified there.
MNIST_FILES = DatasetFiles(
    "mnist",
    _mirrored(
        {
            "train-images-idx3-ubyte.gz": "sha256:"
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "sha256:"
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "sha256:"
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "sha256:"
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
    ),
)
FASHION_MNIST_FILES = DatasetFiles(
    "fashion_mnist",
    _mirrored(
        {
            "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
        },
        [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
    ),
)
KMNIST_FILES = DatasetFiles(
    "kmnist",
    _mirrored(
        {
            "train-images-idx3-ubyte.gz": "md5:bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "md5:e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "md5:5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "md5:7320c461ea6c1c855c0b718fb2a4b134",
        },
        ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    ),
)
DSPRITES_FILES = DatasetFiles(
    "dsprites",
    _mirrored(
        {"dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz": "md5:7da33b31b13a06f4b04a70402ce90c2e"},
        ["https://github.com/google-deepmind/dsprites-dataset/raw/master/"],
    ),
)


def user_cache_dir() -> Path:
    """pooch's user cache of topovae (``$XDG_CACHE_HOME/topovae`` or ``~/.cache/topovae``)."""
    return Path(pooch.os_cache("topovae"))


def _candidates(directory: Path, key: str, name: str) -> Iterator[Path]:
    """Accepted locations of file ``name`` in ``directory`` (gzipped or uncompressed)."""
    names = [name]
    if name.endswith(".gz"):
        names.append(name[: -len(".gz")])
    for folder in (directory, directory / key):
        for candidate in names:
            yield folder / candidate


def find_in_dir(directory: Path, key: str, name: str) -> Path | None:
    """The first existing accepted location of ``name`` in ``directory``, else None."""
    for path in _candidates(directory, key, name):
        if path.is_file():
            return path
    return None


def search_dirs(data_dir: str | Path | None) -> list[tuple[str, Path]]:
    """The (description, directory) pairs searched, in order."""
    if data_dir is not None:
        return [("data_dir", Path(data_dir).expanduser())]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    dirs.append(("user cache", user_cache_dir()))
    return dirs


def _open_url(url: str, timeout: float = 30.0) -> BinaryIO:
    """Open a ``file:`` (or other urllib) URL for reading."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http, https, file)


def _downloader(url: str, opener: Callable[[str], BinaryIO] | None, progress: bool) -> Any:
    """pooch's HTTP downloader for http(s) URLs, else one that copies what ``opener`` reads."""
    if opener is None and url.startswith(("http://", "https://")):
        return pooch.HTTPDownloader(progressbar=progress, timeout=30)
    read = opener or _open_url

    def download(url: str, output_file: str, pooch_instance: Any, check_only: bool = False
                 ) -> None:
        with read(url) as response, open(output_file, "wb") as out:
            shutil.copyfileobj(response, out)

    return download


def download_file(
    url: str,
    destination: str | Path,
    checksum: str,
    opener: Callable[[str], BinaryIO] | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination`` with pooch, verify ``checksum`` (``"sha256:<hex>"`` or
    ``"md5:<hex>"``), and rename into place atomically.

    ``opener(url)`` (a readable binary file) replaces the network, e.g. in tests. If the checksum
    does not match, nothing is left behind and ``ValueError`` is raised, so a partial or corrupt
    download never appears under the final name.
    """
    destination = Path(destination)

    def fetch(tmp: Path) -> None:
        pooch.retrieve(url, known_hash=checksum, fname=tmp.name, path=tmp.parent,
                       downloader=_downloader(url, opener, progress))

    try:
        return atomic_write_file(destination, fetch)
    except ValueError as err:  # pooch: the hash does not match
        text = " ".join(str(err).split())
        raise ValueError(f"checksum mismatch for {url} ({destination.name}): {text}") from None


def _not_found_message(dataset: DatasetFiles, names: list[str], searched: list[str]) -> str:
    where = "\n".join(f"  - {s}" for s in searched)
    files = ", ".join(names)
    return (
        f"{dataset.key} files not found: {files}\nSearched:\n{where}\n"
        f"Put the files (gzipped or not) in a directory DIR, directly or in DIR/{dataset.key}/, "
        f"and pass --data-dir DIR (data_dir=DIR) or set {ENV_VAR}=DIR; or place them in "
        f"{user_cache_dir() / dataset.key}; or allow a download (download=True) with network "
        "access."
    )


def locate_files(
    dataset: DatasetFiles,
    names: list[str],
    data_dir: str | Path | None = None,
    download: bool = True,
    opener: Callable[[str], BinaryIO] | None = None,
) -> dict[str, Path]:
    """Paths of the files ``names`` of ``dataset``, searched and downloaded as the module says.

    All files are taken from the same directory. Files that are not among the dataset's
    downloadable files (e.g. a local subset such as ``train-5k-images-idx3-ubyte.gz``) are only
    looked for, never downloaded.
    """
    searched: list[str] = []
    for description, directory in search_dirs(data_dir):
        found = {name: find_in_dir(directory, dataset.key, name) for name in names}
        searched.append(f"{description}: {directory} (and {directory / dataset.key})")
        if all(path is not None for path in found.values()):
            return {name: path for name, path in found.items() if path is not None}
        if data_dir is not None:
            missing = [name for name, path in found.items() if path is None]
            raise DataNotFoundError(
                f"data_dir {directory} lacks the {dataset.key} file(s) {missing} "
                f"(looked in {directory} and {directory / dataset.key}, gzipped or not)"
            )
    known = {remote.name for remote in dataset.files}
    if not download or not set(names) <= known:
        reason = "downloads disabled" if not download else "these files cannot be downloaded"
        raise DataNotFoundError(_not_found_message(dataset, names, searched) + f" ({reason})")
    cache = user_cache_dir() / dataset.key
    paths: dict[str, Path] = {}
    errors: list[str] = []
    for name in names:
        existing = find_in_dir(user_cache_dir(), dataset.key, name)
        if existing is not None:
            paths[name] = existing
            continue
        remote = dataset.file(name)
        for url in remote.urls:
            try:
                paths[name] = download_file(url, cache / name, remote.checksum, opener=opener)
                break
            except ValueError:
                raise
            except OSError as err:  # network errors: try the next mirror
                errors.append(f"{url}: {err}")
        else:
            raise DataNotFoundError(
                _not_found_message(dataset, names, searched)
                + "\nDownload failed:\n"
                + "\n".join(f"  - {e}" for e in errors)
            )
    return paths
