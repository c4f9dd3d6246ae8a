"""The readable numbers: one table of metric definitions, grouped tables, controls, words."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from topovae.report.compare_html import compare_html
from topovae.report.metric_defs import GROUPS, METRICS, PER_TRANSFORMATION, lookup
from topovae.report.numbers import (
    control_text,
    data_budget_text,
    metrics_tables_html,
    per_transformation_html,
)
from topovae.rundir import RunDir
from topovae.training.experiment import ExperimentConfig

BASE = {"equivariance_ratio": 0.5, "equivariance_ratio_untrained": 0.9,
        "equivariance_error": 300.0, "equivariance_error_control": 600.0,
        "roll_prediction_nll": 380.0, "roll_prediction_nll_static": 410.0,
        "log_likelihood_nats_per_image": -330.25, "n_is_samples": 10,
        "topographic_map": {"score": 0.4, "control": 0.05, "score_untrained": 0.2},
        "disentanglement": {"dci": {"disentanglement": 0.31}}}


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def group_of_rows(page: str) -> dict[str, str]:
    """``{metrics.json key: group heading above its row}`` of :func:`metrics_tables_html`."""
    out, group = {}, None
    for match in re.finditer(r'<h3>([^<]+)</h3>|<tr data-key="([^"]+)"', page):
        if match.group(1):
            group = match.group(1)
        else:
            out[match.group(2)] = group
    return out


def test_definitions_are_unique_grouped_and_point_at_defined_or_known_keys() -> None:
    keys = [d.key for d in METRICS]
    assert len(keys) == len(set(keys))
    assert {d.group for d in METRICS} <= set(GROUPS)
    assert all(d.unit and d.meaning and d.label for d in METRICS + PER_TRANSFORMATION)
    assert {d.better for d in METRICS} <= {"lower", "higher", ""}
    # the keys topovae evaluate writes for a capsule model all have a definition
    for key in ("equivariance_ratio", "equivariance_error", "roll_prediction_nll",
                "roll_prediction_nll_sequence_context", "roll_prediction_mse",
                "log_likelihood_nats_per_image", "capsule_offset_correlation",
                "topographic_map.score", "disentanglement.mig.mig"):
        assert key in keys, key


def test_grouped_tables_with_units_and_controls_beside_values() -> None:
    page = metrics_tables_html(BASE)
    groups = group_of_rows(page)
    assert groups == {"equivariance_ratio": "equivariance", "equivariance_error": "equivariance",
                      "roll_prediction_nll": "prediction",
                      "log_likelihood_nats_per_image": "likelihood",
                      "topographic_map.score": "topographic map",
                      "disentanglement.dci.disentanglement": "disentanglement"}
    text = visible_text(page)
    assert "0.900 (same network untrained)" in text
    assert "410.0 (predicting no change): 30.0 nats better" in text
    assert "0.050 (units shuffled on the map)" in text and "-330.25" in text
    assert "(10 importance samples)" in text  # the number of importance samples, in words
    assert "{" not in text and "protocol" not in text  # no raw JSON; absent keys render nothing


def test_paper_protocol_entries_join_their_counterparts_when_present() -> None:
    metrics = {**BASE, "log_likelihood_paper_protocol_nats_per_image": -95.5,
               "capsule_offset_correlation": 0.6,
               "capsule_offset_correlation_paper_protocol": 0.7}
    page = metrics_tables_html(metrics)
    groups = group_of_rows(page)
    assert groups["log_likelihood_paper_protocol_nats_per_image"] == "likelihood"
    assert groups["capsule_offset_correlation_paper_protocol"] == "equivariance"
    text = visible_text(page)
    assert "-95.50 (paper's protocol)" in text  # beside the joint estimate
    assert "-330.25 (joint over the sequence (ours))" in text  # and the other way round
    definition = next(d for d in METRICS if d.key == "capsule_offset_correlation_paper_protocol")
    assert control_text(definition, metrics) == ["0.600 (our protocol)"]


def test_lookup_and_per_transformation_table() -> None:
    assert lookup(BASE, "topographic_map.score") == 0.4
    assert lookup(BASE, "topographic_map.nope") is None and lookup(BASE, "a.b.c") is None
    table = per_transformation_html({
        "rotation": {"n_sequences": 40, "equivariance_error": 374.3,
                     "equivariance_error_control": 396.1, "equivariance_ratio": 0.945},
        "hue": {"n_sequences": 37, "equivariance_ratio": 0.233}})
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert len(rows) == 3  # header, rotation, hue
    assert re.findall(r">([^<]+)</td>", rows[1]) == ["40", "374.3", "396.1", "0.945"]
    assert re.findall(r">([^<]+)</td>", rows[2]) == ["37", "–", "–", "0.233"]
    assert "corr." not in table  # a column no transformation has is left out
    assert per_transformation_html(None) == "" and per_transformation_html({}) == ""


def test_data_and_budget_in_words() -> None:
    metrics = {"data": {"source": "mnist_5k", "sequence_builder": "single_factor",
                        "n_test_sequences": 128, "sequence_length": 18,
                        "transforms": ["rotation", "hue"],
                        "splits": {"train": {"split": "train", "n_images": 4000},
                                   "test": {"split": "heldout", "n_images": 1000}}},
               "n_ll_sequences": 32, "n_is_samples": 10, "seconds": 61.0}
    summary = {"steps": 4478, "train_seconds": 300.4,
               "machine": {"processor": "AMD EPYC", "cpu_count": 2, "device": "cpu"}}
    words = data_budget_text(metrics, {"train": {"optimizer": "adam", "lr": 0.001}}, summary)
    assert words == [
        "Data: mnist_5k, 4,000 training images (train), 1,000 test images (heldout); sequences "
        "built by single_factor (rotation, hue).",
        "Training budget: 4,478 optimiser steps in 5.0 min on AMD EPYC (2 CPUs); adam at "
        "learning rate 0.001.",
        "Evaluated on 128 test sequences of 18 frames; the log-likelihood on 32 sequences with "
        "10 importance samples; evaluation took 61 s."]
    assert data_budget_text({}, {}, {}) == []


def test_compare_page_aggregates_seeds_by_experiment(tmp_path: Path) -> None:
    runs = []
    for seed, (ratio, ll) in enumerate([(0.4, -300.0), (0.6, -310.0), (0.9, -200.0)]):
        preset = "tvae" if seed < 2 else "vae"
        run = RunDir.create(tmp_path / f"run{seed}", ExperimentConfig.from_dict(
            {"preset": preset, "model": {"name": "tvae"}, "train": {"seed": seed}}))
        metrics = {"equivariance_ratio": ratio, "log_likelihood_nats_per_image": ll}
        if seed == 0:
            metrics["log_likelihood_paper_protocol_nats_per_image"] = -90.0
        run.write_results(metrics)
        runs.append(run.path)
    text = visible_text(compare_html(runs, tmp_path))
    assert "0.500 ± 0.141" in text  # mean ± sample std of 0.4 and 0.6
    assert "-305.00 ± 7.07" in text and "0.900" in text and "-200.00" in text
    assert "paper's protocol: -90.00 (n=1)" in text  # one of two runs has it
    assert "no traversal" in text  # the runs have no report yet


def test_cli_compare_html(tmp_path: Path, capsys) -> None:
    from topovae.cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"equivariance_ratio": 0.5}))
    out = tmp_path / "pages" / "compare.html"
    assert main(["compare", str(run), "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(f"compare page: {out}") and "| run |" in printed
    assert "0.500" in visible_text(out.read_text())
    assert main(["compare", str(run), "--html", str(tmp_path)]) == 2  # a folder: one-line error
    captured = capsys.readouterr()
    assert "is a directory" in captured.err and captured.out == ""
