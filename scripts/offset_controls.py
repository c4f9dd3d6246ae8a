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
import math
from pathlib import Path

import numpy as np
import torch

from topovae.data.loaders import build_data
from topovae.measure.context import EvaluationContext, collect_test_sequences
from topovae.measure.equivariance import offsets_paper_protocol, per_transformation
from topovae.rundir import RunDir

_PAPER = "capsule_offset_correlation_paper_protocol"


def _number(value: float | None) -> float | None:
    """Rounded; ``None`` stays ``None`` (a constant side: no correlation defined)."""
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def controls(run: Path) -> dict:
    """The controls of every stepped factor of ``run``'s test sequences (see the module)."""
    run_dir = RunDir(run)
    experiment = run_dir.config
    model = run_dir.model().eval()
    ev = experiment.evaluate
    torch.manual_seed(ev.seed)
    np.random.seed(ev.seed)
    bundle = build_data(experiment.data, seed=ev.seed)
    x, factors = collect_test_sequences(bundle, ev.n_eval_sequences)
    ctx = EvaluationContext(model, experiment, bundle, x, factors, ())
    grid, stepped = ctx.traits.factor_grid, ctx.traits.stepped_factors
    with torch.no_grad():
        sampled, means = ctx.sampled_codes(), ctx.codes()
        untrained = ctx.untrained_sampled_codes()
    generator = torch.Generator().manual_seed(ev.seed)
    order = torch.argsort(torch.rand(sampled.shape[:2], generator=generator), dim=1)
    shuffled = sampled.gather(1, order[..., None, None].expand_as(sampled))
    # the measurements of `topovae evaluate` on each set of codes (same rows, indices, seeds)
    on_samples = offsets_paper_protocol(sampled, factors, ev.seed, grid, stepped,
                                        untrained=untrained)
    on_means = offsets_paper_protocol(means, factors, ev.seed, grid, stepped)
    on_shuffled = offsets_paper_protocol(shuffled, factors, ev.seed, grid, stepped)
    ours = per_transformation(means, factors, experiment, ev.seed)
    return {name: {
        "sequences": entry["paper_protocol_n_sequences"],
        "ours": _number(ours.get(name, {}).get("capsule_offset_correlation")),
        "paper, sampled": _number(entry[_PAPER]),
        "paper, means": _number(on_means[name][_PAPER]),
        "paper, frames shuffled": _number(on_shuffled[name][_PAPER]),
        "paper, untrained, sampled": _number(entry[_PAPER + "_untrained"]),
        "paper, random": _number(entry[_PAPER + "_random"]),
    } for name, entry in on_samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(json.dumps({str(run): controls(run) for run in args.runs}, indent=2))


if __name__ == "__main__":
    main()
