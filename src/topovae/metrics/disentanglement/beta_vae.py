"""beta-VAE score (Higgins et al., 2017), disentanglement_lib's protocol: batches of 64, 10,000
training and 5,000 evaluation points, a logistic regression."""

from __future__ import annotations

import numpy as np

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement._common import RepresentationFn, _positive, _rng
from topovae.metrics.disentanglement.sampling import (
    Samples,
    _check_dataset,
    _chunks,
    _observations,
    _represent,
)

__all__ = ["beta_vae_score", "score"]

ESTIMATOR = "LogisticRegression() on mean |difference| of batches of 64 (disentanglement_lib)"


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


def score(representation_fn: RepresentationFn, dataset: GroundTruthData, *,
          n: int = 10000, seed: int = 0, samples: Samples | None = None) -> dict[str, float]:
    """:func:`beta_vae_score` with ``n`` training and ``n // 2`` evaluation points."""
    return beta_vae_score(representation_fn, dataset, seed=seed, num_train=n,
                          num_eval=max(1, n // 2))
