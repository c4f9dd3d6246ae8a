"""Learning-rate schedules (``train.lr_schedule``): a multiplier of ``train.lr`` per step.

``constant`` (the default) keeps ``lr`` throughout, after an optional linear warm-up of
``lr_warmup_steps`` steps (step ``k < W`` uses ``lr * (k + 1) / W``). ``cosine`` warms up the
same way and then follows a half cosine from ``lr`` down to ``lr * lr_min_factor`` over
``lr_decay_steps`` steps, after which the rate stays at that floor. Steps are counted from 0 (the
first optimiser step) and the multiplier depends on the step alone, so a resumed run continues
on the same curve.
"""

from __future__ import annotations

import math

import torch

from topovae.training.experiment import TrainConfig

__all__ = ["lr_factor", "is_default_schedule", "make_scheduler"]


def lr_factor(step: int, train: TrainConfig) -> float:
    """The multiplier of ``train.lr`` at 0-based optimiser step ``step``."""
    warmup = train.lr_warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if train.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / train.lr_decay_steps)
    floor = train.lr_min_factor
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def is_default_schedule(train: TrainConfig) -> bool:
    """True when the rate is ``train.lr`` at every step (no scheduler is needed)."""
    return train.lr_schedule == "constant" and train.lr_warmup_steps == 0


def make_scheduler(optimizer: torch.optim.Optimizer,
                   train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler applying :func:`lr_factor` to every parameter group's rate."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, train))
