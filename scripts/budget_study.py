#!/usr/bin/env python3
"""Claims versus training budget: train runs in stages and evaluate each at log-spaced steps.

Every run of the plan below is trained with ``topovae train`` to its first evaluation step,
evaluated with ``topovae evaluate``, extended with ``topovae train --resume RUN --max-steps N`` to
the next one (an extension continues exactly where the run stopped), and so on. Each evaluated
point is kept as ``OUT/points/RUN/step-N.json`` (the run's ``metrics.json`` plus the step, the
wall time of training and evaluation, the machine, the precision and the data) and the training
curves as ``OUT/points/RUN/metrics.csv``; the run folders with their checkpoints stay in
``OUT/runs`` and are never committed. The study can be stopped at any moment (a kill, a reboot,
the end of a session) and started again with the same command: finished points are skipped and a
stopped run resumes from its last checkpoint.

Stages are done in the order of the plan's tiers (the Table 1 rerun at 3,000 steps first, then the
curves to 10,000 steps for three seeds, then one seed to 60,000, then the paper's full budget),
so whatever time is available goes to the most useful points first.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/budget_study.py --out runs/budget \\
        --data-dir /work/shared/data/mnist            # run (or resume) the study
    python scripts/budget_study.py --dry-run          # the stages still to do, in order
    python scripts/budget_study.py --only "tvae-Lpartial-mnist-full/seed-0$" --max-step 10000 \
        --data-dir /work/shared/data/mnist            # one run, up to one point (a session's share)
    python scripts/budget_study.py --collect docs/data/budget   # copy the small outputs
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from topovae.hardware import cpu_name, has_bf16_matrix_units  # noqa: E402
from topovae.io import atomic_write_json  # noqa: E402

# The data of every MNIST run: the offline files only (train-5k and the official test set). The
# 5,000 train-5k digits plus the odd-indexed half of the test set train (10% of them validate);
# the even-indexed half of the test set, never trained on, evaluates.
MNIST_DATA = ["data.source=mnist", "data.split=train-5k+test-odd", "data.test_split=test-even",
              "data.val_fraction=0.1"]
# The -cpu presets' recipe, spelled out so that the study keeps training the same experiment when
# a preset's recipe changes: Adam, lr 1e-3 constant, 8 sequences, no KL warm-up, no clipping,
# mu initialised at 30.
CPU_RECIPE = ["train.optimizer=adam", "train.lr=0.001", "train.kl_warmup_steps=0",
              "train.grad_clip=null", "data.batch_size=8", "model.config.mu_init=30.0"]
# The paper's split, for a data folder with the full MNIST (the four official files): 48,000 of
# the 60,000 training digits train, 12,000 validate, the official test set evaluates.
PAPER_DATA = ["data.source=mnist", "data.split=train", "data.test_split=test",
              "data.val_fraction=0.2"]
# No time limit (the step count is the budget), fewer checkpoint writes, and 512 evaluation
# sequences (128 for the likelihood) of the 5,000 held-out digits: evaluation takes seconds.
COMMON = ["train.max_time=null", "train.max_epochs=100000", "train.checkpoint_every_n_steps=1000",
          "evaluate.n_eval_sequences=512", "evaluate.n_ll_sequences=128"]
TABLE1 = ["vae", "tvae-L0", "bubbles", "tvae-Lshort", "tvae-Lhalf", "tvae-Lpartial"]
CURVES = ["vae", "tvae-L0", "bubbles", "tvae-Lshort", "tvae-Lpartial"]
DSPRITES_METRICS = "mig,sap,dci,factor_vae,beta_vae"


@dataclasses.dataclass(frozen=True)
class Stage:
    tier: int
    run: str            # folder name under OUT/runs and OUT/points
    preset: str
    seed: int
    step: int
    overrides: tuple[str, ...]
    eval_args: tuple[str, ...] = ()
    precision: str = "32-true"
    # a run that starts as a copy of another run at its latest point and continues in its own
    # precision (the float32 stretch of a bfloat16 run)
    branch_of: str | None = None


def plan(bf16: bool, mnist_data: list[str] = MNIST_DATA) -> list[Stage]:
    """Every stage of the study, in the order it is done."""
    stages: list[Stage] = []
    mnist_cpu = mnist_data + CPU_RECIPE

    def add(tier: int, name: str, preset: str, seed: int, steps: list[int],
            overrides: list[str], eval_args: tuple[str, ...] = (),
            precision: str = "32-true") -> None:
        run = f"{name}/seed-{seed}"
        for step in steps:
            stages.append(Stage(tier, run, preset, seed, step,
                                tuple(overrides + COMMON + [f"train.precision={precision}"]),
                                eval_args, precision))

    # tier 0: Table 1 with both likelihood estimators, three seeds at 1,000 and 3,000 steps
    for seed in range(3):
        for model in TABLE1:
            add(0, f"{model}-mnist-cpu", f"{model}-mnist-cpu", seed, [1000, 3000], mnist_cpu)
    # tier 1: Table 2 (dSprites, 2,000 steps) with both capsule-offset correlations and DCI under
    # disentanglement_lib's gradient boosting, and the disentanglement baselines (seeds as on the
    # results page: beta-VAE three, beta-TCVAE and FactorVAE two)
    for seed in range(3):
        for model in ["vae", "tvae-L0", "bubbles", "tvae-Lshort", "tvae-Lthird", "tvae-Lhalf",
                      "beta-vae"]:
            add(1, f"{model}-dsprites-cpu", f"{model}-dsprites-cpu", seed, [2000], [],
                ("--metrics", DSPRITES_METRICS))
    for seed in range(2):
        for model in ["beta-tcvae", "factor-vae"]:
            add(1, f"{model}-dsprites-cpu", f"{model}-dsprites-cpu", seed, [2000], [],
                ("--metrics", DSPRITES_METRICS))
    # tier 2: the curves to 10,000 steps, three seeds; dSprites TVAE L = 1/3 S to 10,000
    for seed in range(3):
        for model in CURVES:
            add(2, f"{model}-mnist-cpu", f"{model}-mnist-cpu", seed, [10000], mnist_cpu)
    add(2, "tvae-Lthird-dsprites-cpu-curve", "tvae-Lthird-dsprites-cpu", 0,
        [1000, 3000, 10000], [], ("--metrics", DSPRITES_METRICS))
    # tier 3: one seed to 60,000 steps
    for model in CURVES:
        add(3, f"{model}-mnist-cpu", f"{model}-mnist-cpu", 0, [30000, 60000], mnist_cpu)
    add(3, "tvae-Lthird-dsprites-cpu-curve", "tvae-Lthird-dsprites-cpu", 0, [30000, 60000], [],
        ("--metrics", DSPRITES_METRICS))
    # tier 4: the paper's full budget for the two ends of Table 1 with the paper's optimisation
    # (SGD, lr 1e-4, momentum 0.9, 8 sequences): 600,000 steps = 100 epochs of 48,000 digits;
    # bfloat16-mixed where the processor has bfloat16 matrix units
    precision = "bf16-mixed" if bf16 else "32-true"
    full = [1000, 3000, 10000, 12000, 30000, 60000, 100000, 300000, 600000]
    for model in ["tvae-Lpartial", "vae"]:
        name = f"{model}-mnist-full"
        add(4, name, f"{model}-mnist", 0, full, mnist_data, (), precision)
        if bf16:
            # steps 10,000 to 12,000 once more in float32 from the same checkpoint: the two
            # precisions compared on the same run, data and noise
            at = next(i for i, s in enumerate(stages) if s.run == f"{name}/seed-0"
                      and s.step == 12000)
            source = stages[at]
            stages.insert(at, dataclasses.replace(
                source, run=f"{name}-fp32-stretch/seed-0", precision="32-true",
                overrides=tuple(o for o in source.overrides if not o.startswith("train.precision"))
                + ("train.precision=32-true",), branch_of=source.run))
    return stages


def point_path(out: Path, stage: Stage) -> Path:
    return out / "points" / stage.run / f"step-{stage.step}.json"


def remaining(out: Path, stages: list[Stage]) -> Iterator[Stage]:
    for stage in stages:
        if not point_path(out, stage).exists():
            yield stage


def topovae(*args: str) -> list[str]:
    return [sys.executable, "-m", "topovae.cli.main", *args]


def run_logged(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` appending its output to ``log``; its wall seconds (raises on failure)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    started = time.perf_counter()
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)} (log: {log})")
    return time.perf_counter() - started


def trained_steps(run_dir: Path) -> int:
    summary = run_dir / "train_summary.json"
    if not summary.exists():
        return 0
    return int(json.loads(summary.read_text()).get("steps", 0))


def trained_precision(run_dir: Path) -> str:
    """The precision the run trains in (its own config's ``train.precision``): a run resumed on
    another kind of machine keeps the precision it started with, whatever the plan says there."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return str(config["train"]["precision"])


def do_stage(out: Path, stage: Stage, data_dir: str | None) -> None:
    run_dir = out / "runs" / stage.run
    log = out / "logs" / f"{stage.run.replace('/', '_')}.log"
    branch_seconds = None
    if stage.branch_of is not None and not run_dir.exists():
        source = out / "runs" / stage.branch_of
        copy = run_dir.with_name(run_dir.name + ".copying")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy)
        os.replace(copy, run_dir)
        # same run, other precision: resume() writes the new precision into the copy's config
        code = ("import sys; from topovae.training.trainer import resume; resume(sys.argv[1], "
                "precision=sys.argv[2], max_steps=int(sys.argv[3]), progress_bar=False)")
        branch_seconds = run_logged([sys.executable, "-c", code, str(run_dir), stage.precision,
                                     str(stage.step)], log)
    has_checkpoint = (run_dir / "checkpoints" / "last.ckpt").exists()
    steps_before = trained_steps(run_dir)
    if branch_seconds is not None:
        train_seconds = branch_seconds
    elif steps_before >= stage.step and (run_dir / "model.safetensors").exists():
        train_seconds = 0.0  # already trained this far (stopped between training and evaluation)
    elif has_checkpoint:
        train_seconds = run_logged(topovae("train", "--resume", str(run_dir), "--max-steps",
                                           str(stage.step), "--no-progress"), log)
    else:
        if run_dir.exists():  # a folder with no checkpoint holds nothing worth keeping
            shutil.rmtree(run_dir)
        cmd = ["train", "--preset", stage.preset, "--out", str(run_dir), "--seed",
               str(stage.seed), "--max-steps", str(stage.step), "--no-progress"]
        if data_dir and any(o.startswith("data.source=mnist") for o in stage.overrides):
            cmd += ["--data-dir", data_dir]
        train_seconds = run_logged(topovae(*cmd, *stage.overrides), log)
    steps = trained_steps(run_dir)
    if steps != stage.step:
        raise SystemExit(f"{run_dir} trained to step {steps}, expected {stage.step} (log: {log})")
    eval_cmd = ["evaluate", str(run_dir), *stage.eval_args]
    if data_dir and any(o.startswith("data.source=mnist") for o in stage.overrides):
        eval_cmd += ["--data-dir", data_dir]
    eval_seconds = run_logged(topovae(*eval_cmd), log)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = json.loads((run_dir / "train_summary.json").read_text())
    point = {
        "run": stage.run,
        "preset": stage.preset,
        "seed": stage.seed,
        "step": stage.step,
        "precision": trained_precision(run_dir),
        "overrides": list(stage.overrides),
        "command": "topovae train --preset " + stage.preset + f" --seed {stage.seed} "
        f"--max-steps {stage.step} " + " ".join(stage.overrides)
        + (" (extended with topovae train --resume RUN --max-steps N)" if steps_before else ""),
        "machine": cpu_name(),
        "threads": os.environ.get("OMP_NUM_THREADS", "all"),
        "train_seconds_this_stage": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "train_summary": summary,
        "metrics": metrics,
    }
    path = point_path(out, stage)
    atomic_write_json(path, point)
    csv = run_dir / "logs" / "csv" / "metrics.csv"
    if csv.exists():
        shutil.copyfile(csv, path.parent / "metrics.csv.tmp")
        os.replace(path.parent / "metrics.csv.tmp", path.parent / "metrics.csv")


def touched(stage: Stage) -> set[str]:
    """The run folders a stage reads or writes."""
    return {stage.run} | ({stage.branch_of} if stage.branch_of else set())


@contextlib.contextmanager
def locked(out: Path, runs: set[str]) -> Iterator[bool]:
    """Hold an exclusive lock on every run of ``runs`` (``True``), or on none (``False``) when
    another worker holds one of them."""
    (out / "locks").mkdir(parents=True, exist_ok=True)
    handles = []
    try:
        for run in sorted(runs):
            handle = open(out / "locks" / (run.replace("/", "_") + ".lock"), "w")
            handles.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        yield True
    finally:
        for handle in handles:
            handle.close()  # releases the lock


def select(stages: list[Stage], only: str | None = None, max_tier: int | None = None,
           max_step: int | None = None) -> list[Stage]:
    """The stages of runs whose name matches the regex ``only``, of tiers up to ``max_tier`` and
    steps up to ``max_step``, in plan order."""
    return [s for s in stages
            if (only is None or re.search(only, s.run))
            and (max_tier is None or s.tier <= max_tier)
            and (max_step is None or s.step <= max_step)]


def work(out: Path, stages: list[Stage], data_dir: str | None, wait: float = 30.0) -> None:
    """Do the stages in plan order; several workers (processes) may share ``out``.

    A stage is taken only when every earlier unfinished stage touching the same runs is done and
    no other worker holds those runs, so each run still grows one stage after the other.
    """
    while True:
        todo = list(remaining(out, stages))
        if not todo:
            return
        for i, stage in enumerate(todo):
            if any(touched(earlier) & touched(stage) for earlier in todo[:i]):
                continue
            with locked(out, touched(stage)) as mine:
                if not mine or point_path(out, stage).exists():
                    continue
                started = time.strftime("%H:%M:%S")
                print(f"[{started}] tier {stage.tier} {stage.run} -> step {stage.step}",
                      flush=True)
                do_stage(out, stage, data_dir)
                break
        else:  # everything left is another worker's
            time.sleep(wait)


def collect(out: Path, dest: Path) -> int:
    """Copy the small outputs (points and training curves) to ``dest``; the number of points."""
    n = 0
    for path in sorted((out / "points").rglob("*")):
        if path.is_file() and (path.suffix == ".json" or path.name == "metrics.csv"):
            target = dest / path.relative_to(out / "points")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            n += path.suffix == ".json"
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "budget")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--only", default=None, help="regex on the run name")
    parser.add_argument("--max-tier", type=int, default=None)
    parser.add_argument("--max-step", type=int, default=None,
                        help="only the points up to this many steps (a session's share of a "
                        "long run; the run resumes from there later)")
    parser.add_argument("--paper-split", action="store_true",
                        help="the paper's split of the full MNIST (needs the four official files "
                        "in --data-dir); points go to OUT as usual, so use another --out")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--collect", type=Path, default=None, metavar="DEST")
    args = parser.parse_args()
    if args.collect is not None:
        print(f"{collect(args.out, args.collect)} points copied to {args.collect}")
        return
    stages = select(plan(has_bf16_matrix_units(), PAPER_DATA if args.paper_split else MNIST_DATA),
                    args.only, args.max_tier, args.max_step)
    todo = list(remaining(args.out, stages))
    print(f"{len(stages) - len(todo)} of {len(stages)} points done; {len(todo)} to do", flush=True)
    if args.dry_run:
        for stage in todo:
            print(f"tier {stage.tier}  {stage.run}  step {stage.step}  {stage.precision}")
        return
    work(args.out, stages, args.data_dir)


if __name__ == "__main__":
    main()
