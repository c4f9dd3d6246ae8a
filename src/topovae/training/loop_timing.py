"""Time the real ``topovae train`` loop, as users meet it.

:func:`time_training_loop` trains a preset through :func:`topovae.training.trainer.fit`, with
the preset's own logging, validation and checkpoint settings, into a temporary run directory,
and records the wall-clock time at the end of every training batch. After ``warmup`` steps
(allocator, oneDNN kernel selection, first checkpoint) the mean time per step over the next
``steps`` steps is ``loop_step_ms``: everything the loop does between two optimiser steps is in
it (data, logging, progress bar, periodic checkpoints, validation at epoch ends).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["StepTimer", "time_training_loop"]


class StepTimer(L.Callback):
    """Records ``time.perf_counter()`` at the end of every training batch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self.times.append(time.perf_counter())


def time_training_loop(preset: str = "tvae-demo", *, steps: int = 300, warmup: int = 30,
                       precision: str = "32-true", seed: int = 0,
                       overrides: dict[str, Any] | None = None,
                       whole_intervals: bool = True,
                       callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Train ``preset`` for ``warmup + steps`` steps and time the last ``steps`` of them.

    With ``whole_intervals`` the window is lengthened, where needed, to the preset's checkpoint
    and periodic-evaluation intervals, so that the mean holds at least one of each as a user's
    run does (``checkpoints_timed`` and ``evaluations_timed`` say how many it held).

    ``overrides`` are dotted config paths (``{"data.data_dir": "...", "data.source": "mnist"}``)
    applied on top of the preset; the step limit, precision and seed are set here and the
    preset's time limit is lifted. Returns ``loop_step_ms`` (mean over the timed steps),
    ``loop_step_median_ms`` and what the window held (steps per epoch, validation batches,
    checkpoint interval). ``callbacks`` are added to the run's (a profiler, say).
    """
    from topovae.presets import load_preset
    from topovae.rundir import create_run_dir
    from topovae.training.trainer import fit

    for name, value in (("steps", steps), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    experiment = load_preset(preset).with_overrides(dict(overrides or {}))
    if whole_intervals:
        train = experiment.train
        steps = max([steps, train.checkpoint_every_n_steps]
                    + ([train.eval_every_n_steps] if train.eval_every_n_steps else []))
    experiment = experiment.with_overrides({
        "train.max_steps": warmup + steps, "train.max_time": None, "train.precision": precision,
        "train.seed": seed, "train.progress_bar": False})
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="topovae-loop-") as tmp:
        run_dir = create_run_dir(Path(tmp) / "run", experiment)
        result = fit(experiment, run_dir, callbacks=[timer, *(callbacks or [])])
    stamps = timer.times
    if len(stamps) < warmup + 2:
        raise ValueError(f"the loop ran only {len(stamps)} steps; cannot time {steps} steps "
                         f"after {warmup} of warm-up")
    timed = stamps[warmup - 1:]
    gaps = sorted((b - a) * 1000.0 for a, b in zip(timed[:-1], timed[1:], strict=True))
    return {
        "preset": preset,
        "precision": precision,
        "loop_step_ms": (timed[-1] - timed[0]) * 1000.0 / (len(timed) - 1),
        "loop_step_median_ms": gaps[len(gaps) // 2],
        "loop_timed_steps": len(timed) - 1,
        "loop_warmup_steps": warmup,
        "loop_steps_trained": result.steps,
        "checkpoint_every_n_steps": experiment.train.checkpoint_every_n_steps,
        "checkpoints_timed": _multiples_in(warmup, warmup + steps,
                                           experiment.train.checkpoint_every_n_steps),
        "evaluations_timed": _multiples_in(warmup, warmup + steps,
                                           experiment.train.eval_every_n_steps),
        "log_every_n_steps": experiment.train.log_every_n_steps,
        "val_batches": experiment.train.val_batches,
    }


def _multiples_in(first: int, last: int, every: int | None) -> int:
    """How many multiples of ``every`` lie in ``(first, last]`` (the steps of the window)."""
    return last // every - first // every if every else 0
