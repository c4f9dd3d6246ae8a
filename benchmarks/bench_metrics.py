"""Time MIG, SAP and DCI at disentanglement_lib's protocol sizes and print a table.

Codes: ``--latents`` dimensions (default 10), a noisy mixture of ``--factor-sizes`` discrete
factors (default the paper's dSprites grid: 3 shapes, 5 scales, 15 orientations, 15 x 15
positions). MIG runs on ``--train`` points (10,000); SAP and DCI train on ``--train`` and test on
``--test`` points (5,000). Also times the equivariance error on MNIST-sized capsule codes.

    python benchmarks/bench_metrics.py [--train 10000] [--test 5000] [--skip-gbt]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from topovae.metrics import dci, equivariance_ratio, mig, sap


def make_data(n: int, sizes: list[int], n_latents: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(size, size=n) for size in sizes], axis=1)
    scaled = factors / (np.array(sizes) - 1)
    mixing = np.eye(len(sizes), n_latents) + 0.2 * rng.normal(size=(len(sizes), n_latents))
    codes = scaled @ mixing + 0.05 * rng.normal(size=(n, n_latents))
    return codes, factors


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
    parser.add_argument("--skip-gbt", action="store_true",
                        help="skip DCI with gradient boosting (the slowest)")
    args = parser.parse_args()

    codes, factors = make_data(args.train + args.test, args.factor_sizes, args.latents, 0)
    train = (codes[: args.train], factors[: args.train])
    test = (codes[args.train :], factors[args.train :])

    rows: list[tuple[str, float, str]] = []
    seconds, result = timed(lambda: mig(*train))
    rows.append((f"MIG ({args.train} points, 20 bins)", seconds, f"mig={result['mig']:.3f}"))
    seconds, result = timed(lambda: sap(*train, *test))
    rows.append((f"SAP (LinearSVC, {args.train}/{args.test})", seconds, f"sap={result:.3f}"))
    seconds, result = timed(lambda: sap(*train, *test, continuous_factors=True))
    rows.append(("SAP (continuous factors)", seconds, f"sap={result:.3f}"))
    estimators = ["random_forest"] if args.skip_gbt else ["gradient_boosting", "random_forest"]
    for estimator in estimators:
        seconds, result = timed(lambda: dci(*train, *test, estimator=estimator))  # noqa: B023
        rows.append((f"DCI ({estimator}, {args.train}/{args.test})", seconds,
                     f"D={result['disentanglement']:.3f} C={result['completeness']:.3f} "
                     f"I_test={result['informativeness_test']:.3f}"))
    capsule_codes = torch.randn(256, 18, 18, 18, generator=torch.Generator().manual_seed(0))
    seconds, result = timed(lambda: equivariance_ratio(capsule_codes))
    rows.append(("equivariance ratio (256 x 18 frames x 18 x 18)", seconds,
                 f"ratio={float(result):.3f}"))

    print(f"{args.latents} latents, factor sizes {args.factor_sizes}, "
          f"torch threads {torch.get_num_threads()}")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'metric'.ljust(width)}  {'seconds':>8}  result")
    for name, seconds, summary in rows:
        print(f"{name.ljust(width)}  {seconds:8.2f}  {summary}")


if __name__ == "__main__":
    main()
