"""Mutual Information Gap (Chen et al., 2018), disentanglement_lib's protocol: 20 equal-width
histogram bins on 10,000 points."""

from __future__ import annotations

from typing import Any

import numpy as np

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement._common import RepresentationFn, _check_pair, _positive
from topovae.metrics.disentanglement.sampling import Samples, train_test

__all__ = ["histogram_discretize", "discrete_mutual_information", "mig", "score"]

ESTIMATOR = ("20-bin equal-width histogram discretiser, discrete mutual information "
             "(disentanglement_lib)")


def histogram_discretize(codes: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Integer bin of every value, ``(N, d)`` in ``1 .. n_bins``: ``n_bins`` equal-width bins
    spanning each column's range, exactly as ``np.digitize(x, np.histogram(x, n_bins)[1][:-1])``
    per column (disentanglement_lib's ``_histogram_discretize``), for all columns at once."""
    codes = np.asarray(codes, dtype=np.float64)
    low, high = codes.min(axis=0), codes.max(axis=0)
    constant = low == high  # np.histogram widens an empty range to [x - 0.5, x + 0.5]
    low = np.where(constant, low - 0.5, low)
    high = np.where(constant, high + 0.5, high)
    edges = np.linspace(low, high, n_bins + 1, axis=-1)[:, :-1]  # (d, n_bins)
    return (codes[:, :, None] >= edges[None, :, :]).sum(axis=-1)


def _label_indices(column: np.ndarray) -> tuple[np.ndarray, int]:
    values, inverse = np.unique(column, return_inverse=True)
    return inverse.reshape(-1), len(values)


def discrete_mutual_information(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Mutual information in nats between every column of ``first`` (N, a) and every column of
    ``second`` (N, b) of discrete labels: ``(a, b)``, equal to
    ``sklearn.metrics.mutual_info_score(second[:, j], first[:, i])`` for every pair.

    All contingency tables come from one product of one-hot matrices.
    """
    n_points = first.shape[0]

    def one_hot(labels: np.ndarray) -> tuple[np.ndarray, list[slice]]:
        blocks, slices, start = [], [], 0
        for column in labels.T:
            indices, n_values = _label_indices(column)
            block = np.zeros((n_points, n_values))
            block[np.arange(n_points), indices] = 1.0
            blocks.append(block)
            slices.append(slice(start, start + n_values))
            start += n_values
        return np.concatenate(blocks, axis=1), slices

    first_hot, first_slices = one_hot(first)
    second_hot, second_slices = one_hot(second)
    joint_all = first_hot.T @ second_hot / n_points
    p_first = first_hot.mean(axis=0)
    p_second = second_hot.mean(axis=0)
    result = np.zeros((len(first_slices), len(second_slices)))
    for i, rows in enumerate(first_slices):
        for j, cols in enumerate(second_slices):
            joint = joint_all[rows, cols]
            outer = p_first[rows, None] * p_second[None, cols]
            mask = joint > 0
            result[i, j] = np.sum(joint[mask] * np.log(joint[mask] / outer[mask]))
    return np.maximum(result, 0.0)


def mig(codes: Any, factors: Any, *, n_bins: int = 20) -> dict[str, Any]:
    """Mutual Information Gap of codes ``(N, d)`` against discrete factors ``(N, K)``.

    Each code dimension is discretised into ``n_bins`` equal-width bins; for every factor the
    two largest mutual informations with a code dimension are found and their gap divided by the
    factor's entropy; MIG is the mean over factors. disentanglement_lib evaluates it on 10,000
    points (:func:`sample_codes_and_factors`).

    Returns ``mig`` (float), ``mig_per_factor`` ``(K,)``, ``mutual_information`` ``(d, K)`` in
    nats and ``factor_entropy`` ``(K,)`` in nats.
    """
    codes_array, factors_array = _check_pair(codes, factors, "codes", "factors")
    _positive(n_bins, "n_bins")
    if codes_array.shape[1] < 2:
        raise ValueError(
            f"codes must have at least 2 dimensions for a gap, got {codes_array.shape}"
        )
    discrete = histogram_discretize(codes_array, n_bins)
    information = discrete_mutual_information(discrete, factors_array)
    entropy = np.diag(discrete_mutual_information(factors_array, factors_array)).copy()
    top_two = np.sort(information, axis=0)[::-1][:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_factor = np.where(entropy > 0, (top_two[0] - top_two[1]) / entropy, np.nan)
    score = float(np.nanmean(per_factor)) if np.isfinite(per_factor).any() else float("nan")
    return {"mig": score, "mig_per_factor": per_factor, "mutual_information": information,
            "factor_entropy": entropy}


def score(representation_fn: RepresentationFn, dataset: GroundTruthData, *,
          n: int = 10000, seed: int = 0, samples: Samples | None = None,
          n_bins: int = 20) -> dict[str, Any]:
    """:func:`mig` of ``representation_fn`` on ``n`` points drawn from ``dataset``."""
    codes, factors, _, _ = train_test(representation_fn, dataset, n, seed, samples)
    return mig(codes, factors, n_bins=n_bins)
