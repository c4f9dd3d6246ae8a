#!/usr/bin/env python3
"""The roll prediction of trained runs beside its two controls, on the runs' test sequences.

For each run: ``topovae evaluate``'s roll prediction (frame 0 encoded alone, every capsule
rolled by ``k``, decoded, negative log-likelihood of the true frame ``k``, mean over
``k = 1 .. S-1``), the no-change control (frame 0's code unrolled) and the reversed-roll control
(every capsule rolled by ``-k``). The gain over no change is what the results page reports; the
gain over the reversed roll is the part of it that depends on the roll's direction, which is
what equivariance predicts. Runs evaluated before ``roll_prediction_nll_reversed`` existed get
it here; the test sequences, seed and sizes are the run's ``evaluate`` settings, so the first two
numbers equal the run's ``metrics.json``.

    PYTHONPATH=src python scripts/roll_controls.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from topovae.data.loaders import build_data
from topovae.measure.context import EvaluationContext, collect_test_sequences
from topovae.measure.roll import roll_prediction_means
from topovae.rundir import RunDir


def controls(run: Path, data_dir: str | None) -> dict:
    """The three NLLs and the two gains of ``run`` (nats per image)."""
    run_dir = RunDir(run)
    experiment = run_dir.config
    if data_dir is not None:
        experiment = experiment.with_overrides({"data.data_dir": data_dir})
    ev = experiment.evaluate
    bundle = build_data(experiment.data, seed=ev.seed)
    x, factors = collect_test_sequences(bundle, ev.n_eval_sequences)
    model = run_dir.model().eval()
    batch_size = EvaluationContext(model, experiment, bundle, x, factors, ()).batch_size
    with torch.no_grad():
        means = roll_prediction_means(model, x, batch_size)
    roll, static = means["roll_prediction_nll"], means["roll_prediction_nll_static"]
    reversed_ = means["roll_prediction_nll_reversed"]
    return {"steps": run_dir.train_summary().get("steps"), "sequences": len(x),
            "roll_nll": round(roll, 2), "no_change_nll": round(static, 2),
            "reversed_roll_nll": round(reversed_, 2),
            "gain_over_no_change": round(static - roll, 2),
            "gain_over_reversed_roll": round(reversed_ - roll, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    args = parser.parse_args()
    print(json.dumps({str(run): controls(run, args.data_dir) for run in args.runs}, indent=2))


if __name__ == "__main__":
    main()
