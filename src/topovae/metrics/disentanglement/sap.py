"""Separated Attribute Predictability (Kumar et al., 2018), disentanglement_lib's protocol: a
linear SVM (C = 0.01, balanced classes) per code dimension and factor, 10,000 training and 5,000
test points."""

from __future__ import annotations

from typing import Any

import numpy as np

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement._common import RepresentationFn, _check_train_test
from topovae.metrics.disentanglement.sampling import Samples, train_test

__all__ = ["sap", "score"]

ESTIMATOR = ("LinearSVC(C=0.01, class_weight='balanced') per code dimension and factor "
             "(disentanglement_lib)")


def _sap_score_matrix(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
                      factors_test: np.ndarray, continuous_factors: bool) -> np.ndarray:
    n_codes, n_factors = codes_train.shape[1], factors_train.shape[1]
    if continuous_factors:
        # Squared Pearson correlation of every (code, factor) pair on the training points;
        # zero for a code of (near) zero variance, as in disentanglement_lib.
        factors_float = factors_train.astype(np.float64)
        code_centred = codes_train - codes_train.mean(axis=0)
        factor_centred = factors_float - factors_float.mean(axis=0)
        ddof_scale = 1.0 / (codes_train.shape[0] - 1)
        covariance = code_centred.T @ factor_centred * ddof_scale
        code_var = (code_centred**2).sum(axis=0) * ddof_scale
        factor_var = (factor_centred**2).sum(axis=0) * ddof_scale
        with np.errstate(divide="ignore", invalid="ignore"):
            score = covariance**2 / (code_var[:, None] * factor_var[None, :])
        return np.where(code_var[:, None] > 1e-12, np.nan_to_num(score), 0.0)
    from sklearn.svm import LinearSVC

    scores = np.zeros((n_codes, n_factors))
    for i in range(n_codes):
        for j in range(n_factors):
            classifier = LinearSVC(C=0.01, class_weight="balanced")
            classifier.fit(codes_train[:, i : i + 1], factors_train[:, j])
            predicted = classifier.predict(codes_test[:, i : i + 1])
            scores[i, j] = np.mean(predicted == factors_test[:, j])
    return scores


def sap(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, *,
        continuous_factors: bool = False) -> dict[str, float]:
    """Separated Attribute Predictability.

    For every code dimension ``i`` and factor ``j`` a score says how well dimension ``i`` alone
    predicts factor ``j``: with discrete factors, the test accuracy of a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``, disentanglement_lib's choice) trained on the
    one-dimensional code; with ``continuous_factors``, the squared Pearson correlation on the
    training points. SAP is the mean over factors of the gap between the two best dimensions.
    disentanglement_lib uses 10,000 training and 5,000 test points. Returns ``sap``.
    """
    codes_train, factors_train, codes_test, factors_test = _check_train_test(
        codes_train, factors_train, codes_test, factors_test)
    if codes_train.shape[1] < 2:
        raise ValueError(f"codes_train must have at least 2 dimensions, got {codes_train.shape}")
    scores = _sap_score_matrix(codes_train, factors_train, codes_test, factors_test,
                               continuous_factors)
    top_two = np.sort(scores, axis=0)[::-1][:2]
    return {"sap": float(np.mean(top_two[0] - top_two[1]))}


def score(representation_fn: RepresentationFn, dataset: GroundTruthData, *,
          n: int = 10000, seed: int = 0, samples: Samples | None = None,
          continuous_factors: bool = False) -> dict[str, float]:
    """:func:`sap` of ``representation_fn``: ``n`` training and ``n // 2`` test points."""
    return sap(*train_test(representation_fn, dataset, n, seed, samples),
               continuous_factors=continuous_factors)
