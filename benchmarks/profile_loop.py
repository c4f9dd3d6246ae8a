"""Where the real ``topovae train`` loop's time goes: ``torch.profiler`` over a window of steps.

Trains the ``tvae-demo`` preset through :func:`topovae.training.loop_timing.time_training_loop`
(its logging, validation, periodic evaluation and checkpoints) and profiles ``--steps`` training
batches after ``--warmup`` of them, with every thread's operations, then prints the operations
with the most self CPU time per step and the wall time per profiled step. Compare it with
``benchmarks/profile_step.py`` (the isolated step) to see what the loop adds.

    PYTHONPATH=src python benchmarks/profile_loop.py [--precision bf16-mixed] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

from topovae.training.loop_timing import time_training_loop


class WindowProfiler(L.Callback):
    """Runs ``torch.profiler`` from the end of batch ``start`` to the end of ``start + steps``."""

    def __init__(self, start: int, steps: int) -> None:
        self.start, self.steps = start, steps
        self.prof: profile | None = None
        self.seconds = 0.0
        self._began = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step == self.start:
            self.prof = profile(activities=[ProfilerActivity.CPU])
            self.prof.__enter__()
            self._began = time.perf_counter()
        elif step == self.start + self.steps and self.prof is not None:
            self.seconds = time.perf_counter() - self._began
            self.prof.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    window = WindowProfiler(args.warmup, args.steps)
    time_training_loop("tvae-demo", steps=args.steps + 5, warmup=args.warmup,
                       precision=args.precision, whole_intervals=False,
                       overrides={"train.eval_every_n_steps": 0}, callbacks=[window])
    if window.prof is None:
        raise SystemExit("profile_loop: the profiled window was never reached")
    rows = sorted(window.prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) / 1000.0 / args.steps
    print(f"{args.precision}, {args.threads} threads: {window.seconds * 1000 / args.steps:.1f} ms "
          f"wall per step, {total:.1f} ms self CPU per step (all threads)")
    for event in rows[:args.top]:
        print(f"  {event.key:<45} {event.self_cpu_time_total / 1000.0 / args.steps:7.2f} ms "
              f"{event.count / args.steps:6.1f} calls")


if __name__ == "__main__":
    main()
