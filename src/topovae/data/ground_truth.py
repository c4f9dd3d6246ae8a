"""The ground-truth dataset interface used by the disentanglement metrics, and its wrappers.

The FactorVAE and beta-VAE scores need to *sample observations with one factor held fixed*; MIG,
SAP and DCI need observations with their factors. A dataset that can do this implements
:class:`GroundTruthData` (the rendered dSprites grid does); this mirrors the interface of
disentanglement_lib so that the metrics follow the same protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["GroundTruthData", "FactorSubgrid", "EncodedGrid", "evaluation_grid",
           "images_requested"]


@runtime_checkable
class GroundTruthData(Protocol):
    """A dataset whose images are a deterministic function of discrete factors of variation."""

    @property
    def factor_names(self) -> list[str]:
        """Names of the factors, e.g. ``["shape", "scale", "orientation", "pos_x", "pos_y"]``."""
        ...

    @property
    def factor_sizes(self) -> list[int]:
        """Number of values of each factor (factor ``i`` takes ``0 .. factor_sizes[i]-1``)."""
        ...

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one observation."""
        ...

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, n_factors)`` integer factor indices drawn uniformly from the grid."""
        ...

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        """Float images ``(n, C, H, W)`` in [0, 1] for integer factor indices ``(n, n_factors)``."""
        ...


class FactorSubgrid:
    """A ground-truth dataset restricted to a product sub-grid of its factor values.

    ``values[i]`` lists the values (indices of the full grid) that factor ``i`` takes; factor
    index ``k`` of this dataset is value ``values[i][k]`` of the wrapped one. Implements
    :class:`~topovae.data.ground_truth.GroundTruthData`.
    """

    def __init__(self, dataset: Any, values: Sequence[np.ndarray]) -> None:
        self.dataset = dataset
        self.values = [np.asarray(v, dtype=np.int64) for v in values]

    @property
    def factor_names(self) -> list[str]:
        return list(self.dataset.factor_names)

    @property
    def factor_sizes(self) -> list[int]:
        return [len(v) for v in self.values]

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.observation_shape)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, len(v), size=n) for v in self.values], axis=1)

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        factors = np.asarray(factors, dtype=np.int64)
        full = np.stack([v[factors[:, i]] for i, v in enumerate(self.values)], axis=1)
        return self.dataset.observations_from_factors(full)


class EncodedGrid:
    """Every image of a small factor grid encoded once; serves codes in place of images.

    The FactorVAE and beta-VAE scores draw about 10**6 images (votes and points are batches of
    64) from a grid of about 5 * 10**4 (the protocol's dSprites sub-grid), so rendering and
    encoding each grid image once and indexing the codes gives the same scores in a fraction of
    the time. Valid because ``representation`` is deterministic, one image at a time. Used with
    the identity as the metrics' representation function.
    """

    def __init__(self, grid: Any, represent: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int = 512) -> None:
        self.grid = grid
        sizes = list(grid.factor_sizes)
        every = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=1)
        self.codes = torch.cat([represent(grid.observations_from_factors(every[i:i + batch_size]))
                                for i in range(0, len(every), batch_size)])
        self.factor_names = list(grid.factor_names)
        self.factor_sizes = sizes
        self.observation_shape = tuple(self.codes.shape[1:])

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.grid.sample_factors(n, rng)

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        index = np.ravel_multi_index(tuple(np.asarray(factors, dtype=np.int64).T),
                                     self.factor_sizes)
        return self.codes[torch.as_tensor(index)]


def images_requested(names: Sequence[str], n: int) -> int:
    """How many images the disentanglement metrics ``names`` render with ``n`` samples (the
    sample sizes of :mod:`topovae.measure.disentanglement`: ``n`` training and ``n // 2`` test
    points; votes and points of the FactorVAE and beta-VAE scores are batches of 64 images,
    or pairs)."""
    points = n + max(1, n // 2)
    total = points if {"mig", "sap", "dci"} & set(names) else 0
    if "factor_vae" in names:
        total += points * 64 + n  # votes, and the points of the global variances
    if "beta_vae" in names:
        total += points * 2 * 64
    return total


def evaluation_grid(source: Any, dataset: Any) -> Any:
    """The ground truth restricted to the factor grid of the images of ``source``.

    The dSprites runs train and test on the protocol's 3x5x15x15x15 sub-grid; scoring them on
    the full 3x6x40x32x32 grid would mostly show factor values never seen in training (and
    count 6 scales, 40 orientations, 32 positions the model never had to tell apart). When the
    source's factors form a product grid smaller than the dataset's, that grid is used.
    """
    factors = getattr(source, "factors", None)
    if factors is None:
        return dataset
    factors = np.asarray(factors.cpu().numpy() if isinstance(factors, torch.Tensor) else factors)
    values = [np.unique(factors[:, i]) for i in range(factors.shape[1])]
    sizes = [len(v) for v in values]
    is_product_grid = len(np.unique(factors, axis=0)) == math.prod(sizes)
    if not is_product_grid or sizes == list(dataset.factor_sizes):
        return dataset
    return FactorSubgrid(dataset, values)
