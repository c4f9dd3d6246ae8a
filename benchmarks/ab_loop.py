"""A/B of the ``topovae train`` loop: checkpoints written in the background against in line.

Runs :func:`topovae.training.loop_timing.time_training_loop` on the ``tvae-demo`` preset
(its logging, validation, periodic evaluation and a checkpoint every
``--checkpoint-every`` steps), alternating the two ways of writing checkpoints ``--repeats``
times, and prints for each the median wall time per step, the process CPU time per step (all
threads; the background writer's CPU is counted) and the wall time the training thread spends
in each ``trainer.save_checkpoint`` call (the checkpoint's cost on the critical path).
Interleaving makes both see the same load on a shared machine.

    PYTHONPATH=src python benchmarks/ab_loop.py [--steps 200] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import lightning as L
import torch

import topovae.training.trainer as trainer_module
from topovae.training.background_checkpoint import BackgroundCheckpointIO
from topovae.training.checkpoint import AtomicCheckpointIO
from topovae.training.loop_timing import time_training_loop


class InlineCheckpointIO(BackgroundCheckpointIO):
    """The same files, written on the training thread (the behaviour before)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        AtomicCheckpointIO.save_checkpoint(self, checkpoint, path, storage_options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"background": BackgroundCheckpointIO, "inline": InlineCheckpointIO}
    results: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": [], "save": []}
                                                  for v in variants}
    save = L.Trainer.save_checkpoint
    saves: list[float] = []

    def timed_save(self: L.Trainer, *a: Any, **k: Any) -> None:
        start = time.perf_counter()
        save(self, *a, **k)
        saves.append((time.perf_counter() - start) * 1000.0)

    L.Trainer.save_checkpoint = timed_save  # type: ignore[method-assign]
    overrides = {"train.checkpoint_every_n_steps": args.checkpoint_every}
    for _ in range(args.repeats):
        for name, io_class in variants.items():
            trainer_module.BackgroundCheckpointIO = io_class  # type: ignore[misc]
            cpu = time.process_time()
            saves.clear()
            timing = time_training_loop("tvae-demo", steps=args.steps, warmup=args.warmup,
                                        precision=args.precision, overrides=overrides)
            total_steps = args.steps + args.warmup
            results[name]["wall"].append(timing["loop_step_ms"])
            results[name]["cpu"].append((time.process_time() - cpu) * 1000.0 / total_steps)
            results[name]["save"].extend(saves)
    trainer_module.BackgroundCheckpointIO = BackgroundCheckpointIO  # type: ignore[misc]
    summary = {name: {"loop_wall_ms_per_step": statistics.median(r["wall"]),
                      "process_cpu_ms_per_step": statistics.median(r["cpu"]),
                      "save_call_ms_median": statistics.median(r["save"]),
                      "save_calls": len(r["save"]),
                      "wall_runs": r["wall"], "cpu_runs": r["cpu"]}
               for name, r in results.items()}
    summary["settings"] = vars(args)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
