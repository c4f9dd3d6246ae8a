"""``metrics.json`` has one schema: every key written is declared and read, every key read is
declared and written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from topovae.measure import evaluate_model
from topovae.measure.schema import covered, flatten, notes, schema, table_reads
from topovae.models.base import build_model
from topovae.presets import load_preset

SRC = Path(__file__).resolve().parents[1] / "src" / "topovae"
#: The code that reads metrics.json back: reports, comparison, results page, CLI, run folder.
READERS = [SRC / "report" / name for name in ("numbers.py", "results.py", "compare.py",
                                              "compare_html.py", "html.py")] + [
    SRC / "cli" / "main.py", SRC / "rundir.py"]
_READ = [re.compile(p) for p in (r'metrics\.get\(\s*"([\w.]+)"', r'metrics\[\s*"([\w.]+)"\s*\]',
                                 r"metrics\[\s*'([\w.]+)'\s*\]", r'lookup\(metrics,\s*"([\w.]+)"',
                                 r"number\('([\w.]+)'")]
_LITERAL = re.compile(r"""["']([a-z_][a-z0-9_]*)["']""")


def _source() -> str:
    return "\n".join(path.read_text() for path in READERS)


def literal_reads() -> set[str]:
    """Top-level keys the readers' code reads by name from a metrics mapping."""
    text = _source()
    return {match for pattern in _READ for match in pattern.findall(text)}


def reads() -> set[str]:
    """Every key some table or page reads: the declared columns and controls, the keys read by
    name, and children of those whose name the readers use (``"disentanglement_samples"``)."""
    found = table_reads() | literal_reads() | set(notes())  # the report lists every note
    names = set(_LITERAL.findall(_source()))
    for key in schema():
        parent, _, leaf = key.rpartition(".")
        if parent and leaf in names and (parent in found or parent.split(".")[0] in found):
            found.add(key)
    return found


def is_read(key: str, found: set[str]) -> bool:
    return key in found or any(r.startswith(key + ".") for r in found)


def evaluated(preset: str, overrides: dict, metrics: tuple[str, ...] = ()) -> dict:
    experiment = load_preset(preset).with_overrides(
        {"data.n_train": 16, "data.n_test": 32, "data.batch_size": 8,
         "evaluate.n_eval_sequences": 16, "evaluate.n_ll_sequences": 2,
         "evaluate.n_is_samples": 2, **overrides})
    torch.manual_seed(0)
    model = build_model(experiment.model.name, experiment.model.config).eval()
    return evaluate_model(model, experiment, metrics=metrics)


@pytest.fixture(scope="module")
def written() -> dict[str, set[str]]:
    """The keys ``evaluate`` writes for models of every capability (tiny sizes)."""
    small = {"evaluate.disentanglement_samples": 40, "evaluate.dci_estimator": "random_forest"}
    runs = {
        "tvae dsprites": evaluated("tvae-Lshort-dsprites-cpu", small,
                                   ("mig", "sap", "dci", "factor_vae", "beta_vae")),
        "beta-vae": evaluated("beta-vae-dsprites-cpu", small, ("sap",)),
        "shift operator": evaluated("shift-operator-dsprites-cpu", {}),
    }
    return {name: set(flatten(result)) for name, result in runs.items()}


def test_every_written_key_is_declared(written: dict[str, set[str]]) -> None:
    declared = schema()
    for name, keys in written.items():
        undeclared = sorted(k for k in keys if not covered(k, declared))
        assert not undeclared, f"{name} writes undeclared keys {undeclared}"
    every = set().union(*written.values())
    # the runs cover the capabilities: capsule codes with offsets, likelihoods, an operator
    for key in ("capsule_offset_correlation_paper_protocol", "log_likelihood_nats_per_image",
                "operator_prediction_nll", "disentanglement.dci",
                "per_transformation.*.n_sequences",
                "equivariance_unavailable", "log_likelihood_unavailable"):
        assert key in every, key


def test_every_key_read_is_declared() -> None:
    declared = schema()
    unknown = sorted(k for k in table_reads() | literal_reads() if not covered(k, declared))
    assert not unknown, f"read but never written: {unknown}"


def test_every_declared_key_is_read() -> None:
    found = reads()
    unread = sorted(k for k in schema() if not is_read(k, found))
    assert not unread, f"written but never read: {unread}"


def test_the_check_catches_a_stray_key() -> None:
    declared = schema()
    assert not covered("log_likelihood_paper_protocol", declared)  # an old, never-written name
    assert covered("disentanglement.mig.mig_per_factor", declared)  # inside a metric's block
    assert not is_read("a_key_nobody_reads", reads())
