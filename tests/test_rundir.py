"""The run folder is read and written in one place, and every reader refuses the same folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from topovae.cli.main import main
from topovae.report import build_report
from topovae.report.compare import compare, read_run_record
from topovae.rundir import FORMAT_VERSION, RunDir, load_run
from topovae.training.experiment import ExperimentConfig


def new_run(path: Path) -> RunDir:
    return RunDir.create(path, ExperimentConfig.from_dict(
        {"preset": "tvae-demo", "description": "a test run", "train": {"seed": 3}}))


def test_create_and_read_back(tmp_path: Path) -> None:
    run = new_run(tmp_path / "run")
    assert run.checkpoint_dir.is_dir() and not run.has_model
    assert run.config.preset == "tvae-demo" and run.config.train.seed == 3
    assert yaml.safe_load(run.config_path.read_text())["format_version"] == FORMAT_VERSION
    assert not run.results() and run.train_summary() == {} and run.commands() == []
    run.write_results({"equivariance_ratio": 0.5, "topographic_map": {"score": 0.25}})
    results = run.results()
    assert results.number("equivariance_ratio") == 0.5
    assert results.number("topographic_map.score") == 0.25
    assert results.get("topographic_map.nope") is None and results.number("absent") is None
    assert json.loads(run.metrics_path.read_text())["format_version"] == FORMAT_VERSION
    assert not list(run.path.glob(".*.tmp"))  # atomic writes leave no temporary file
    with pytest.raises(ValueError):  # strict JSON: a NaN is not written
        run.write_results({"equivariance_ratio": float("nan")})
    assert run.results().number("equivariance_ratio") == 0.5  # the old file is intact
    with pytest.raises(ValueError, match="not empty"):
        new_run(tmp_path / "run")
    with pytest.raises(ValueError, match="no trained model"):
        run.model()


@pytest.mark.parametrize("config", [
    "format_version: 0\nmodel: {}\n",  # another version
    "model: [unclosed\n",  # not YAML
    "- a list\n",  # not a mapping
    f"format_version: {FORMAT_VERSION}\nmodel: {{name: no-such-model}}\n",  # not a valid config
])
def test_every_reader_refuses_what_load_run_refuses(tmp_path: Path, config: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "bad"
    run.mkdir()
    (run / "config.yaml").write_text(config)
    (run / "metrics.json").write_text(json.dumps({"equivariance_ratio": 0.5}))
    with pytest.raises(ValueError) as refused:
        load_run(run, require_model=False)
    message = str(refused.value)
    for read in (lambda: read_run_record(run), lambda: compare([run]),
                 lambda: build_report(run)):
        with pytest.raises(ValueError) as err:
            read()
        assert str(err.value) == message
    assert main(["compare", str(run)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1


def test_results_of_another_version_are_refused(tmp_path: Path) -> None:
    run = new_run(tmp_path / "run")
    run.metrics_path.write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match="incompatible"):
        run.results()
    with pytest.raises(ValueError, match="incompatible"):
        compare([run.path])
