"""Time the disentanglement metrics at disentanglement_lib's protocol sizes and print a table.

Codes: ``--latents`` dimensions (default 10), a noisy linear mixture of ``--factor-sizes``
discrete factors (default the dSprites grid: 3 shapes, 5 scales, 15 orientations, 15 x 15
positions). MIG runs on ``--train`` points (10,000); SAP and DCI train on ``--train`` and test
on ``--test`` points (5,000). The FactorVAE and beta-VAE scores use their protocol sizes (10,000
training / 5,000 evaluation votes of batches of 64) on a ground-truth dataset whose observation
is that same mixture of the factors, so only the metric's own cost is timed (an encoder's cost
comes on top). Also times the equivariance ratio on MNIST-sized capsule codes. Every row is
measured in the same run; the machine's load average is printed with the table.

    python benchmarks/bench_metrics.py [--train 10000] [--test 5000] [--skip-gbt] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from topovae.metrics import (
    beta_vae_score,
    dci,
    equivariance_ratio,
    factor_vae_score,
    mig,
    sap,
)


def make_mixing(sizes: list[int], n_latents: int, seed: int) -> np.ndarray:
    """``(K, d)``: mostly one latent per factor, plus a 0.2-scale random mixture."""
    rng = np.random.default_rng(seed)
    return np.eye(len(sizes), n_latents) + 0.2 * rng.normal(size=(len(sizes), n_latents))


def make_data(n: int, sizes: list[int], n_latents: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``(n, K)`` drawn uniformly and codes ``(n, d)``: the factors scaled to [0, 1],
    mixed by :func:`make_mixing` and given 0.05-scale Gaussian noise."""
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(size, size=n) for size in sizes], axis=1)
    scaled = factors / (np.array(sizes) - 1)
    codes = scaled @ make_mixing(sizes, n_latents, seed) + 0.05 * rng.normal(size=(n, n_latents))
    return codes, factors


class MixedFactors:
    """Ground-truth data whose observation ``(d, 1, 1)`` is the noiseless mixture of the scaled
    factors (the codes of :func:`make_data` without noise); encode it with ``flatten(1)``."""

    def __init__(self, sizes: list[int], n_latents: int, seed: int) -> None:
        self._sizes = list(sizes)
        self._mixing = torch.as_tensor(make_mixing(sizes, n_latents, seed), dtype=torch.float32)

    @property
    def factor_names(self) -> list[str]:
        return [f"factor_{i}" for i in range(len(self._sizes))]

    @property
    def factor_sizes(self) -> list[int]:
        return self._sizes

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (self._mixing.shape[1], 1, 1)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(size, size=n) for size in self._sizes], axis=1)

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        scaled = torch.as_tensor(factors / (np.array(self._sizes) - 1), dtype=torch.float32)
        return (scaled @ self._mixing)[:, :, None, None]


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--latents", type=int, default=10)
    parser.add_argument("--factor-sizes", type=int, nargs="+", default=[3, 5, 15, 15, 15])
    parser.add_argument("--n-jobs", type=int, default=2,
                        help="also time DCI with this many factors fitted at once (1: skip)")
    parser.add_argument("--skip-gbt", action="store_true",
                        help="skip DCI with gradient boosting (minutes)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    codes, factors = make_data(args.train + args.test, args.factor_sizes, args.latents, 0)
    train = (codes[: args.train], factors[: args.train])
    test = (codes[args.train :], factors[args.train :])
    split = f"{args.train} / {args.test}"

    # (metric, estimator, seconds, points, result)
    rows: list[tuple[str, str, float, str, str]] = []
    seconds, result = timed(lambda: mig(*train))
    rows.append(("MIG", "20-bin histogram", seconds, str(args.train), f"{result['mig']:.3f}"))
    seconds, result = timed(lambda: sap(*train, *test))
    rows.append(("SAP", "LinearSVC(C=0.01)", seconds, split, f"{result['sap']:.3f}"))
    seconds, result = timed(lambda: sap(*train, *test, continuous_factors=True))
    rows.append(("SAP (continuous factors)", "squared correlation", seconds, split,
                 f"{result['sap']:.3f}"))
    runs = [("random_forest", 1)]
    if args.n_jobs > 1:
        runs.append(("random_forest", args.n_jobs))
    if not args.skip_gbt:
        runs.append(("gradient_boosting", 1))
        if args.n_jobs > 1:
            runs.append(("gradient_boosting", args.n_jobs))
    for estimator, n_jobs in runs:
        seconds, result = timed(
            lambda: dci(*train, *test, estimator=estimator, n_jobs=n_jobs))  # noqa: B023
        rows.append((f"DCI (n_jobs={n_jobs})", estimator, seconds, split,
                     f"D={result['disentanglement']:.3f} C={result['completeness']:.3f} "
                     f"I={result['informativeness_test']:.3f}"))

    dataset = MixedFactors(args.factor_sizes, args.latents, 0)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)

    seconds, result = timed(lambda: factor_vae_score(encode, dataset, seed=0))
    rows.append(("FactorVAE score", "majority vote", seconds, "10000 / 5000 votes x 64",
                 f"{result['eval_accuracy']:.3f}"))
    seconds, result = timed(lambda: beta_vae_score(encode, dataset, seed=0))
    rows.append(("beta-VAE score", "LogisticRegression", seconds, "10000 / 5000 pairs x 64",
                 f"{result['eval_accuracy']:.3f}"))
    capsule_codes = torch.randn(256, 18, 18, 18, generator=torch.Generator().manual_seed(0))
    seconds, result = timed(lambda: equivariance_ratio(capsule_codes))
    rows.append(("equivariance ratio", "-", seconds, "256 seq x 18 frames x 18 x 18",
                 f"{float(result):.3f}"))

    print(f"{args.latents} latents, factor sizes {args.factor_sizes}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, 1-minute load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    header = ("metric", "estimator", "seconds", "points", "result")
    table = [header] + [(metric, estimator, f"{seconds:.2f}", points, summary)
                        for metric, estimator, seconds, points, summary in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(width)
                                 for cell, width in zip(cells, widths, strict=True)) + " |"

    print(line(table[0]))
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in table[1:]:
        print(line(row))

if __name__ == "__main__":
    main()
