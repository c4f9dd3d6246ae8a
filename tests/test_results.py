"""Aggregation over seeds (compare --by preset), the results page, its Table 1 ordering check,
training wall time / preset recording, and scripts/reproduce.sh in dry-run mode."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from topovae.cli.main import main
from topovae.report.compare import (
    aggregate_runs,
    aggregate_table,
    compare,
    per_transformation_table,
    summarize,
)
from topovae.report.results import (
    CHANCE_TOLERANCE,
    TABLE1,
    base_preset,
    render_results,
    table1_claims,
    table2_claims,
)
from topovae.rundir import RunDir
from topovae.training.experiment import ExperimentConfig

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce.sh"


def make_run(root: Path, name: str, *, preset: str | None = "vae-mnist-cpu", seed: int = 0,
             description: str = "a description", metrics: dict[str, Any] | None = None,
             train_seconds: float | None = None) -> Path:
    """A hand-made run directory: config.yaml, metrics.json and optionally train_summary.json."""
    config: dict[str, Any] = {"description": description, "model": {"name": "tvae"},
                              "train": {"seed": seed}}
    if preset is not None:
        config["preset"] = preset
    run = RunDir.create(root / name, ExperimentConfig.from_dict(config))
    if metrics is not None:
        run.write_results({"model": "tvae", **metrics})
    if train_seconds is not None:
        run.write_train_summary({
            "train_seconds": train_seconds, "steps": 100,
            "machine": {"processor": "Test CPU", "cpu_count": 2, "torch": "2.x",
                        "device": "cpu", "num_devices": 1}})
    return run.path


def table_row(header: list[str], line: str) -> dict[str, str]:
    """A Markdown table line as {column: cell}."""
    return dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))


# -- summarize / aggregate -------------------------------------------------------------------------
def test_summarize_known_values() -> None:
    result = summarize([1.0, 2.0, 4.0, None, float("nan")])
    assert result["n"] == 3 and result["values"] == [1.0, 2.0, 4.0]
    assert result["mean"] == pytest.approx(7 / 3)
    # sample standard deviation (ddof = 1)
    expected = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert result["std"] == pytest.approx(expected)
    assert summarize([5.0]) == {"mean": 5.0, "std": None, "n": 1, "values": [5.0]}
    assert summarize([None]) == {"mean": None, "std": None, "n": 0, "values": []}


def test_aggregate_groups_by_preset_with_mean_and_std(tmp_path: Path) -> None:
    ll = [-190.0, -186.0, -188.5]
    errors = [13000.0, 13300.0, 13150.0]
    runs = []
    for seed in range(3):
        runs.append(make_run(tmp_path, f"vae-{seed}", seed=seed, train_seconds=60.0 * (seed + 1),
                             metrics={"log_likelihood_nats_per_image": ll[seed],
                                      "n_is_samples": 10, "equivariance_error": errors[seed],
                                      "equivariance_error_control": 13100.0,
                                      "equivariance_ratio": errors[seed] / 13100.0,
                                      "roll_prediction_nll": 300.0 + seed,
                                      "roll_prediction_nll_static": 250.0,
                                      "equivariance_ratio_untrained": 0.99 + 0.01 * seed}))
        # interleave another preset: groups keep the order of first appearance
        runs.append(make_run(tmp_path, f"tvae-{seed}", preset="tvae-Lhalf-mnist-cpu", seed=seed,
                             metrics={"log_likelihood_nats_per_image": -180.0 - seed,
                                      "n_is_samples": 10 if seed else 100,
                                      "equivariance_error": 4000.0 + 100 * seed,
                                      "roll_prediction_nll": None}))
    groups = aggregate_runs(runs)
    assert [g["group"] for g in groups] == ["vae-mnist-cpu", "tvae-Lhalf-mnist-cpu"]
    vae, tvae = groups
    assert vae["n"] == 3 and vae["n_evaluated"] == 3 and vae["seeds"] == [0, 1, 2]
    assert vae["runs"] == [str(runs[0]), str(runs[2]), str(runs[4])]
    metric = vae["metrics"]["log_likelihood_nats_per_image"]
    assert metric["mean"] == pytest.approx(statistics.fmean(ll))
    assert metric["std"] == pytest.approx(statistics.stdev(ll))
    assert vae["metrics"]["equivariance_error"]["std"] == pytest.approx(150.0)
    assert vae["metrics"]["train_seconds"]["mean"] == pytest.approx(120.0)
    assert vae["metrics"]["roll_prediction_nll_static"]["std"] == pytest.approx(0.0)
    assert vae["n_is_samples"] == [10]
    assert tvae["n_is_samples"] == [10, 100]
    assert tvae["metrics"]["roll_prediction_nll"]["n"] == 0
    assert tvae["metrics"]["equivariance_error_control"]["mean"] is None
    assert tvae["metrics"]["train_seconds"]["n"] == 0

    table = aggregate_table(groups).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:3] == ["experiment", "model", "n"]
    assert "MIG" not in header and "capsule offset corr." not in header  # nobody has them
    row = table_row(header, table[2])
    assert row["n"] == "3"
    assert row["log p(x) (nats/image)"] == "-188.17 ± 2.02 (IS 10)"
    assert row["E_eq"] == "13,150.0 ± 150.0"
    assert row["train time (min)"] == "2.0 ± 1.0"
    assert row["ratio untrained"] == "1.000 ± 0.010"
    row = table_row(header, table[3])
    assert row["log p(x) (nats/image)"] == "-181.00 ± 1.00 (IS 10/100)"
    assert row["roll-prediction NLL"] == "–" and row["train time (min)"] == "–"


def test_partial_metrics_disentanglement_and_group_fallbacks(tmp_path: Path) -> None:
    dis = [{"mig": {"mig": 0.1}, "sap": 0.02, "dci": {"disentanglement": 0.3,
                                                       "completeness": 0.4,
                                                       "informativeness_test": 0.8},
            "factor_vae": {"eval_accuracy": 0.6}, "beta_vae": {"eval_accuracy": 0.7}},
           {"mig": {"mig": 0.3}, "sap": 0.04}]
    runs = [make_run(tmp_path, f"b{i}", preset="beta-vae-dsprites-cpu", seed=i,
                     metrics={"disentanglement": dis[i], "capsule_offset_correlation": 0.5 + i})
            for i in range(2)]
    runs.append(make_run(tmp_path, "no-preset", preset=None, description="  Some   thing "))
    runs.append(make_run(tmp_path, "bare", preset=None, description=""))
    groups = aggregate_runs(runs)
    assert [g["group"] for g in groups] == ["beta-vae-dsprites-cpu", "Some thing", "bare"]
    metrics = groups[0]["metrics"]
    assert metrics["mig"]["mean"] == pytest.approx(0.2)
    assert metrics["mig"]["std"] == pytest.approx(math.sqrt(0.02))
    assert metrics["sap"]["values"] == [0.02, 0.04]
    assert metrics["dci_disentanglement"]["n"] == 1
    assert metrics["factor_vae"]["mean"] == pytest.approx(0.6)
    assert metrics["capsule_offset_correlation"]["mean"] == pytest.approx(1.0)
    assert groups[1]["n_evaluated"] == 0
    table = aggregate_table(groups).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert {"MIG", "SAP", "DCI dis.", "FactorVAE", "beta-VAE",
            "capsule offset corr."} <= set(header)
    row = table_row(header, table[2])
    assert row["DCI dis."] == "0.300 (n=1)"  # one of the two seeds has it
    assert row["MIG"] == "0.200 ± 0.141"
    # the scores can be split into a table of their own
    main_only = aggregate_table(groups, ("main",)).splitlines()[0]
    scores_only = aggregate_table(groups, ("disentanglement",)).splitlines()[0]
    assert "MIG" not in main_only and "capsule offset corr." in main_only
    assert "MIG" in scores_only and "E_eq" not in scores_only
    assert aggregate_table(groups[1:], ("disentanglement",)) == ""


def test_compare_formats_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = make_run(tmp_path, "seed-0", seed=0, metrics={"equivariance_ratio": 0.9})
    b = make_run(tmp_path, "seed-1", seed=1, metrics={"equivariance_ratio": 1.1})
    per_run = compare([a, b]).splitlines()
    assert "seed-0 (vae-mnist-cpu)" in per_run[2] and "seed-1 (vae-mnist-cpu)" in per_run[3]
    data = json.loads(compare([a, b], by="run", fmt="json"))
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    assert data["runs"][1]["metrics"]["equivariance_ratio"] == 1.1
    data = json.loads(compare([a, b], by="preset", fmt="json"))
    ratio = data["experiments"][0]["metrics"]["equivariance_ratio"]
    assert ratio["mean"] == pytest.approx(1.0) and ratio["std"] == pytest.approx(math.sqrt(0.02))
    with pytest.raises(ValueError, match="by"):
        compare([a], by="seed")
    with pytest.raises(ValueError, match="fmt"):
        compare([a], fmt="csv")
    with pytest.raises(ValueError, match="run_dirs"):
        aggregate_runs([])
    with pytest.raises(ValueError, match="run_dirs"):
        aggregate_runs([tmp_path / "missing"])
    # the command line
    assert main(["compare", str(a), str(b), "--by", "preset", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["experiments"][0]["n"] == 2
    assert main(["compare", str(a), str(b), "--by", "preset"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "| vae-mnist-cpu | tvae | 2 |" in lines[2]


# -- Table 1 ordering check ----------------------------------------------------------------------
def table1_runs(root: Path, values: dict[str, tuple[float, float, float]], seeds: int = 2,
                suffix: str = "-cpu") -> list[Path]:
    """Runs of the Table 1 presets with (E_eq, ratio, log-likelihood) means; seeds +- 1%."""
    runs = []
    for base, (error, ratio, ll) in values.items():
        for seed in range(seeds):
            jitter = 1 + (0.01 if seed % 2 else -0.01)
            runs.append(make_run(root, f"{base}{suffix}-{seed}", preset=base + suffix, seed=seed,
                                 metrics={"equivariance_error": error * jitter,
                                          "equivariance_ratio": ratio * jitter,
                                          "log_likelihood_nats_per_image": ll * jitter,
                                          "n_is_samples": 10}))
    return runs


PAPER_ORDER = {"vae-mnist": (13000.0, 1.0, -190.0), "tvae-L0-mnist": (12000.0, 0.95, -191.0),
               "bubbles-mnist": (9000.0, 0.7, -188.0), "tvae-Lshort-mnist": (5000.0, 0.4, -186.0),
               "tvae-Lhalf-mnist": (3000.0, 0.3, -187.0)}


def test_table1_claims_follow_the_numbers(tmp_path: Path) -> None:
    assert base_preset("vae-mnist-cpu") == ("vae-mnist", "cpu")
    assert base_preset("vae-mnist") == ("vae-mnist", "full")
    claims = table1_claims(aggregate_runs(table1_runs(tmp_path / "a", PAPER_ORDER)))
    assert len(claims) == 7
    assert all(c.holds is True for c in claims), [(c.statement, c.evidence) for c in claims]
    assert "seed spread" in claims[0].evidence and "TVAE L=1/2 S 3,000.0" in claims[0].evidence

    # swap the shifting TVAEs with the VAE / L=0: the ordering claims must fail
    reversed_order = {"vae-mnist": (3000.0, 0.3, -186.0), "tvae-L0-mnist": (5000.0, 0.4, -187.0),
                      "bubbles-mnist": (9000.0, 0.7, -188.0),
                      "tvae-Lshort-mnist": (12000.0, 0.95, -190.0),
                      "tvae-Lhalf-mnist": (13000.0, 1.0, -191.0)}
    claims = table1_claims(aggregate_runs(table1_runs(tmp_path / "b", reversed_order)))
    verdicts = {c.statement.split(":")[0][:40]: c.holds for c in claims}
    assert [c.holds for c in claims[:6]] == [False] * 6, verdicts
    assert claims[6].holds is False  # VAE ratio 0.3: not at chance

    # full-protocol runs are judged separately; missing rows make claims not evaluable
    partial = {k: PAPER_ORDER[k] for k in ("vae-mnist", "tvae-Lhalf-mnist")}
    groups = aggregate_runs(table1_runs(tmp_path / "c", partial, seeds=1, suffix=""))
    assert all(c.holds is None for c in table1_claims(groups, "cpu"))
    claims = table1_claims(groups, "full")
    assert [c.holds for c in claims] == [True, True, True, None, None, None, True]
    assert "one seed" in claims[-1].evidence and "unknown" in claims[0].evidence
    with pytest.raises(ValueError, match="variant"):
        table1_claims(groups, "gpu")


def dsprites_runs(root: Path, values: dict[str, tuple[float, float]], seeds: int = 3
                  ) -> list[Path]:
    """Table 2 runs: for each preset (ratio, capsule-offset correlation), two transformations
    per run whose per-transformation values spread around them by seed."""
    runs = []
    for preset, (ratio, corr) in values.items():
        for seed in range(seeds):
            jitter = 0.01 * (seed - 1)
            per = {"pos_x": {"n_sequences": 3, "equivariance_error": 10.0 * ratio,
                             "equivariance_ratio": ratio - 0.1 + jitter,
                             "capsule_offset_correlation": corr + jitter},
                   "scale": {"n_sequences": 3, "equivariance_error": 20.0 * ratio,
                             "equivariance_ratio": ratio + 0.1 + jitter,
                             "capsule_offset_correlation": None}}
            runs.append(make_run(root, f"{preset}-{seed}", preset=f"{preset}-cpu", seed=seed,
                                 metrics={"equivariance_error": 15.0 * ratio,
                                          "equivariance_ratio": ratio + jitter,
                                          "capsule_offset_correlation": corr + jitter,
                                          "per_transformation": per}))
    return runs


def test_table2_claims_and_per_transformation_table(tmp_path: Path) -> None:
    paper = {"vae-dsprites": (1.0, 0.0), "tvae-L0-dsprites": (0.9, 0.1),
             "bubbles-dsprites": (0.8, 0.2), "tvae-Lshort-dsprites": (0.5, 0.8),
             "tvae-Lthird-dsprites": (0.4, 0.9), "tvae-Lhalf-dsprites": (0.3, 0.95)}
    groups = aggregate_runs(dsprites_runs(tmp_path / "a", paper))
    claims = table2_claims(groups)
    assert [c.holds for c in claims] == [True, True, True], [c.evidence for c in claims]
    assert "worst shifting TVAE L=1/6 S vs best other BubbleVAE" in claims[0].evidence
    # one shifting row worse than BubbleVAE breaks "every shifting row beats every other"
    worse = {**paper, "tvae-Lshort-dsprites": (0.85, 0.15)}
    claims = table2_claims(aggregate_runs(dsprites_runs(tmp_path / "b", worse)))
    assert [c.holds for c in claims] == [False, False, True]
    assert all(c.holds is None for c in table2_claims(groups, "full"))

    table = per_transformation_table(groups[:1]).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["experiment", "n", "pos_x E_eq", "pos_x ratio", "pos_x corr.",
                      "scale E_eq", "scale ratio"]  # no run has a scale correlation
    row = table_row(header, table[2])
    assert row["pos_x ratio"] == "0.900 ± 0.010" and row["scale E_eq"] == "20.0 ± 0.0"
    assert per_transformation_table(aggregate_runs(
        [make_run(tmp_path / "c", "r", metrics={"equivariance_ratio": 1.0})])) == ""
    page = render_results(dsprites_runs(tmp_path / "d", paper, seeds=1))
    assert "Per transformation" in page and "**Table 2 (dSprites) claims (the -cpu presets)**" \
        in page


def test_chance_tolerance_is_a_fixed_bound(tmp_path: Path) -> None:
    values = {"vae-mnist": (13000.0, 1.0 + CHANCE_TOLERANCE * 1.5, -190.0)}
    claims = table1_claims(aggregate_runs(table1_runs(tmp_path, values, seeds=1)))
    assert claims[-1].holds is False


def test_render_results_page(tmp_path: Path) -> None:
    runs = table1_runs(tmp_path / "t1", PAPER_ORDER)
    for run in runs:
        (run / "train_summary.json").write_text(json.dumps({
            "train_seconds": 1500.0, "steps": 4000,
            "machine": {"processor": "Test CPU", "cpu_count": 2, "torch": "2.x",
                        "device": "cpu", "num_devices": 1}}))
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["data"] = {"source": "mnist_5k", "sequences": "single_factor",
                           "test_sequences": "single_factor", "seq_len": 18,
                           "n_test_sequences": 256,
                           "splits": {"train": {"split": "train", "n_images": 4000, "of": 5000},
                                      "test": {"split": "test", "n_images": 10000,
                                               "of": 10000}}}
        metrics["n_ll_sequences"] = 64
        (run / "metrics.json").write_text(json.dumps(metrics))
    (runs[0] / "commands.txt").write_text("topovae train --preset vae-mnist-cpu --seed 0\n")
    other = make_run(tmp_path, "x", preset="tvae-demo", metrics={"equivariance_ratio": 0.5})
    dsprites = make_run(tmp_path, "d", preset="beta-vae-dsprites-cpu",
                        metrics={"disentanglement": {"mig": {"mig": 0.2}}})
    page = render_results([other, dsprites, *runs], title="Results (test)")
    assert page.startswith("## Results (test)")
    table1 = page.index("### Table 1: MNIST sequences")
    assert table1 < page.index("### Disentanglement baselines") < page.index("### Other exp")
    rows = [line for line in page.splitlines() if line.startswith("| ") and "-cpu" in line]
    order = [line.split("|")[1].strip() for line in rows]
    assert order[:5] == [f"{name}-cpu" for name in TABLE1]  # the paper's row order
    assert "topovae train --preset vae-mnist-cpu --seed 0" in page  # recorded command
    assert "topovae train --preset tvae-L0-mnist-cpu --seed 0 --out" in page  # rebuilt command
    assert "topovae evaluate" in page and "--metrics mig" in page
    assert "machine: Test CPU, 2 CPUs, device cpu, torch 2.x" in page
    assert "training wall time: 25.0 min per run (± 0.0), 4,000 optimiser steps" in page
    assert "train: 4,000 images of the 5,000 of split 'train'" in page
    assert "evaluated on 256 test sequences, likelihood on 64 with 10 importance samples" in page
    assert "**Table 1 ordering (the -cpu presets)**" in page
    assert page.count("- **holds**") == 7
    assert "data: not recorded" not in page.split("### Disentanglement")[0]


# -- training records its preset and wall time ---------------------------------------------------
def test_train_records_preset_and_train_summary(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    tiny = ["data.n_train=16", "model.config.n_caps=2", "model.config.cap_dim=4",
            "model.config.time_window=1", "train.val_batches=0"]
    assert main(["train", "--preset", "tvae-demo", "--out", str(run), "--max-steps", "2",
                 "--no-progress", *tiny]) == 0, capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["preset"] == "tvae-demo"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["train_seconds"] > 0
    assert summary["machine"]["cpu_count"] == os.cpu_count()
    assert summary["machine"]["torch"] and summary["machine"]["device"]
    assert main(["train", "--resume", str(run), "--max-steps", "3", "--no-progress"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 3 and len(summary["sessions"]) == 2
    assert summary["sessions"][1]["resumed"] is True
    assert summary["train_seconds"] == pytest.approx(
        sum(s["seconds"] for s in summary["sessions"]), abs=0.02)


# -- scripts/reproduce.sh --------------------------------------------------------------------------
def reproduce(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TOPOVAE": f"{sys.executable} -m topovae.cli.main",
                   "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=environment, timeout=60, check=False)


def commands(output: str, verb: str) -> list[str]:
    return [line for line in output.splitlines()
            if line.startswith("+ ") and f" topovae.cli.main {verb} " in line]


def test_reproduce_dry_run_lists_every_experiment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = reproduce("--dry-run", "--seeds", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    trains = commands(result.stdout, "train")
    assert len(trains) == 19 * 2  # every experiment of the paper, two seeds each
    presets = [line.split("--preset ")[1].split()[0] for line in trains]
    for name in TABLE1:  # every Table 1 row, as its -cpu variant, seeds 0 and 1
        assert presets.count(f"{name}-cpu") == 2
        assert f"--preset {name}-cpu --seed 1 --out {out}/runs/{name}-cpu/seed-1" in \
            result.stdout
    assert all("--accelerator" not in line for line in trains)
    evaluations = commands(result.stdout, "evaluate")
    assert len(evaluations) == 38 and len(commands(result.stdout, "report")) == 38
    dsprites = [line for line in evaluations if "dsprites" in line]
    assert len(dsprites) == 9 * 2
    assert all("--metrics mig,sap,dci,factor_vae,beta_vae" in line for line in dsprites)
    assert not any("--metrics" in line for line in evaluations if "dsprites" not in line)
    assert "topovae.report.results" in result.stdout and "compare --by preset --format json" \
        in result.stdout
    assert not out.exists()  # a dry run writes nothing

    gpu = reproduce("--dry-run", "--budget", "gpu", "--seeds", "1", "--out", str(out),
                    "--only", "^(vae|bubbles)-mnist$", "--data-dir", str(tmp_path),
                    "--extra", "--max-steps 5 evaluate.n_eval_sequences=16",
                    "--eval-extra", "--n-is-samples 2")
    assert gpu.returncode == 0, gpu.stderr
    trains = commands(gpu.stdout, "train")
    assert [line.split("--preset ")[1].split()[0] for line in trains] == ["vae-mnist",
                                                                          "bubbles-mnist"]
    assert all(line.endswith(f"--accelerator gpu --data-dir {tmp_path} --max-steps 5 "
                             "evaluate.n_eval_sequences=16") for line in trains), trains
    assert all(line.endswith(f"--data-dir {tmp_path} --n-is-samples 2")
               for line in commands(gpu.stdout, "evaluate"))


def test_reproduce_resumes_and_skips(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runs = out / "runs" / "vae-mnist-cpu"
    done = make_run(runs, "seed-0", metrics={"equivariance_ratio": 1.0})
    (done / "report").mkdir()
    (done / "report" / "index.html").write_text("<html></html>")
    trained = make_run(runs, "seed-1", seed=1)
    (trained / "model.json").write_text("{}")
    killed = make_run(runs, "seed-2", seed=2)
    (killed / "checkpoints").mkdir(exist_ok=True)
    (killed / "checkpoints" / "last.ckpt").write_text("")
    make_run(runs, "seed-3", seed=3)  # killed before its first checkpoint
    result = reproduce("--dry-run", "--seeds", "5", "--out", str(out), "--only", "^vae-mnist$")
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("## vae-mnist-cpu seed ")[1:]
    assert len(blocks) == 5
    assert "already evaluated: skipped" in blocks[0] and "+ " not in blocks[0]
    assert "already trained" in blocks[1] and not commands(blocks[1], "train")
    assert commands(blocks[1], "evaluate") and commands(blocks[1], "report")
    assert f"train --resume {runs}/seed-2" in blocks[2]
    assert f"rm -rf -- {runs}/seed-3" in blocks[3] and "--preset vae-mnist-cpu --seed 3" in \
        blocks[3]
    assert "--preset vae-mnist-cpu --seed 4" in blocks[4]
    assert (runs / "seed-3").exists()  # dry run: nothing removed


def test_reproduce_help_and_bad_arguments(tmp_path: Path) -> None:
    result = reproduce("--help")
    assert result.returncode == 0
    for flag in ("--budget", "--seeds", "--only", "--out", "--data-dir", "--extra", "--dry-run"):
        assert flag in result.stdout
    for args, message in ((["--budget", "tpu"], "--budget"), (["--seeds", "0"], "--seeds"),
                          (["--only", "nothing-matches"], "matches no experiment"),
                          (["--frobnicate"], "unknown argument")):
        bad = reproduce("--dry-run", "--out", str(tmp_path / "o"), *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
