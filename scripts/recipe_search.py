"""Search CPU training recipes of a preset at a fixed budget of CPU-seconds per trial.

Each trial trains one preset (by default the figures model, ``tvae-Lpartial-mnist-cpu``) with a
named set of optimisation overrides (``--list`` shows them; ``--set key=value`` adds any other)
for exactly ``--cpu-seconds`` of the process's CPU time (one thread; validation and evaluation are
not counted; :class:`topovae.training.cpu_budget.CPUBudget`), on the 4,000 training digits of
``mnist_5k`` with the other 1,000 held out (``data.test_split=heldout``). The model is never
changed: only the optimiser, its schedule, the batch size and the KL warm-up.

The weights at half and at the full budget are then measured on the held-out digits:

* ``ratio``: equivariance ratio E_eq / shuffled-frame control on ``--n-eval`` sequences;
* ``gain``: roll prediction of frames 1..S-1 from frame 0, nats per image better than predicting
  no change, on ``--n-roll`` sequences;
* ``ll``: joint (whole-sequence) importance-sampled log-likelihood, nats per image, with
  ``--n-is`` samples on ``--n-ll`` sequences;

and the training log gives ``KL_z``, ``KL_u``, ``recon`` and ``mu`` (mean of the last logged
steps before each point). One row per (preset, trial, seed) goes to ``--csv`` (replaced when the
trial is rerun). Trials run strictly one after another. The table of ``docs/recipe.md`` comes
from::

    nice -n 10 python scripts/recipe_search.py --trials base lr2e-3 --seeds 0
    nice -n 10 python scripts/recipe_search.py --preset vae-mnist-cpu --trials base lr2e-3
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import torch

from topovae.data.loaders import build_data
from topovae.io import atomic_write_text
from topovae.metrics.equivariance import equivariance_ratio
from topovae.metrics.likelihood import importance_sampled_log_likelihood
from topovae.metrics.roll import roll_prediction
from topovae.models.base import build_model
from topovae.presets import load_preset_dict
from topovae.rundir import create_run_dir
from topovae.training.cpu_budget import CPUBudget
from topovae.training.experiment import ExperimentConfig, apply_overrides, parse_overrides
from topovae.training.trainer import fit

#: The named recipes: overrides of the preset's train/data keys (never of model keys).
TRIALS: dict[str, dict[str, Any]] = {
    "base": {},
    "lr2e-3": {"train.lr": 2e-3},
    "lr3e-3-warm": {"train.lr": 3e-3, "train.lr_warmup_steps": 200},
    "lr5e-4": {"train.lr": 5e-4},
    "b4": {"data.batch_size": 4},
    "b16-lr2e-3": {"data.batch_size": 16, "train.lr": 2e-3},
    "beta2-0.99": {"train.adam_betas": [0.9, 0.99]},
    "lr2e-3-beta2-0.99": {"train.lr": 2e-3, "train.adam_betas": [0.9, 0.99]},
    "lr2e-3-clip": {"train.lr": 2e-3, "train.grad_clip": 100.0},
    "lr3e-3-cos": {"train.lr": 3e-3, "train.lr_warmup_steps": 200, "train.lr_schedule": "cosine",
                   "train.lr_decay_steps": 2800, "train.lr_min_factor": 0.1},
    "lr2e-3-klwarm": {"train.lr": 2e-3, "train.kl_warmup_steps": 500},
}

#: Settings of every trial: no wall-clock limit (the CPU budget stops it), no validation or
#: periodic evaluation inside the budget, one checkpoint at the end, held-out digits as test set.
FIXED = {"data.test_split": "heldout", "train.max_time": None, "train.max_epochs": 100_000,
         "train.val_batches": 0, "train.eval_every_n_steps": 0, "train.progress_bar": False,
         "train.checkpoint_every_n_steps": 1_000_000, "train.log_every_n_steps": 25}

COLUMNS = ["preset", "trial", "seed", "overrides", "cpu_budget_s", "threads", "wall_s",
           "point", "steps", "ratio", "gain", "ll", "kl_z", "kl_u", "recon", "mu"]


def build_experiment(preset: str, overrides: dict[str, Any], seed: int) -> ExperimentConfig:
    resolved = ExperimentConfig.from_dict(load_preset_dict(preset)).to_dict()  # every key
    config = apply_overrides(resolved, {**FIXED, **overrides, "train.seed": seed})
    return ExperimentConfig.from_dict(config)


def heldout_sequences(experiment: ExperimentConfig, n: int) -> torch.Tensor:
    """The first ``n`` held-out test sequences (fixed: seed 0)."""
    bundle = build_data(experiment.data, seed=0)
    loader = bundle.test
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    xs, total = [], 0
    for batch in loader:
        xs.append(batch["x"])
        total += batch["x"].shape[0]
        if total >= n:
            break
    return torch.cat(xs)[:n]


def measure(model: torch.nn.Module, x: torch.Tensor, n_roll: int, n_ll: int,
            n_is: int) -> dict[str, float]:
    """Equivariance ratio, roll gain and joint log-likelihood of ``model`` on ``x``."""
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        codes = torch.cat([model.latent_codes(x[i:i + 16]) for i in range(0, len(x), 16)])
        ratio = float(equivariance_ratio(codes, seed=0))
        gains = [roll_prediction(model, x[i:i + 16], n_keep=0) for i in range(0, n_roll, 16)]
        gain = sum(r.nll_static - r.nll for r in gains) / len(gains)
        ll = importance_sampled_log_likelihood(model, x[:n_ll], n_is, batch_size=4)
    return {"ratio": round(ratio, 4), "gain": round(gain, 2), "ll": round(ll.nats_per_image, 2)}


def logged_terms(run_dir: Path, step: int, window: int = 200) -> dict[str, float]:
    """Mean of the logged training terms over the ``window`` steps before ``step``."""
    sums: dict[str, list[float]] = {}
    with (run_dir / "logs" / "csv" / "metrics.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            if not row.get("step") or not step - window <= float(row["step"]) < step:
                continue
            for key, name in (("train/kl_z", "kl_z"), ("train/kl_u", "kl_u"),
                              ("train/recon_nll", "recon"), ("train/mu", "mu")):
                if row.get(key):
                    sums.setdefault(name, []).append(float(row[key]))
    return {name: round(sum(v) / len(v), 3) for name, v in sums.items()}


def run_trial(preset: str, name: str, overrides: dict[str, Any], seed: int, args: Any
              ) -> list[dict[str, Any]]:
    experiment = build_experiment(preset, overrides, seed)
    run_dir = create_run_dir(Path(args.out) / preset / f"{name}-s{seed}", experiment)
    snapshots: dict[float, dict[str, torch.Tensor]] = {}

    def keep(mark: float, module: Any) -> None:
        snapshots[mark] = copy.deepcopy(module.model.state_dict())

    budget = CPUBudget(args.cpu_seconds, marks=[0.5], on_mark=keep)
    started = time.perf_counter()
    fit(experiment, run_dir, callbacks=[budget])
    wall = time.perf_counter() - started
    model = build_model(experiment.model.name, experiment.model.config)
    x = heldout_sequences(experiment, args.n_eval)
    rows = []
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    points = [("half", snapshots.get(0.5), budget.mark_steps.get(0.5)),
              ("full", {k.removeprefix("model."): v for k, v in final.items()}, budget.steps)]
    for point, state, steps in points:
        if state is None:
            continue
        model.load_state_dict(state)
        values = measure(model, x, args.n_roll, args.n_ll, args.n_is)
        rows.append({"preset": preset, "trial": name, "seed": seed,
                     "overrides": " ".join(f"{k}={v}" for k, v in overrides.items()) or "-",
                     "cpu_budget_s": args.cpu_seconds, "threads": torch.get_num_threads(),
                     "wall_s": round(wall), "point": point, "steps": steps, **values,
                     **logged_terms(run_dir, steps)})
        print(rows[-1], flush=True)
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` to the CSV at ``path``, replacing earlier rows of the same trial and seed."""
    keys = {(r["preset"], r["trial"], str(r["seed"]), r["point"]) for r in rows}
    kept: list[dict[str, Any]] = []
    if path.is_file():
        with path.open(newline="") as file:
            kept = [r for r in csv.DictReader(file)
                    if (r["preset"], r["trial"], r["seed"], r["point"]) not in keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept + rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, out.getvalue())


def markdown_table(path: Path) -> str:
    """The trials of the CSV at ``path`` as a Markdown table: one line per trial and seed."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    points: dict[tuple[str, str, str], dict[str, dict[str, str]]] = {}
    for row in rows:
        points.setdefault((row["preset"], row["trial"], row["seed"]), {})[row["point"]] = row
    lines = ["| preset | trial | overrides | seed | wall s | steps (half / full) "
             "| ratio (half / full) | gain, nats (half / full) | joint LL, nats (half / full) "
             "| KL_z | KL_u | mu |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (preset, trial, seed), by_point in points.items():
        half, full = by_point.get("half", {}), by_point.get("full", {})

        def pair(key: str, half: dict[str, str] = half, full: dict[str, str] = full) -> str:
            return f"{half.get(key, '-')} / {full.get(key, '-')}"

        lines.append(f"| {preset} | {trial} | {full.get('overrides', '-')} | {seed} "
                     f"| {full.get('wall_s', '-')} "
                     f"| {pair('steps')} | {pair('ratio')} | {pair('gain')} | {pair('ll')} "
                     f"| {full.get('kl_z') or '-'} | {full.get('kl_u') or '-'} "
                     f"| {full.get('mu') or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tvae-Lpartial-mnist-cpu")
    parser.add_argument("--trials", nargs="+", default=["base"], help="names of TRIALS")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for every trial (its name gets a '+' suffix)")
    parser.add_argument("--name", default=None, help="trial name when --set is used")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cpu-seconds", type=float, default=240.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-eval", type=int, default=256, help="sequences for the ratio")
    parser.add_argument("--n-roll", type=int, default=64, help="sequences for the roll gain")
    parser.add_argument("--n-ll", type=int, default=16, help="sequences for the likelihood")
    parser.add_argument("--n-is", type=int, default=10, help="importance samples")
    parser.add_argument("--out", default="runs/recipe", help="folder of the trial runs")
    parser.add_argument("--csv", default="docs/data/recipe_search.csv")
    parser.add_argument("--list", action="store_true", help="print the named trials and exit")
    parser.add_argument("--table", action="store_true",
                        help="print the CSV's trials as a Markdown table and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(Path(args.csv)))
        return 0
    if args.list:
        for name, overrides in TRIALS.items():
            print(f"{name:22s} {overrides or '(the preset as it is)'}")
        return 0
    unknown = [t for t in args.trials if t not in TRIALS]
    if unknown:
        print(f"recipe_search: unknown trial(s) {unknown}; --list shows them", file=sys.stderr)
        return 2
    extra = parse_overrides(args.set)
    if any(key.startswith("model.") for key in {**extra, **FIXED}):
        print("recipe_search: model keys are not part of a recipe", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    for trial in args.trials:
        name = trial + ("+" + (args.name or "set") if extra else "")
        for seed in args.seeds:
            rows = run_trial(args.preset, name, {**TRIALS[trial], **extra}, seed, args)
            write_rows(Path(args.csv), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
