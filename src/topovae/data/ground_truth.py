"""The ground-truth dataset interface used by the disentanglement metrics.

The FactorVAE and beta-VAE scores need to *sample observations with one factor held fixed*; MIG,
SAP and DCI need observations with their factors. A dataset that can do this implements
:class:`GroundTruthData` (the rendered dSprites grid does); this mirrors the interface of
disentanglement_lib so that the metrics follow the same protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


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
