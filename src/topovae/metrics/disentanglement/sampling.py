"""The sampling every disentanglement metric shares: factors drawn from a ground-truth grid,
rendered and encoded in bounded batches, and the protocol's train / test split of codes.

:func:`sample_codes_and_factors` draws ``n`` points; :class:`Samples` keeps the protocol's
training (``n`` points, ``seed``) and test (``n // 2`` points, ``seed + 1``) codes of one
representation so that MIG, SAP and DCI, asked together, encode them once.
"""

from __future__ import annotations

import numpy as np
import torch

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement._common import RepresentationFn, _positive, _rng

__all__ = ["sample_codes_and_factors", "Samples", "train_test"]


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


class Samples:
    """The protocol's codes of one representation on one dataset, drawn once per ``(n, seed)``."""

    def __init__(self, representation_fn: RepresentationFn, dataset: GroundTruthData) -> None:
        self.representation_fn = representation_fn
        self.dataset = dataset
        self._drawn: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes ``(n, d)`` and factors ``(n, K)`` of :func:`sample_codes_and_factors`."""
        if (n, seed) not in self._drawn:
            self._drawn[(n, seed)] = sample_codes_and_factors(self.representation_fn,
                                                              self.dataset, n, seed=seed)
        return self._drawn[(n, seed)]


def train_test(representation_fn: RepresentationFn, dataset: GroundTruthData, n: int, seed: int,
               samples: Samples | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The protocol's split: ``n`` training points (``seed``) and ``max(1, n // 2)`` test points
    (``seed + 1``): ``codes_train, factors_train, codes_test, factors_test``."""
    if samples is None:
        samples = Samples(representation_fn, dataset)
    codes_train, factors_train = samples.draw(n, seed)
    codes_test, factors_test = samples.draw(max(1, n // 2), seed + 1)
    return codes_train, factors_train, codes_test, factors_test
