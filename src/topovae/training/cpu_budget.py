"""Stop training once the process has used a given number of CPU-seconds.

Wall time is not a fair budget on a shared machine: a run that waits for the processor trains
fewer steps in the same wall time. :class:`CPUBudget` counts the CPU time of the training
process (``time.process_time``: every thread of the process, user and system) from the start of
training, leaves out the time spent in validation, and asks the trainer to stop after the first
batch at which the budget is spent. ``marks`` are fractions of the budget at which
``on_mark(fraction, module)`` is called once (for example to copy the weights at half the
budget).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L

__all__ = ["CPUBudget"]


class CPUBudget(L.Callback):
    """Stop after ``seconds`` of the process's CPU time spent in training."""

    def __init__(self, seconds: float, *, marks: Sequence[float] = (),
                 on_mark: Callable[[float, L.LightningModule], None] | None = None,
                 clock: Callable[[], float] = time.process_time) -> None:
        if seconds <= 0:
            raise ValueError(f"the CPU budget must be positive seconds, got {seconds}")
        if any(not 0.0 < mark < 1.0 for mark in marks):
            raise ValueError(f"marks must be fractions in (0, 1), got {list(marks)}")
        self.seconds = float(seconds)
        self.clock = clock
        self.on_mark = on_mark
        self.pending_marks = sorted(marks)
        self.spent = 0.0  # CPU-seconds of training so far (validation excluded)
        self.steps = 0  # training batches seen
        self.mark_steps: dict[float, int] = {}  # mark -> batches trained when it was reached
        self._since: float | None = None

    def _account(self) -> None:
        now = self.clock()
        if self._since is not None:
            self.spent += now - self._since
        self._since = now

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = self.clock()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._account()
        self._since = None  # validation is not training

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = self.clock()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._account()
        self.steps += 1
        while self.pending_marks and self.spent >= self.pending_marks[0] * self.seconds:
            mark = self.pending_marks.pop(0)
            self.mark_steps[mark] = self.steps
            if self.on_mark is not None:
                paused = self.clock()
                self.on_mark(mark, pl_module)
                self._since = self._since + (self.clock() - paused)  # not training time
        if self.spent >= self.seconds:
            trainer.should_stop = True
