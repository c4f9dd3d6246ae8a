"""Does bf16-mixed training reach what float32 training reaches? The demo preset, same steps.

Trains ``tvae-demo`` for ``--steps`` optimiser steps with ``train.precision=32-true`` and with
``bf16-mixed`` for each seed (through the real ``topovae train``), evaluates every run in float32
with ``topovae evaluate``, and prints per-run numbers, the float32 and bf16 means with their
spreads, and whether each bf16 mean lies within the float32 seed range. Runs are resumable: a
run folder that already holds ``metrics.json`` is reused.

    python benchmarks/bf16_agreement.py --out runs/bf16 --steps 2000 --seeds 0 1 2 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

KEYS = ("equivariance_ratio", "roll_gain", "log_likelihood_nats_per_image")


def _run(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "topovae.cli.main", *args], text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"topovae {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def _one(out: Path, precision: str, seed: int, steps: int) -> dict[str, Any]:
    run = out / f"{precision}-seed{seed}"
    if not (run / "metrics.json").is_file():
        if (run / "checkpoints" / "last.ckpt").is_file():
            _run(["train", "--resume", str(run), "--no-progress"])
        elif not (run / "model.safetensors").is_file():
            _run(["train", "--preset", "tvae-demo", "--out", str(run), "--no-progress",
                  "--seed", str(seed), "--max-steps", str(steps), "train.max_time=null",
                  f"train.precision={precision}"])
        _run(["evaluate", str(run)])
    metrics = json.loads((run / "metrics.json").read_text())
    summary = json.loads((run / "train_summary.json").read_text())
    return {"precision": precision, "seed": seed, "steps": summary["steps"],
            "train_seconds": summary["train_seconds"],
            "equivariance_ratio": metrics["equivariance_ratio"],
            "roll_gain": metrics["roll_prediction_nll_static"] - metrics["roll_prediction_nll"],
            "log_likelihood_nats_per_image": metrics["log_likelihood_nats_per_image"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [_one(args.out, precision, seed, args.steps)
            for seed in args.seeds for precision in ("32-true", "bf16-mixed")]
    summary: dict[str, Any] = {"runs": rows, "agreement": {}}
    for key in KEYS:
        f32 = [r[key] for r in rows if r["precision"] == "32-true"]
        b16 = [r[key] for r in rows if r["precision"] == "bf16-mixed"]
        summary["agreement"][key] = {
            "float32_mean": statistics.fmean(f32), "float32_min": min(f32),
            "float32_max": max(f32), "bf16_mean": statistics.fmean(b16),
            "bf16_within_float32_range": min(f32) <= statistics.fmean(b16) <= max(f32)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print("precision   seed  steps  train s  ratio   roll gain  log p(x)")
    for r in rows:
        print(f"{r['precision']:<10}  {r['seed']:>4}  {r['steps']:>5}  {r['train_seconds']:>7.1f}"
              f"  {r['equivariance_ratio']:.3f}  {r['roll_gain']:>9.1f}"
              f"  {r['log_likelihood_nats_per_image']:.1f}")
    for key, value in summary["agreement"].items():
        print(f"{key}: float32 {value['float32_mean']:.3f} [{value['float32_min']:.3f}, "
              f"{value['float32_max']:.3f}], bf16 {value['bf16_mean']:.3f}, within: "
              f"{value['bf16_within_float32_range']}")


if __name__ == "__main__":
    main()
