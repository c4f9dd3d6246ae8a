"""Cheap evaluation during training: equivariance ratio and roll-prediction gain over time.

With ``train.eval_every_n_steps = n > 0`` (default 0: off) a capsule model is measured every
``n`` optimiser steps, and once at the end, on one fixed batch of ``train.eval_sequences``
held-out sequences (the first of the validation split, else of the test split):

* ``eval/equivariance_ratio``: E_eq over its shuffled-frame control
  (:func:`topovae.metrics.equivariance.equivariance_ratio`, seed 0);
* ``eval/roll_gain``: how many nats per image the roll prediction of frames ``1..S-1`` from frame
  0 alone beats predicting no change (``nll_static - nll`` of
  :func:`topovae.metrics.roll.roll_prediction`; positive is better);
* ``eval/seconds``: the wall time spent in these evaluations so far, so the cost is visible in
  the same log.

Values go straight to the run's loggers (``logs/csv/metrics.csv`` and TensorBoard) at the
current step, whatever ``train.log_every_n_steps`` is. The evaluation draws no random numbers
from the global generators and restores the model's mode, so a run trains exactly the same
weights with it on or off (and resumes exactly).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from topovae.models.capabilities import CapsuleCodes

__all__ = ["PeriodicEvaluation", "fixed_heldout_batch", "periodic_evaluation"]


def fixed_heldout_batch(bundle: Any, n_sequences: int) -> torch.Tensor | None:
    """The first ``n_sequences`` sequences ``(N, S, C, H, W)`` of the validation split (else
    the test split), always the same ones; ``None`` when there is neither."""
    for name in ("val", "test"):
        loader = getattr(bundle, name, None)
        if loader is None:
            continue
        xs, total = [], 0
        if hasattr(loader, "batch"):  # a pure function of (epoch, index): touches no state
            batches: Any = (loader.batch(0, i) for i in range(len(loader)))
        else:
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(0)
            batches = loader
        for batch in batches:
            xs.append(batch["x"])
            total += batch["x"].shape[0]
            if total >= n_sequences:
                break
        if xs:
            return torch.cat(xs)[:n_sequences]
    return None


class PeriodicEvaluation(L.Callback):
    """Measure the model every ``every_n_steps`` optimiser steps on the sequences ``x``."""

    def __init__(self, x: torch.Tensor, every_n_steps: int, steps_fn: Callable[[], int]) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if x.dim() != 5 or x.shape[1] < 2:
            raise ValueError(f"x must be (N, S, C, H, W) sequences with S >= 2, got "
                             f"{tuple(x.shape)}")
        self.x = x
        self.every_n_steps = every_n_steps
        self.steps_fn = steps_fn
        self.seconds = 0.0
        self._last_step = -1

    def measure(self, model: torch.nn.Module) -> dict[str, float]:
        """``{"eval/equivariance_ratio", "eval/roll_gain"}`` of ``model`` on the fixed batch."""
        from topovae.metrics.equivariance import equivariance_ratio
        from topovae.metrics.roll import roll_prediction

        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        x = self.x.to(device=device, dtype=dtype)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ratio = float(equivariance_ratio(model.latent_codes(x), seed=0))
                roll = roll_prediction(model, x, n_keep=0)
        finally:
            model.train(was_training)
        return {"eval/equivariance_ratio": ratio, "eval/roll_gain": roll.nll_static - roll.nll}

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = self.steps_fn()
        if step == self._last_step or not trainer.is_global_zero:
            return
        self._last_step = step
        started = time.perf_counter()
        values = self.measure(pl_module.model)
        self.seconds += time.perf_counter() - started
        values["eval/seconds"] = self.seconds
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.steps_fn() % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)


def periodic_evaluation(model: torch.nn.Module, bundle: Any, every_n_steps: int,
                        n_sequences: int, steps_fn: Callable[[], int]
                        ) -> PeriodicEvaluation | None:
    """The callback for ``model`` (``None`` for a model without capsule codes or without
    held-out sequences of more than one frame: nothing to measure)."""
    if not isinstance(model, CapsuleCodes):
        return None
    x = fixed_heldout_batch(bundle, n_sequences)
    if x is None or x.shape[1] < 2 or len(x) < 2:
        return None
    return PeriodicEvaluation(x, every_n_steps, steps_fn)
