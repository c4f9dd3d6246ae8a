"""``topovae evaluate``: the registered measurements of a trained run, into ``RUN/metrics.json``.

Everything is computed on the run's test split, with the RNG seeded from ``evaluate.seed`` so
that evaluating the same run twice gives the same numbers. Each measurement is one unit of
:mod:`topovae.measure.base` (name, capability, function, columns) in a file of its own:

* :mod:`.likelihood`: importance-sampled ``log p(x)`` scored jointly over each sequence, and the
  original code's per-frame estimator (``_paper_protocol``) with both for the untrained twin;
* :mod:`.equivariance`: ``equivariance_error``, its shuffled control, their ratio and the
  untrained twin's ratio; per transformation (builders varying one factor per sequence, Table
  2); the capsule-offset correlations (frames one step apart), ours and the original code's,
  with random-code controls;
* :mod:`.roll`: frame 0's capsules rolled by ``k`` and decoded, against frame ``k`` (alone, and
  with the sequence as context) and the no-change control; for models with a latent operator of
  their own, the prediction with that operator and the roll one frame step has become;
* :mod:`.topographic_map`: the torus map's neighbour correlation of class profiles against
  shuffled maps and the untrained twin;
* :mod:`.disentanglement`: optionally (``--metrics``) MIG, SAP, DCI, FactorVAE and beta-VAE.

The evaluation context (:mod:`.context`) computes the test sequences, the codes and the
untrained twin once. A measurement that does not apply writes its ``None`` placeholders and a
one-line reason (``*_unavailable``), or nothing. The keys of ``metrics.json`` are the
measurements' declarations (:mod:`.schema`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from topovae.measure.base import (
    Column,
    Control,
    Measurement,
    columns,
    measurements,
    register,
    unregister,
)
from topovae.measure.context import EvaluationContext, collect_test_sequences
from topovae.rundir import RunDir
from topovae.training.experiment import DISENTANGLEMENT_METRICS, ExperimentConfig

__all__ = ["evaluate_run", "evaluate_model", "collect_test_sequences", "EvaluationContext",
           "Measurement", "Column", "Control", "register", "unregister", "measurements",
           "columns", "jsonable"]


def evaluate_model(model: torch.nn.Module, experiment: ExperimentConfig, *,
                   metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Every registered measurement of ``model`` on the test split of ``experiment``
    (a JSON-able dict: the values of ``metrics.json``)."""
    from topovae.data.loaders import build_data
    from topovae.memory import keep_freed_memory

    keep_freed_memory()  # as in training: no page faults for the importance sampler's tensors
    ev = experiment.evaluate
    started = time.perf_counter()
    torch.manual_seed(ev.seed)
    np.random.seed(ev.seed)
    model.eval()
    device = next(model.parameters()).device
    bundle = build_data(experiment.data, seed=ev.seed)
    x, factors = collect_test_sequences(bundle, ev.n_eval_sequences)
    x = x.to(device)
    ctx = EvaluationContext(model, experiment, bundle, x, factors, tuple(metrics))
    result = ctx.results
    result["model"] = model.registry_name
    result["data"] = {"source": experiment.data.source, "test_split": experiment.data.test_split,
                      "sequence_builder": ctx.builder, "n_test_sequences": int(len(x)),
                      "sequence_length": int(x.shape[1]), **jsonable(dict(bundle.info))}
    with torch.no_grad():
        for measurement in measurements():
            values = (measurement.run(ctx) if measurement.applies(ctx)
                      else measurement.unavailable(ctx))
            result.update(values)
    result["seed"] = ev.seed
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["evaluated_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return jsonable(result)


def jsonable(value: Any) -> Any:
    """``value`` with tensors, arrays and numpy scalars as plain JSON values (NaN/inf -> None)."""
    import math

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def evaluate_run(run_dir: str | Path, *, n_is_samples: int | None = None,
                 n_sequences: int | None = None, metrics: Sequence[str] | None = None,
                 data_dir: str | Path | None = None,
                 disentanglement_samples: int | None = None,
                 dci_estimator: str | None = None) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` and write ``run_dir/metrics.json`` (atomically).

    Arguments left as ``None`` take the run's ``evaluate`` settings (``disentanglement_samples``
    overrides ``evaluate.disentanglement_samples``). Unknown metric names or a non-positive
    sample size raise ``ValueError`` before anything is computed.
    """
    run = RunDir(run_dir)
    experiment = run.config
    ev_overrides: dict[str, Any] = {}
    if n_is_samples is not None:
        ev_overrides["n_is_samples"] = n_is_samples
    if n_sequences is not None:
        ev_overrides["n_eval_sequences"] = n_sequences
    if disentanglement_samples is not None:
        ev_overrides["disentanglement_samples"] = disentanglement_samples
    if dci_estimator is not None:
        ev_overrides["dci_estimator"] = dci_estimator
    if metrics is not None:
        unknown = sorted(set(metrics) - set(DISENTANGLEMENT_METRICS))
        if unknown:
            raise ValueError(f"--metrics: unknown {unknown}; choose from "
                             f"{','.join(DISENTANGLEMENT_METRICS)}")
        ev_overrides["metrics"] = list(metrics)
    evaluate_cfg = experiment.evaluate.replace(**ev_overrides)
    data_cfg = experiment.data
    if data_dir is not None:
        data_cfg = data_cfg.replace(data_dir=str(data_dir))
    experiment = ExperimentConfig.from_dict({**experiment.to_dict(),
                                             "evaluate": evaluate_cfg.to_dict(),
                                             "data": data_cfg.to_dict()})
    model = run.model()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = evaluate_model(model.to(device), experiment, metrics=evaluate_cfg.metrics)
    run.write_results(result)
    return result
