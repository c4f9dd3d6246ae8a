"""FactorVAE score (Kim & Mnih, 2018), disentanglement_lib's protocol: batches of 64, 10,000
training and 5,000 evaluation votes, 10,000 points for the global variances, dimensions of
standard deviation below 0.05 pruned."""

from __future__ import annotations

from typing import Any

import numpy as np

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement._common import RepresentationFn, _positive, _rng
from topovae.metrics.disentanglement.sampling import (
    Samples,
    _check_dataset,
    _chunks,
    _fixed_factor_batches,
    _observations,
    _represent,
    sample_codes_and_factors,
)

__all__ = ["factor_vae_score", "score"]

ESTIMATOR = ("majority vote of the dimension of least normalised variance, batches of 64, "
             "prune std < 0.05 (disentanglement_lib)")


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


def score(representation_fn: RepresentationFn, dataset: GroundTruthData, *,
          n: int = 10000, seed: int = 0, samples: Samples | None = None) -> dict[str, Any]:
    """:func:`factor_vae_score` with ``n`` training votes, ``n // 2`` evaluation votes and ``n``
    points for the global variances (``samples`` is not used: votes draw their own batches)."""
    return factor_vae_score(representation_fn, dataset, seed=seed, num_train=n,
                            num_eval=max(1, n // 2), num_variance_estimate=n)
