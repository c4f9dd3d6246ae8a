"""Sources of your own data: ``data.source=images`` and ``data.source=sequences``.

``images``: the images of ``data.path`` (see :mod:`topovae.data.files`) become an
:class:`~topovae.data.sources.ImageSource`, so every sequence builder of topovae (``single_factor``
with any of rotation, hue and scale, ``rotation_hue``, ``perspective_hue``, ``none``) transforms
them, exactly as it does MNIST.

``sequences``: the sequences of ``data.path`` are a :class:`SequenceSource`, taken as they are
by the ``given`` builder; their length S is the model's ``seq_len`` and their per-frame factors
(if any) are what the measurements use.

The test split is explicit: ``data.test_path`` (a second file or folder), or else a held-out
``data.test_fraction`` of ``data.path`` drawn with ``data.split_seed``. Both are part of the
run's ``config.yaml``, so evaluating the run later holds out exactly the same images, whatever
the seed of the evaluation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import SequenceArrays, open_sequences, read_images
from .sources import ImageSource

__all__ = ["OWN_SOURCES", "SequenceSource", "OwnData", "open_own_data", "images_source",
           "sequences_source"]

OWN_SOURCES = ("images", "sequences")


@dataclasses.dataclass
class SequenceSource:
    """Sequences of your own: ``images`` ``(N, S, C, H, W)`` (indexing returns those rows as a
    tensor, reading only them), optional per-frame ``factors`` ``(N, S, F)`` named
    ``factor_names``, optional ``labels`` ``(N,)``. Rows are sequences, not images."""

    name: str
    split: str
    citation: str
    images: SequenceArrays | torch.Tensor
    labels: torch.Tensor | None = None
    factors: SequenceArrays | torch.Tensor | None = None
    factor_names: list[str] = dataclasses.field(default_factory=list)
    description: str = ""
    ground_truth: None = None
    ordered: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[2:])  # type: ignore[return-value]


def images_source(path: str | Path, labels_path: str | Path | None = None,
                  split: str = "train") -> ImageSource:
    """The images of ``path`` (``.npy``/``.npz`` or a folder of PNG/JPEG) as an ImageSource."""
    images, labels = read_images(path, labels_path)
    return ImageSource(name="images", split=split, citation=f"your images in {path}",
                       images=images, labels=labels,
                       description=f"{len(images)} images {'x'.join(map(str, images.shape[1:]))} "
                                   f"from {path}")


def sequences_source(path: str | Path, factors_path: str | Path | None = None,
                     labels_path: str | Path | None = None,
                     factor_names: list[str] | None = None, split: str = "train"
                     ) -> SequenceSource:
    """The sequences of ``path`` (``.npy``, ``.npz`` or a folder of them) as a SequenceSource."""
    opened = open_sequences(path, factors_path, labels_path, factor_names)
    return SequenceSource(name="sequences", split=split, citation=f"your sequences in {path}",
                          images=opened.frames, labels=opened.labels, factors=opened.factors,
                          factor_names=opened.factor_names, description=opened.description)


@dataclasses.dataclass
class OwnData:
    """The train and test sources of one config, and the rows of each that it uses."""

    train: ImageSource | SequenceSource
    train_rows: np.ndarray
    test: ImageSource | SequenceSource
    test_rows: np.ndarray
    test_split: str


def _open(config: Any, which: str) -> ImageSource | SequenceSource:
    path = config.path if which == "train" else config.test_path
    labels = config.labels_path if which == "train" else config.test_labels_path
    if config.source == "images":
        return images_source(path, labels, split=which)
    factors = config.factors_path if which == "train" else config.test_factors_path
    return sequences_source(path, factors, labels, config.factor_names, split=which)


def open_own_data(config: Any) -> OwnData:
    """Sources and rows of ``config`` (a :class:`~topovae.data.loaders.DataConfig` whose source is
    ``images`` or ``sequences``)."""
    if config.path is None:
        raise ValueError(f"data.source={config.source} needs data.path: a .npy/.npz file or a "
                         "folder (see docs/your-data.md)")
    train = _open(config, "train")
    if config.test_path is not None:
        test = _open(config, "test")
        if test.image_shape != train.image_shape or (
                isinstance(train, SequenceSource) and test.seq_len != train.seq_len):
            raise ValueError(f"data.test_path {config.test_path} holds {_shape_text(test)} but "
                             f"data.path {config.path} {_shape_text(train)}")
        return OwnData(train, np.arange(len(train)), test, np.arange(len(test)),
                       f"data.test_path ({config.test_path})")
    n = len(train)
    n_test = int(round(config.test_fraction * n))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"data.path {config.path} holds {n} "
                         f"{'sequences' if config.source == 'sequences' else 'images'}: too few "
                         f"to hold out data.test_fraction={config.test_fraction} for testing "
                         "(give data.test_path or more data)")
    permutation = np.random.default_rng(config.split_seed).permutation(n)
    test_rows, train_rows = np.sort(permutation[:n_test]), np.sort(permutation[n_test:])
    percent = f"{100 * config.test_fraction:g}%"
    return OwnData(train, train_rows, train, test_rows,
                   f"held-out {percent} of {config.path} (data.split_seed={config.split_seed})")


def _shape_text(source: ImageSource | SequenceSource) -> str:
    shape = "x".join(map(str, source.image_shape))
    if isinstance(source, SequenceSource):
        return f"sequences of {source.seq_len} frames {shape}"
    return f"images {shape}"
