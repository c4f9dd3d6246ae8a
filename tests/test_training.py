"""Training: overrides, exact resume after a kill, NaN stop, train -> evaluate (DDP: test_ddp)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from topovae.training.experiment import ExperimentConfig, apply_overrides, parse_overrides

# A tiny shifting TVAE on 16 real MNIST digits: seconds per run.
TINY = [
    "data.source=mnist", "data.split=train-5k", "data.n_train=16", "data.n_test=8",
    "data.seq_len=4", "data.batch_size=2", "model.config.n_caps=2", "model.config.cap_dim=4",
    "model.config.seq_len=4", "model.config.time_window=3", "train.val_batches=2",
    "train.log_every_n_steps=1", "evaluate.n_eval_sequences=8", "evaluate.n_ll_sequences=4",
    "evaluate.n_is_samples=3", "--no-progress",
]


def run_cli(args: list[str], env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "topovae.cli.main", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def train_args(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
            "--out", str(out), *TINY, *extra]


def test_overrides_parse_yaml_scalars_and_reject_unknown_keys() -> None:
    parsed = parse_overrides(["train.lr=1e-3", "train.max_time=null", "data.n_train=1000",
                              "model.config.learn_mu=false"])
    assert parsed == {"train.lr": 1e-3, "train.max_time": None, "data.n_train": 1000,
                      "model.config.learn_mu": False}
    experiment = ExperimentConfig().with_overrides({"model.config.time_window": 5,
                                                    "train.lr": 2e-3})
    assert experiment.model.config["time_window"] == 5 and experiment.train.lr == 2e-3
    with pytest.raises(ValueError, match="'lrr'.*valid keys: .*lr"):
        apply_overrides(ExperimentConfig().to_dict(), {"train.lrr": 1.0})
    with pytest.raises(ValueError, match="time_windw"):
        ExperimentConfig().with_overrides({"model.config.time_windw": 5})
    with pytest.raises(ValueError, match="n_train=.many."):
        ExperimentConfig().with_overrides({"data.n_train": "many"})


def test_resume_after_kill_matches_uninterrupted_run(mnist_dir: Path, tmp_path: Path) -> None:
    extra = ["train.max_steps=13", "train.checkpoint_every_n_steps=3"]
    full = run_cli(train_args(mnist_dir, tmp_path / "full", *extra))
    assert full.returncode == 0, full.stderr
    # 8 batches per epoch: killed after step 6, mid-epoch, right after the checkpoint of step 6
    killed = run_cli(train_args(mnist_dir, tmp_path / "killed", *extra),
                     env={"TOPOVAE_FAULT": "kill_after_step=6"})
    assert killed.returncode != 0
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").exists()
    # the checkpoint's weights also in safetensors, equal to those inside the .ckpt
    at_kill = load_file(str(tmp_path / "killed" / "checkpoints" / "last.safetensors"))
    inside = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt",
                        weights_only=True)["state_dict"]
    assert at_kill.keys() == {key.removeprefix("model.") for key in inside}
    assert all(torch.equal(at_kill[key.removeprefix("model.")], value)
               for key, value in inside.items())
    resumed = run_cli(["train", "--resume", str(tmp_path / "killed"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-7), name
    # and the run really trained: weights moved away from a fresh model's
    ckpt = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 13
    # the training curves survive the kill: the resumed run's CSV log has every step of the
    # uninterrupted run's, once, with the same losses
    def logged(run: Path) -> dict[int, float]:
        with (run / "logs" / "csv" / "metrics.csv").open() as file:
            rows = [r for r in csv.DictReader(file) if r.get("loss")]
        steps = [int(r["step"]) for r in rows]
        assert len(steps) == len(set(steps)), steps
        return {int(r["step"]): float(r["loss"]) for r in rows}

    expected, got = logged(tmp_path / "full"), logged(tmp_path / "killed")
    assert len(expected) >= 10 and got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) <= 1e-4 * abs(expected[k]) for k in expected)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(mnist_dir: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "nan"
    result = run_cli(train_args(mnist_dir, out, "train.max_steps=20",
                                "train.checkpoint_every_n_steps=4"),
                     env={"TOPOVAE_FAULT": "nan_at_step=7"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("topovae: error: training stopped: loss is nan at step 7")
    assert "last.ckpt" in lines[-1]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_train_then_evaluate_writes_metrics(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(train_args(mnist_dir, out, "train.max_steps=4"))
    assert result.returncode == 0, result.stderr
    for name in ("config.yaml", "model.json", "model.safetensors", "checkpoints/last.ckpt",
                 "logs/csv/metrics.csv"):
        assert (out / name).exists(), name
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    result = run_cli(["evaluate", str(out)])
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("log_likelihood_nats_per_image", "equivariance_error",
                "equivariance_error_control", "equivariance_ratio", "roll_prediction_nll",
                "roll_prediction_mse", "roll_prediction_nll_static",
                "roll_prediction_nll_sequence_context", "equivariance_ratio_untrained"):
        assert isinstance(metrics[key], float), key
    assert metrics["n_is_samples"] == 3
    assert metrics["data"]["test_split"] == "test" and metrics["data"]["n_test_sequences"] == 8
    assert metrics["data"]["sequence_builder"] == "single_factor"
    assert metrics["log_likelihood_nats_per_image"] < 0
    # deterministic: evaluating again gives the same numbers
    first = metrics
    assert run_cli(["evaluate", str(out)]).returncode == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["equivariance_error"] == first["equivariance_error"]
    assert again["log_likelihood_nats_per_image"] == first["log_likelihood_nats_per_image"]


def test_evaluate_scores_the_topographic_map_of_a_torus_model(mnist_dir: Path) -> None:
    from topovae.data.loaders import build_data
    from topovae.measure import evaluate_model
    from topovae.metrics import topographic_score
    from topovae.models.base import build_model
    from topovae.presets import load_preset

    experiment = load_preset("tvae-2d-mnist-cpu").with_overrides(
        {"data.data_dir": str(mnist_dir), "data.n_train": 16, "data.n_test": 64,
         "data.batch_size": 16, "model.config.n_caps": 4, "model.config.cap_dim": 4,
         "model.config.capsule_window": 3, "evaluate.n_eval_sequences": 8,
         "evaluate.n_ll_sequences": 4, "evaluate.n_is_samples": 2,
         "evaluate.n_map_images": 40})
    torch.manual_seed(0)
    model = build_model(experiment.model.name, experiment.model.config).eval()
    result = evaluate_model(model, experiment)
    found = result["topographic_map"]
    assert found["n_images"] == 40
    # the same number computed by hand from the first 40 test images and their labels
    bundle = build_data(experiment.data, seed=experiment.evaluate.seed)
    bundle.test.set_epoch(0)
    batches = list(bundle.test)
    x = torch.cat([b["x"] for b in batches]).flatten(0, 1)[:40]
    labels = torch.cat([b["labels"] for b in batches])[:40]
    with torch.no_grad():
        expected = topographic_score(model.representation(x), labels, (4, 4), seed=0)
    assert found["score"] == pytest.approx(expected["score"], abs=1e-9)
    assert found["control"] == pytest.approx(expected["control"], abs=1e-9)
    # the untrained control is a fresh network of the same seed: here the model itself
    assert found["score_untrained"] == pytest.approx(found["score"], abs=1e-9)


def test_per_transformation_errors_split_the_overall_error() -> None:
    from topovae.measure.equivariance import per_transformation as _per_transformation
    from topovae.metrics import equivariance_error
    from topovae.presets import load_preset

    experiment = load_preset("tvae-Lshort-dsprites-cpu")
    torch.manual_seed(0)
    codes = torch.randn(40, 15, 15, 15)
    varied = torch.arange(40).remainder(4)  # pos_x, pos_y, orientation, scale in turn
    # make the orientation sequences exactly roll-equivariant: frame k = frame 0 rolled by k
    rolled = torch.stack([codes[:, 0].roll(k, dims=-1) for k in range(15)], dim=1)
    codes[varied == 2] = rolled[varied == 2]
    per = _per_transformation(codes, {"varied": varied[:, None].expand(40, 15)}, experiment, 0)
    assert list(per) == ["pos_x", "pos_y", "orientation", "scale"]
    assert all(entry["n_sequences"] == 10 for entry in per.values())
    assert per["orientation"]["equivariance_error"] == pytest.approx(0.0, abs=1e-3)
    assert per["orientation"]["capsule_offset_accuracy"] == 1.0
    assert per["pos_x"]["equivariance_ratio"] == pytest.approx(1.0, abs=0.05)
    # E_eq is a mean over sequences: the groups' errors average back to the overall one
    overall = float(equivariance_error(codes))
    assert sum(e["equivariance_error"] * e["n_sequences"] for e in per.values()) / 40 == \
        pytest.approx(overall, rel=1e-5)
    # builders that vary several factors at once have no per-transformation split
    assert _per_transformation(codes, {}, experiment, 0) == {}
