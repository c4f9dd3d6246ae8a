"""A new measurement is one registered class: it reaches metrics.json, ``topovae compare``, the
comparison page and the run report without any change to them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from topovae.measure import Column, EvaluationContext, Measurement, evaluate_model, register
from topovae.measure.base import REGISTRY, columns, measurements, unregister
from topovae.models.base import build_model
from topovae.models.capabilities import CapsuleCodes
from topovae.presets import load_preset
from topovae.report import build_report
from topovae.report.compare import compare
from topovae.report.compare_html import compare_html
from topovae.rundir import RunDir


class CodeNorm(Measurement):
    """The mean Euclidean norm of a capsule of the test codes (a diagnostic)."""

    name = "test_code_norm"
    requires = CapsuleCodes
    order = 95
    columns = (Column("mean_capsule_norm", "mean capsule norm", "Euclidean norm", 4, None,
                      "equivariance", "Mean norm of one capsule of the test sequences' codes.",
                      short="capsule norm", views=frozenset({"report", "compare", "runs"})),)

    def applicable(self, ctx: EvaluationContext) -> bool:
        return ctx.codes() is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        return {"mean_capsule_norm": float(ctx.codes().norm(dim=-1).mean())}


@pytest.fixture()
def code_norm() -> Iterator[None]:
    register(CodeNorm)
    yield
    unregister(CodeNorm.name)


def tiny(preset: str) -> tuple[torch.nn.Module, Any]:
    experiment = load_preset(preset).with_overrides(
        {"data.n_train": 16, "data.n_test": 24, "data.batch_size": 8,
         "evaluate.n_eval_sequences": 8, "evaluate.n_ll_sequences": 2,
         "evaluate.n_is_samples": 2})
    torch.manual_seed(0)
    return build_model(experiment.model.name, experiment.model.config).eval(), experiment


def test_a_registered_measurement_reaches_every_table(code_norm: None, tmp_path: Path) -> None:
    model, experiment = tiny("tvae-Lshort-dsprites-cpu")
    result = evaluate_model(model, experiment)
    # the value is the model's: the same norm computed by hand from the same test sequences
    from topovae.data.loaders import build_data
    from topovae.measure import collect_test_sequences

    x, _ = collect_test_sequences(build_data(experiment.data, seed=experiment.evaluate.seed), 8)
    with torch.no_grad():
        expected = float(model.latent_codes(x).norm(dim=-1).mean())
    assert result["mean_capsule_norm"] == pytest.approx(expected, rel=1e-6)
    runs = []
    for seed in (0, 1):
        run = RunDir.create(tmp_path / f"run{seed}", experiment.with_overrides(
            {"train.seed": seed, "preset": "tiny"}))
        run.write_results({**result, "mean_capsule_norm": result["mean_capsule_norm"] + seed})
        runs.append(run.path)
    value = f"{result['mean_capsule_norm']:,.3f}"
    table = compare(runs)  # one row per run
    assert "capsule norm" in table.splitlines()[0] and value in table
    summary = json.loads(compare(runs, by="preset", fmt="json"))["experiments"][0]["metrics"]
    assert summary["mean_capsule_norm"]["n"] == 2
    assert summary["mean_capsule_norm"]["std"] == pytest.approx(2 ** -0.5)
    assert "capsule norm" in compare(runs, by="preset")
    page = compare_html(runs, tmp_path)
    assert "mean capsule norm" in page and "Mean norm of one capsule" in page
    report = build_report(runs[0]).read_text()
    assert 'data-key="mean_capsule_norm"' in report
    assert f"{result['mean_capsule_norm']:,.4f}" in report


def test_a_model_without_the_capability_does_not_get_it(code_norm: None) -> None:
    model, experiment = tiny("beta-vae-dsprites-cpu")
    assert not isinstance(model, CapsuleCodes)
    assert "mean_capsule_norm" not in evaluate_model(model, experiment)


def test_registry_rules(code_norm: None) -> None:
    assert CodeNorm.name in REGISTRY and measurements()[-1].name == CodeNorm.name
    with pytest.raises(ValueError, match="already registered"):
        register(CodeNorm)
    with pytest.raises(ValueError, match="view must be one of"):
        columns("nowhere")
    with pytest.raises(ValueError, match="unknown views"):
        Column("x", "x", views=frozenset({"nowhere"}))
    keys = [c.key for c in columns("report")]
    assert keys.index("mean_capsule_norm") < keys.index("roll_prediction_nll")  # by group
