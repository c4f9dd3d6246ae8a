"""The periodic evaluation during training: logged on schedule, right values, no side effects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_training import run_cli, train_args
from topovae.metrics.equivariance import equivariance_ratio
from topovae.metrics.roll import roll_prediction
from topovae.report import figures
from topovae.training.experiment import TrainConfig
from topovae.training.periodic_eval import PeriodicEvaluation


def test_train_config_rejects_bad_evaluation_settings() -> None:
    assert TrainConfig().eval_every_n_steps == 0  # off unless asked for
    with pytest.raises(ValueError, match="eval_every_n_steps"):
        TrainConfig(eval_every_n_steps=-1).validate()
    with pytest.raises(ValueError, match="eval_sequences"):
        TrainConfig(eval_sequences=1).validate()


def test_measure_matches_the_metrics_and_restores_the_mode() -> None:
    tvae = pytest.importorskip("topovae.models.tvae")
    torch.manual_seed(0)
    model = tvae.TVAE(tvae.TVAEConfig(input_shape=[1, 12, 12], n_caps=2, cap_dim=4, seq_len=4,
                                      time_window=3, capsule_window=3))
    x = torch.rand(3, 4, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    callback = PeriodicEvaluation(x, 5, lambda: 0)
    model.train()
    values = callback.measure(model)
    assert model.training
    model.eval()
    with torch.no_grad():
        ratio = float(equivariance_ratio(model.latent_codes(x), seed=0))
    roll = roll_prediction(model, x, n_keep=0)
    assert values["eval/equivariance_ratio"] == pytest.approx(ratio)
    assert values["eval/roll_gain"] == pytest.approx(roll.nll_static - roll.nll)
    with pytest.raises(ValueError, match="S >= 2"):
        PeriodicEvaluation(x[:, :1], 5, lambda: 0)


def test_evaluation_is_logged_on_schedule_and_changes_no_weight(mnist_dir: Path,
                                                                 tmp_path: Path) -> None:
    plain, evaluated = tmp_path / "plain", tmp_path / "evaluated"
    result = run_cli(train_args(mnist_dir, plain, "train.max_steps=7",
                                "train.eval_every_n_steps=0"))
    assert result.returncode == 0, result.stderr
    result = run_cli(train_args(mnist_dir, evaluated, "train.max_steps=7",
                                "train.eval_every_n_steps=3", "train.eval_sequences=4"))
    assert result.returncode == 0, result.stderr
    # the evaluation draws no random number and restores train mode: the same weights
    first, second = load_file(plain / "model.safetensors"), load_file(
        evaluated / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    columns = figures.read_metrics_csv(evaluated / "logs" / "csv" / "metrics.csv")
    logged = ~np.isnan(columns["eval/equivariance_ratio"])
    assert sorted(columns["step"][logged].tolist()) == [3.0, 6.0, 7.0]  # every 3, and the end
    assert ((columns["eval/equivariance_ratio"][logged] > 0)
            & (columns["eval/equivariance_ratio"][logged] < 2)).all()
    assert np.isfinite(columns["eval/roll_gain"][logged]).all()
    assert "eval/equivariance_ratio" not in figures.read_metrics_csv(
        plain / "logs" / "csv" / "metrics.csv")
    assert figures.plot_training_curves(evaluated / "logs" / "csv" / "metrics.csv",
                                        tmp_path / "curves.png").is_file()

