#!/usr/bin/env python3
"""Controls for the paper's capsule-offset correlation on a trained dSprites run.

For each stepped factor of the run's test sequences, the original code's estimator
(:func:`topovae.metrics.equivariance.capsule_offset_correlation_paper_protocol`) on

- ``sampled``: codes sampled from ``q`` (what the original, and ``metrics.json``, report);
- ``means``: the posterior means' codes instead;
- ``frames shuffled``: the sampled codes with their frames permuted at random within each
  sequence (the factor indices left in place), which destroys any roll between frames while
  keeping each sequence's codes;
- ``untrained, sampled``: codes sampled from the untrained twin (same architecture, random
  weights): what the architecture's own sampling gives before any learning;
- ``random``: Gaussian codes (the chance level ``metrics.json`` reports),

beside ours (:func:`capsule_offset_correlation`, every frame, posterior means). Prints one JSON
object; the test sequences, seed and sizes are the run's ``evaluate`` settings.

    PYTHONPATH=src python scripts/offset_controls.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from topovae.data.loaders import build_data
from topovae.data.sequences import sequence_traits
from topovae.measure.context import EvaluationContext, collect_test_sequences
from topovae.metrics.equivariance import (
    capsule_offset_correlation,
    capsule_offset_correlation_paper_protocol,
)
from topovae.rundir import RunDir


def controls(run: Path) -> dict:
    run_dir = RunDir(run)
    experiment = run_dir.config
    model = run_dir.model().eval()
    ev = experiment.evaluate
    torch.manual_seed(ev.seed)
    np.random.seed(ev.seed)
    bundle = build_data(experiment.data, seed=ev.seed)
    x, factors = collect_test_sequences(bundle, ev.n_eval_sequences)
    ctx = EvaluationContext(model, experiment, bundle, x, factors, ())
    traits = sequence_traits("dsprites")
    with torch.no_grad():
        sampled, means = ctx.sampled_codes().double(), ctx.codes().double()
        twin, b = ctx.untrained(), ctx.batch_size
        untrained = torch.cat([twin(x[i:i + b]).codes for i in range(0, len(x), b)]).double()
    generator = torch.Generator().manual_seed(ev.seed)
    order = torch.argsort(torch.rand(sampled.shape[:2], generator=generator), dim=1)
    shuffled = sampled.gather(1, order[..., None, None].expand_as(sampled))
    random_codes = torch.randn(sampled.shape, generator=generator, dtype=torch.float64)
    out = {}
    for k, name in enumerate(traits.stepped_factors):
        rows = factors["varied"][:, 0] == k
        index = torch.from_numpy(np.searchsorted(traits.factor_grid[name],
                                                 factors[name][rows].numpy()))

        def paper(codes: torch.Tensor, rows: torch.Tensor = rows,
                  index: torch.Tensor = index) -> float:
            value = capsule_offset_correlation_paper_protocol(codes[rows], index)["correlation"]
            return round(float(value), 3)

        out[name] = {"sequences": int(rows.sum()),
                     "ours": round(float(capsule_offset_correlation(means[rows])["correlation"]),
                                   3),
                     "paper, sampled": paper(sampled), "paper, means": paper(means),
                     "paper, frames shuffled": paper(shuffled),
                     "paper, untrained, sampled": paper(untrained),
                     "paper, random": paper(random_codes)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(json.dumps({str(run): controls(run) for run in args.runs}, indent=2))


if __name__ == "__main__":
    main()
