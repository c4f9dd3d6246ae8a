"""Disentanglement metrics following disentanglement_lib's protocol (Locatello et al., 2019).

Five scores of a representation ``r(x) -> R^d`` of images generated from known discrete factors:

- :func:`mig` Mutual Information Gap (Chen et al., 2018);
- :func:`sap` Separated Attribute Predictability (Kumar et al., 2018);
- :func:`dci` Disentanglement, Completeness, Informativeness (Eastwood & Williams, 2018);
- :func:`factor_vae_score` (Kim & Mnih, 2018) and :func:`beta_vae_score` (Higgins et al., 2017),
  which sample batches of observations with one factor held fixed.

Defaults are disentanglement_lib's: MIG with 20 equal-width histogram bins on 10,000 points, SAP
with a linear SVM (C = 0.01, balanced classes) on 10,000 training / 5,000 test points, DCI on
10,000 / 5,000 points with scikit-learn's ``GradientBoostingClassifier`` (defaults), the
FactorVAE score with batches of 64, 10,000 training and 5,000 evaluation votes, 10,000 points for
the global variances and pruning of dimensions whose standard deviation is below 0.05, the
beta-VAE score with batches of 64 and 10,000 / 5,000 points and a logistic regression.

Layout: codes are ``(N, d)`` and factors ``(N, K)`` (points first; disentanglement_lib stores
them transposed). Factors are discrete labels of any integer or float values.

Differences from disentanglement_lib, all deliberate:

- FactorVAE score: disentanglement_lib records the vote of the *index among active dimensions*
  in a matrix indexed by *all* dimensions, which mislabels votes as soon as a dimension before an
  active one is pruned; here votes are recorded for the true dimension index.
- Random numbers come from one ``numpy.random.Generator`` and the votes of many batches are
  computed together, so scores match disentanglement_lib's in distribution, not bit for bit.
- MIG of a factor with a single value (zero entropy) is NaN and left out of the mean.
- DCI fits the factors' classifiers in parallel (threads; the result does not depend on it).
  A faster estimator, ``estimator="random_forest"``, is a named option; its scores are not
  comparable with the protocol's (on identical inputs disentanglement 0.15 against 0.27 and
  0.10 against 0.16 in two cases), so every DCI result records its ``estimator``.

``METRIC_ESTIMATORS`` names, for every score, the estimator and sample sizes it uses by default;
``topovae evaluate`` writes it beside the scores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import stats

from topovae.data.ground_truth import GroundTruthData

__all__ = [
    "RepresentationFn",
    "histogram_discretize",
    "discrete_mutual_information",
    "mig",
    "sap",
    "dci",
    "DCI_ESTIMATORS",
    "METRIC_ESTIMATORS",
    "sample_codes_and_factors",
    "factor_vae_score",
    "beta_vae_score",
]

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


# -- MIG ----------------------------------------------------------------------------------------
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


# -- SAP ----------------------------------------------------------------------------------------
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


def sap(codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any, *,
        continuous_factors: bool = False) -> float:
    """Separated Attribute Predictability.

    For every code dimension ``i`` and factor ``j`` a score says how well dimension ``i`` alone
    predicts factor ``j``: with discrete factors, the test accuracy of a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``, disentanglement_lib's choice) trained on the
    one-dimensional code; with ``continuous_factors``, the squared Pearson correlation on the
    training points. SAP is the mean over factors of the gap between the two best dimensions.
    disentanglement_lib uses 10,000 training and 5,000 test points.
    """
    codes_train, factors_train, codes_test, factors_test = _check_train_test(
        codes_train, factors_train, codes_test, factors_test)
    if codes_train.shape[1] < 2:
        raise ValueError(f"codes_train must have at least 2 dimensions, got {codes_train.shape}")
    scores = _sap_score_matrix(codes_train, factors_train, codes_test, factors_test,
                               continuous_factors)
    top_two = np.sort(scores, axis=0)[::-1][:2]
    return float(np.mean(top_two[0] - top_two[1]))


# -- DCI ----------------------------------------------------------------------------------------
DCI_ESTIMATORS = ("gradient_boosting", "random_forest")
"""Names accepted by :func:`dci`'s ``estimator``; the first (disentanglement_lib's) is the
default."""

#: How each score is computed by default (recorded next to the scores by ``topovae evaluate``).
METRIC_ESTIMATORS = {
    "mig": "20-bin equal-width histogram discretiser, discrete mutual information "
           "(disentanglement_lib)",
    "sap": "LinearSVC(C=0.01, class_weight='balanced') per code dimension and factor "
           "(disentanglement_lib)",
    "dci": "GradientBoostingClassifier() per factor, scikit-learn defaults (disentanglement_lib)",
    "factor_vae": "majority vote of the dimension of least normalised variance, batches of 64, "
                  "prune std < 0.05 (disentanglement_lib)",
    "beta_vae": "LogisticRegression() on mean |difference| of batches of 64 "
                "(disentanglement_lib)",
}


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


# -- sampling through the GroundTruthData protocol ----------------------------------------------
def _represent(representation_fn: RepresentationFn, images: torch.Tensor,
               batch_size: int) -> np.ndarray:
    """Codes ``(n, d)`` float64 of ``images``, computed ``batch_size`` images at a time."""
    outputs = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            codes = representation_fn(images[start : start + batch_size])
            if isinstance(codes, torch.Tensor):
                codes = codes.detach().cpu().numpy()
            codes = np.asarray(codes, dtype=np.float64)
            if codes.ndim != 2:
                raise ValueError(f"representation_fn must return (n, d) codes, got {codes.shape}")
            outputs.append(codes)
    return np.concatenate(outputs, axis=0)


def _check_dataset(dataset: GroundTruthData) -> None:
    if not isinstance(dataset, GroundTruthData):
        raise ValueError(f"dataset must implement GroundTruthData, got {type(dataset).__name__}")


def _observations(dataset: GroundTruthData, factors: np.ndarray) -> torch.Tensor:
    images = dataset.observations_from_factors(factors)
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    return images


def sample_codes_and_factors(representation_fn: RepresentationFn, dataset: GroundTruthData,
                             n: int, seed: int | np.random.Generator = 0, batch_size: int = 64
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` factor vectors uniformly from ``dataset``'s grid, render them and encode them.

    Returns codes ``(n, d)`` (float64) and factors ``(n, K)`` (integers): the inputs of
    :func:`mig`, :func:`sap` and :func:`dci`. Images are rendered and encoded ``batch_size`` at a
    time, so memory stays bounded for any ``n``.
    """
    _check_dataset(dataset)
    n = _positive(n, "n")
    batch_size = _positive(batch_size, "batch_size")
    rng = _rng(seed)
    factors = np.asarray(dataset.sample_factors(n, rng))
    codes = [
        _represent(representation_fn, _observations(dataset, factors[start : start + batch_size]),
                   batch_size)
        for start in range(0, n, batch_size)
    ]
    return np.concatenate(codes, axis=0), factors


def _fixed_factor_batches(dataset: GroundTruthData, n_batches: int, batch_size: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_batches`` batches of ``batch_size`` factor vectors; in batch ``b`` the factor
    ``fixed[b]`` (uniformly drawn) takes one common value. Returns (fixed, factors (b, n, K))."""
    n_factors = len(dataset.factor_sizes)
    fixed = rng.integers(n_factors, size=n_batches)
    factors = np.asarray(dataset.sample_factors(n_batches * batch_size, rng))
    factors = factors.reshape(n_batches, batch_size, n_factors).copy()
    rows = np.arange(n_batches)
    factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
    return fixed, factors


def _chunks(total: int, images_per_item: int, chunk_images: int) -> list[int]:
    per_chunk = max(1, chunk_images // images_per_item)
    return [min(per_chunk, total - start) for start in range(0, total, per_chunk)]


def factor_vae_score(
    representation_fn: RepresentationFn,
    dataset: GroundTruthData,
    *,
    seed: int | np.random.Generator = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    chunk_images: int = 4096,
) -> dict[str, Any]:
    """FactorVAE score (Kim & Mnih, 2018) with disentanglement_lib's protocol.

    Each code dimension is divided by its global standard deviation (estimated on
    ``num_variance_estimate`` random points); dimensions with a global standard deviation below
    ``prune_threshold`` are ignored. A *vote* draws a batch of ``batch_size`` points in which one
    uniformly chosen factor is held at one value, and votes (factor, dimension of smallest
    normalised variance). A majority-vote classifier dimension -> factor is fitted on
    ``num_train`` votes and its accuracy measured on ``num_eval`` fresh votes.

    ``chunk_images`` only sets how many images are rendered and encoded at once (memory); it
    does not change the result. Returns ``train_accuracy``, ``eval_accuracy`` and
    ``num_active_dims``.
    """
    _check_dataset(dataset)
    batch_size = _positive(batch_size, "batch_size")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 to estimate a variance, got {batch_size}")
    num_train = _positive(num_train, "num_train")
    num_eval = _positive(num_eval, "num_eval")
    num_variance_estimate = _positive(num_variance_estimate, "num_variance_estimate")
    if num_variance_estimate < 2:
        raise ValueError("num_variance_estimate must be >= 2")
    if prune_threshold < 0:
        raise ValueError(f"prune_threshold must be >= 0, got {prune_threshold}")
    chunk_images = _positive(chunk_images, "chunk_images")
    rng = _rng(seed)

    codes, _ = sample_codes_and_factors(representation_fn, dataset, num_variance_estimate, rng,
                                        batch_size=chunk_images)
    global_variances = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    active_dims = np.flatnonzero(active)
    n_factors, n_codes = len(dataset.factor_sizes), codes.shape[1]

    def votes(n_votes: int) -> np.ndarray:
        # All random draws first, then rendering and encoding in chunks: the result does not
        # depend on chunk_images.
        fixed, factors = _fixed_factor_batches(dataset, n_votes, batch_size, rng)
        counts = np.zeros((n_factors, n_codes), dtype=np.int64)
        start = 0
        for n_batches in _chunks(n_votes, batch_size, chunk_images):
            chunk = factors[start : start + n_batches].reshape(n_batches * batch_size, n_factors)
            reps = _represent(representation_fn, _observations(dataset, chunk), chunk_images)
            reps = reps.reshape(n_batches, batch_size, n_codes)[:, :, active_dims]
            local = np.var(reps, axis=1, ddof=1) / global_variances[active_dims]
            chosen = active_dims[np.argmin(local, axis=1)]
            np.add.at(counts, (fixed[start : start + n_batches], chosen), 1)
            start += n_batches
        return counts

    training_votes = votes(num_train)
    classifier = np.argmax(training_votes, axis=0)  # dimension -> factor
    columns = np.arange(n_codes)
    train_accuracy = training_votes[classifier, columns].sum() / training_votes.sum()
    eval_votes = votes(num_eval)
    eval_accuracy = eval_votes[classifier, columns].sum() / eval_votes.sum()
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy),
            "num_active_dims": int(active.sum())}


def beta_vae_score(
    representation_fn: RepresentationFn,
    dataset: GroundTruthData,
    *,
    seed: int | np.random.Generator = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    chunk_images: int = 4096,
) -> dict[str, float]:
    """beta-VAE score (Higgins et al., 2017) with disentanglement_lib's protocol.

    A training point draws a uniformly chosen factor and two batches of ``batch_size`` factor
    vectors that agree on that factor; its feature is the mean absolute difference of the two
    batches' codes and its label the chosen factor. A logistic regression (scikit-learn
    defaults) is fitted on ``num_train`` points and scored on ``num_eval`` fresh ones. Chance is
    ``1 / K``. ``chunk_images`` only bounds memory. Returns ``train_accuracy`` and
    ``eval_accuracy``.
    """
    from sklearn.linear_model import LogisticRegression

    _check_dataset(dataset)
    batch_size = _positive(batch_size, "batch_size")
    num_train = _positive(num_train, "num_train")
    num_eval = _positive(num_eval, "num_eval")
    chunk_images = _positive(chunk_images, "chunk_images")
    rng = _rng(seed)
    n_factors = len(dataset.factor_sizes)

    def points(n_points: int) -> tuple[np.ndarray, np.ndarray]:
        # All random draws first, then rendering and encoding in chunks: the result does not
        # depend on chunk_images.
        fixed = rng.integers(n_factors, size=n_points)
        first = np.asarray(dataset.sample_factors(n_points * batch_size, rng))
        second = np.asarray(dataset.sample_factors(n_points * batch_size, rng))
        first = first.reshape(n_points, batch_size, n_factors)
        second = second.reshape(n_points, batch_size, n_factors).copy()
        rows = np.arange(n_points)
        second[rows, :, fixed] = first[rows, :, fixed]
        features, start = [], 0
        for n_pairs in _chunks(n_points, 2 * batch_size, chunk_images):
            chunk = slice(start, start + n_pairs)
            both = np.concatenate([first[chunk], second[chunk]], axis=0).reshape(-1, n_factors)
            reps = _represent(representation_fn, _observations(dataset, both), chunk_images)
            reps = reps.reshape(2, n_pairs, batch_size, -1)
            features.append(np.mean(np.abs(reps[0] - reps[1]), axis=1))
            start += n_pairs
        return np.concatenate(features), fixed

    train_features, train_labels = points(num_train)
    if np.unique(train_labels).size < 2:
        # Only one factor was drawn (tiny num_train): the classifier is that constant label.
        eval_features, eval_labels = points(num_eval)
        return {"train_accuracy": 1.0,
                "eval_accuracy": float(np.mean(eval_labels == train_labels[0]))}
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    model = LogisticRegression(random_state=0)  # the protocol's classifier, defaults and all
    with warnings.catch_warnings(record=True) as caught:
        # recorded in the result rather than printed: lbfgs often stops at its 100 iterations
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(train_features, train_labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    train_accuracy = model.score(train_features, train_labels)
    eval_features, eval_labels = points(num_eval)
    eval_accuracy = model.score(eval_features, eval_labels)
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy),
            "classifier_converged": converged}
