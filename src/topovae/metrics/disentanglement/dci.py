"""Disentanglement, Completeness, Informativeness (Eastwood & Williams, 2018) from tree-ensemble
feature importances, disentanglement_lib's protocol: ``GradientBoostingClassifier`` per factor,
10,000 training and 5,000 test points."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement._common import RepresentationFn, _check_train_test
from topovae.metrics.disentanglement.sampling import Samples, train_test

__all__ = ["DCI_ESTIMATORS", "dci", "score"]

ESTIMATOR = "GradientBoostingClassifier() per factor, scikit-learn defaults (disentanglement_lib)"


DCI_ESTIMATORS = ("gradient_boosting", "random_forest")
"""Names accepted by :func:`dci`'s ``estimator``; the first (disentanglement_lib's) is the
default."""

def _make_estimator(estimator: str | Callable[[], Any], seed: int) -> Any:
    if callable(estimator):
        return estimator()
    from sklearn import ensemble

    if estimator == "gradient_boosting":
        return ensemble.GradientBoostingClassifier(random_state=seed)
    if estimator == "random_forest":
        return ensemble.RandomForestClassifier(n_estimators=20, max_depth=8, max_features=None,
                                               random_state=seed)
    raise ValueError(f"estimator must be one of {DCI_ESTIMATORS} or a zero-argument factory, "
                     f"got {estimator!r}")


def _weighted_one_minus_entropy(importance: np.ndarray) -> float:
    """``sum_i w_i (1 - H_K(P_i))`` over rows ``i`` of ``importance`` (a row is a distribution
    over its ``K`` columns, entropy in base ``K``), weights proportional to row sums."""
    n_columns = importance.shape[1]
    if n_columns < 2:
        per_row = np.ones(importance.shape[0])
    else:
        per_row = 1.0 - stats.entropy(importance.T + 1e-11, base=n_columns)
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weights = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_row * weights))


def _fit_factor(estimator: str | Callable[[], Any], seed: int, codes_train: np.ndarray,
                labels_train: np.ndarray, codes_test: np.ndarray, labels_test: np.ndarray
                ) -> tuple[np.ndarray | None, float, float]:
    """Importances ``(d,)``, train and test accuracy of one factor's classifier. A constant
    factor has nothing to predict and gives no importance (``None``)."""
    if np.unique(labels_train).size < 2:
        return None, 1.0, float(np.mean(labels_test == labels_train[0]))
    model = _make_estimator(estimator, seed)
    model.fit(codes_train, labels_train)
    return (np.abs(np.asarray(model.feature_importances_, dtype=np.float64)),
            float(np.mean(model.predict(codes_train) == labels_train)),
            float(np.mean(model.predict(codes_test) == labels_test)))


def dci(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, *,
        estimator: str | Callable[[], Any] = "gradient_boosting", seed: int = 0,
        n_jobs: int | None = None) -> dict[str, Any]:
    """Disentanglement, Completeness and Informativeness (Eastwood & Williams, 2018) from
    tree-ensemble feature importances.

    One classifier per factor predicts it from the whole code; its (impurity-decrease) feature
    importances form column ``j`` of the ``(d, K)`` importance matrix ``R``. Disentanglement is
    ``1 - entropy`` (base ``K``) of each row of ``R``, weighted by the row's share of total
    importance; completeness the same for the columns (base ``d``); informativeness the mean
    classification accuracy over factors on the training and on the test points
    (disentanglement_lib reports accuracy under the name "error"). disentanglement_lib uses
    10,000 training and 5,000 test points.

    ``estimator``:

    - ``"gradient_boosting"`` (default): disentanglement_lib's estimator, scikit-learn's
      ``GradientBoostingClassifier`` with its defaults (100 stages of depth-3 trees, one tree
      *per class* per stage), the same computation as disentanglement_lib and so the number to
      compare with published DCI scores. A factor with 15 values costs 1,500 trees; the factors
      are fitted in parallel (times in ``docs/metrics.md``).
    - ``"random_forest"``: ``RandomForestClassifier(n_estimators=20, max_depth=8,
      max_features=None)``, bagged depth-8 trees searching every code dimension at every split
      (random forests are one of the two regressors of the DCI paper). It finishes in seconds
      and orders identical, duplicated, rotated and noise codes the same way as gradient
      boosting (``tests/test_metrics_disentanglement.py``), but its values differ (forests
      spread importance over correlated dimensions): for quick looks, not for comparison with
      the literature.
    - a zero-argument factory returning any classifier with ``fit``, ``predict`` and
      ``feature_importances_``.

    Scores from different estimators are not comparable (forests spread importance over
    correlated dimensions, boosting concentrates it; informativeness differs with the
    classifier's capacity): compare models only under one estimator, and report which.
    ``n_jobs`` fits that many factors' classifiers at once (threads; scikit-learn's tree
    building releases the GIL; default ``None``: one per factor, at most one per CPU); it does
    not change the result. Returns ``disentanglement``,
    ``completeness``, ``informativeness_train``, ``informativeness_test``, the
    ``importance_matrix`` ``(d, K)`` and the ``estimator`` name (``"custom"`` for a factory).
    """
    codes_train, factors_train, codes_test, factors_test = _check_train_test(
        codes_train, factors_train, codes_test, factors_test)
    if not callable(estimator) and estimator not in DCI_ESTIMATORS:
        raise ValueError(f"estimator must be one of {DCI_ESTIMATORS} or a zero-argument "
                         f"factory, got {estimator!r}")
    n_codes, n_factors = codes_train.shape[1], factors_train.shape[1]
    if n_jobs is None:
        n_jobs = max(1, min(n_factors, os.cpu_count() or 1))
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer or None, got {n_jobs!r}")
    jobs = [(estimator, seed, codes_train, factors_train[:, j], codes_test, factors_test[:, j])
            for j in range(n_factors)]
    if n_jobs == 1:
        fits = [_fit_factor(*job) for job in jobs]
    else:
        from joblib import Parallel, delayed

        fits = Parallel(n_jobs=min(n_jobs, n_factors), backend="threading")(
            delayed(_fit_factor)(*job) for job in jobs)
    importance = np.zeros((n_codes, n_factors))
    for j, (column, _, _) in enumerate(fits):
        if column is not None:
            importance[:, j] = column
    return {
        "disentanglement": _weighted_one_minus_entropy(importance),
        "completeness": _weighted_one_minus_entropy(importance.T),
        "informativeness_train": float(np.mean([fit[1] for fit in fits])),
        "informativeness_test": float(np.mean([fit[2] for fit in fits])),
        "importance_matrix": importance,
        "estimator": "custom" if callable(estimator) else estimator,
    }


def score(representation_fn: RepresentationFn, dataset: GroundTruthData, *,
          n: int = 10000, seed: int = 0, samples: Samples | None = None,
          estimator: str | Callable[[], Any] = "gradient_boosting") -> dict[str, Any]:
    """:func:`dci` of ``representation_fn``: ``n`` training and ``n // 2`` test points."""
    return dci(*train_test(representation_fn, dataset, n, seed, samples), estimator=estimator,
               seed=seed)
