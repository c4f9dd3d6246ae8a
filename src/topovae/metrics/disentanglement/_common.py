"""Input checks shared by the disentanglement metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["RepresentationFn"]

RepresentationFn = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]
"""Maps images ``(n, C, H, W)`` to codes ``(n, d)`` (e.g. a model's ``representation``)."""


# -- input checking -----------------------------------------------------------------------------
def _as_array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, dims) array, got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"{name} must hold at least 2 points and 1 column, got {array.shape}")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_pair(codes: Any, factors: Any, codes_name: str, factors_name: str
                ) -> tuple[np.ndarray, np.ndarray]:
    codes_array = _as_array(codes, codes_name).astype(np.float64)
    factors_array = _as_array(factors, factors_name)
    if codes_array.shape[0] != factors_array.shape[0]:
        raise ValueError(
            f"{codes_name} and {factors_name} must hold the same number of points, got "
            f"{codes_array.shape[0]} and {factors_array.shape[0]}"
        )
    return codes_array, factors_array


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _positive(value: int, name: str) -> int:
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_train_test(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a train/test split of codes and factors: pairs of equal length, equal widths."""
    codes_train, factors_train = _check_pair(codes_train, factors_train, "codes_train",
                                             "factors_train")
    codes_test, factors_test = _check_pair(codes_test, factors_test, "codes_test", "factors_test")
    if codes_train.shape[1] != codes_test.shape[1]:
        raise ValueError(f"codes_train and codes_test must have the same width, got "
                         f"{codes_train.shape[1]} and {codes_test.shape[1]}")
    if factors_train.shape[1] != factors_test.shape[1]:
        raise ValueError(f"factors_train and factors_test must have the same width, got "
                         f"{factors_train.shape[1]} and {factors_test.shape[1]}")
    return codes_train, factors_train, codes_test, factors_test
