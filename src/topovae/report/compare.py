"""``topovae compare``: a Markdown table of several runs, shaped like Table 1 of the paper.

One row per run directory, from its ``metrics.json`` (written by ``topovae evaluate``) and its
``config.yaml``. Columns: the run's name and model, the importance-sampled log-likelihood (nats
per image, with the number of importance samples), the equivariance error, its shuffled control,
their ratio (lower is better; 1 is chance), the capsule-roll prediction NLL and the original code's
per-frame log-likelihood ("paper protocol", for comparison with the paper). A value that a run
does not have (no capsules, evaluation not run, measurement unavailable) is shown as "–".

:func:`aggregate_runs` groups runs by experiment (the ``preset`` recorded in ``config.yaml``,
else its ``description``, else the directory name) and summarises each measurement over the seeds
of a group as mean, sample standard deviation (``ddof = 1``; none for a single seed) and the
number of runs that have it. :func:`compare` renders either view as Markdown or JSON; it is what
``topovae compare [--by run|preset] [--format markdown|json]`` prints.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["compare_table", "COLUMNS", "AGGREGATED_METRICS", "RunRecord", "read_run_record",
           "group_key", "aggregate_runs", "aggregate_table", "compare", "summarize"]

MISSING = "–"
COLUMNS = ["run", "model", "log p(x) (nats/image)", "E_eq", "E_eq control", "ratio",
           "roll-prediction NLL", "log p(x) paper protocol"]


def _number(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    if not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):,.{digits}f}"


def _read_mapping(path: Path, parse: Any, errors: type[Exception] | tuple, kind: str
                  ) -> dict[str, Any]:
    """The mapping stored in ``path`` ({} if absent or not a mapping); ValueError if unreadable."""
    if not path.is_file():
        return {}
    try:
        data = parse(path.read_text())
    except errors as err:
        raise ValueError(f"{path} is not valid {kind}: {err}") from None
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    return _read_mapping(path, json.loads, json.JSONDecodeError, "JSON")


def _read_yaml(path: Path) -> dict[str, Any]:
    return _read_mapping(path, yaml.safe_load, yaml.YAMLError, "YAML")


def _row(run_dir: Path) -> list[str]:
    metrics = _read_json(run_dir / "metrics.json")
    config = _read_yaml(run_dir / "config.yaml")
    name = str(config.get("name") or run_dir.name)
    preset = config.get("preset")
    if isinstance(preset, str) and preset and preset != name:  # seeds of one preset stay apart
        name = f"{name} ({preset})"
    model = metrics.get("model")
    if not model and isinstance(config.get("model"), dict):
        model = config["model"].get("name")
    roll = metrics.get("roll_prediction_nll")
    if roll is None and isinstance(metrics.get("roll_prediction"), dict):
        roll = metrics["roll_prediction"].get("nll")
    ll = _number(metrics.get("log_likelihood_nats_per_image"), 2)
    n_samples = metrics.get("n_is_samples")
    if ll != MISSING and isinstance(n_samples, int) and not isinstance(n_samples, bool):
        ll = f"{ll} (n={n_samples})"
    return [name, str(model) if model else MISSING, ll,
            _number(metrics.get("equivariance_error"), 1),
            _number(metrics.get("equivariance_error_control"), 1),
            _number(metrics.get("equivariance_ratio"), 3),
            _number(roll, 2),
            _number(metrics.get("log_likelihood_paper_protocol_nats_per_image"), 2)]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def compare_table(run_dirs: Sequence[str | Path]) -> str:
    """Markdown table comparing ``run_dirs`` (one row each, in the given order).

    Raises ``ValueError`` if ``run_dirs`` is empty or names something that is not a directory.
    """
    if isinstance(run_dirs, (str, Path)):
        raise ValueError("run_dirs must be a list of run directories, not one path")
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("run_dirs must name at least one run directory")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ValueError(f"run_dirs: not a directory: {', '.join(missing)}")
    rows = [_row(p) for p in paths]
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- aggregation over seeds ------------------------------------------------------------------------
def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _top(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda metrics: _finite_number(metrics.get(key))


def _sub(block: str, key: str) -> Callable[[Mapping[str, Any]], float | None]:
    """``metrics[block][key]`` (``None`` when the run has no such block)."""
    def get(metrics: Mapping[str, Any]) -> float | None:
        value = metrics.get(block)
        return _finite_number(value.get(key)) if isinstance(value, Mapping) else None
    return get


def _dis(name: str, inner: str | None) -> Callable[[Mapping[str, Any]], float | None]:
    """A disentanglement score: ``metrics["disentanglement"][name]`` (or its ``inner`` field)."""
    def get(metrics: Mapping[str, Any]) -> float | None:
        block = metrics.get("disentanglement")
        if not isinstance(block, Mapping):
            return None
        value = block.get(name)
        if isinstance(value, Mapping) and inner is not None:
            value = value.get(inner)
        return _finite_number(value)
    return get


@dataclass(frozen=True)
class _Metric:
    key: str
    label: str
    digits: int
    extract: Callable[[Mapping[str, Any]], float | None]
    optional: bool = False  # a column only when some run has it
    scale: float = 1.0  # the table shows value * scale (the JSON keeps the raw value)
    table: str = "main"  # "disentanglement": the scores that :func:`aggregate_table` can split off


#: The measurements summarised over seeds: (key in the JSON output, column label, decimals).
AGGREGATED_METRICS: tuple[_Metric, ...] = (
    _Metric("log_likelihood_nats_per_image", "log p(x) (nats/image)", 2,
            _top("log_likelihood_nats_per_image")),
    # the original code's per-frame estimator without - log K (docs/metrics.md): labelled, a
    # second number beside ours for comparison with the paper's Table 1
    _Metric("log_likelihood_paper_protocol_nats_per_image", "log p(x) paper protocol", 2,
            _top("log_likelihood_paper_protocol_nats_per_image"), optional=True),
    _Metric("log_likelihood_untrained_nats_per_image", "log p(x) untrained", 2,
            _top("log_likelihood_untrained_nats_per_image"), optional=True),
    _Metric("log_likelihood_paper_protocol_untrained_nats_per_image",
            "log p(x) paper protocol untrained", 2,
            _top("log_likelihood_paper_protocol_untrained_nats_per_image"), optional=True),
    _Metric("equivariance_error", "E_eq", 1, _top("equivariance_error")),
    _Metric("equivariance_error_control", "E_eq control", 1, _top("equivariance_error_control")),
    _Metric("equivariance_ratio", "ratio", 3, _top("equivariance_ratio")),
    _Metric("equivariance_ratio_untrained", "ratio untrained", 3,
            _top("equivariance_ratio_untrained"), optional=True),
    _Metric("roll_prediction_nll", "roll-prediction NLL", 2, _top("roll_prediction_nll")),
    _Metric("roll_prediction_nll_static", "no-roll NLL", 2, _top("roll_prediction_nll_static")),
    _Metric("capsule_offset_correlation", "capsule offset corr.", 3,
            _top("capsule_offset_correlation"), optional=True),
    _Metric("capsule_offset_correlation_random", "capsule offset corr. random codes", 3,
            _top("capsule_offset_correlation_random"), optional=True),
    _Metric("capsule_offset_correlation_paper_protocol", "capsule offset corr. paper protocol",
            3, _top("capsule_offset_correlation_paper_protocol"), optional=True),
    _Metric("capsule_offset_correlation_paper_protocol_random",
            "capsule offset corr. paper protocol random codes", 3,
            _top("capsule_offset_correlation_paper_protocol_random"), optional=True),
    _Metric("topographic_score", "map neighbour corr.", 3, _sub("topographic_map", "score"),
            optional=True),
    _Metric("topographic_control", "shuffled-map corr.", 3, _sub("topographic_map", "control"),
            optional=True),
    _Metric("topographic_score_untrained", "map corr. untrained", 3,
            _sub("topographic_map", "score_untrained"), optional=True),
    _Metric("mig", "MIG", 3, _dis("mig", "mig"), optional=True,
            table="disentanglement"),
    _Metric("sap", "SAP", 3, _dis("sap", None), optional=True,
            table="disentanglement"),
    _Metric("dci_disentanglement", "DCI dis.", 3, _dis("dci", "disentanglement"), optional=True,
            table="disentanglement"),
    _Metric("dci_completeness", "DCI comp.", 3, _dis("dci", "completeness"), optional=True,
            table="disentanglement"),
    _Metric("dci_informativeness", "DCI inf.", 3, _dis("dci", "informativeness_test"),
            optional=True, table="disentanglement"),
    _Metric("factor_vae", "FactorVAE", 3, _dis("factor_vae", "eval_accuracy"), optional=True,
            table="disentanglement"),
    _Metric("beta_vae", "beta-VAE", 3, _dis("beta_vae", "eval_accuracy"), optional=True,
            table="disentanglement"),
    _Metric("train_seconds", "train time (min)", 1, _top("train_seconds"), scale=1 / 60),
)

TRAIN_SUMMARY = "train_summary.json"


@dataclass
class RunRecord:
    """What one run directory says about itself, read from its files (nothing is recomputed)."""

    path: Path
    name: str
    group: str
    preset: str
    description: str
    model: str | None
    seed: int | None
    values: dict[str, float | None]
    n_is_samples: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    train_summary: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return bool(self.metrics)


def group_key(config: Mapping[str, Any], run_dir: Path) -> str:
    """The experiment a run belongs to: its preset, else its description, else its folder."""
    for key in ("preset", "description"):
        value = config.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return run_dir.name


def read_run_record(run_dir: str | Path) -> RunRecord:
    """Read ``config.yaml``, ``metrics.json`` and ``train_summary.json`` of ``run_dir``."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run_dirs: not a directory: {path}")
    metrics = _read_json(path / "metrics.json")
    config = _read_yaml(path / "config.yaml")
    summary = _read_json(path / TRAIN_SUMMARY)
    model = metrics.get("model")
    if not model and isinstance(config.get("model"), dict):
        model = config["model"].get("name")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    seed = train.get("seed")
    merged = {**metrics, "train_seconds": summary.get("train_seconds")}
    n_samples = metrics.get("n_is_samples")
    return RunRecord(
        path=path, name=path.name, group=group_key(config, path),
        preset=str(config.get("preset") or ""), description=str(config.get("description") or ""),
        model=str(model) if model else None,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        values={m.key: m.extract(merged) for m in AGGREGATED_METRICS},
        n_is_samples=n_samples if isinstance(n_samples, int) and not isinstance(n_samples, bool)
        else None,
        metrics=metrics, config=config, train_summary=summary)


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` of the finite numbers in ``values``.

    ``std`` is the sample standard deviation (``ddof = 1``), ``None`` with fewer than 2 values;
    ``mean`` is ``None`` when there is no value at all.
    """
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {"mean": statistics.fmean(kept) if kept else None,
            "std": statistics.stdev(kept) if len(kept) >= 2 else None,
            "n": len(kept), "values": kept}


def _check_run_dirs(run_dirs: Sequence[str | Path]) -> list[Path]:
    if isinstance(run_dirs, (str, Path)):
        raise ValueError("run_dirs must be a list of run directories, not one path")
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("run_dirs must name at least one run directory")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ValueError(f"run_dirs: not a directory: {', '.join(missing)}")
    return paths


def aggregate_runs(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One summary per experiment (groups in order of first appearance in ``run_dirs``).

    Each holds ``group``, ``preset``, ``description``, ``model``, ``n`` (runs in the group),
    ``n_evaluated``, ``seeds``, ``runs`` (paths), ``n_is_samples`` (the distinct values) and
    ``metrics``: ``{key: summarize(values over the group's runs)}`` for every key of
    :data:`AGGREGATED_METRICS`.
    """
    records = [read_run_record(p) for p in _check_run_dirs(run_dirs)]
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    out = []
    for name, members in groups.items():
        models = sorted({r.model for r in members if r.model})
        out.append({
            "group": name,
            "preset": next((r.preset for r in members if r.preset), ""),
            "description": next((r.description for r in members if r.description), ""),
            "model": "/".join(models) if models else None,
            "n": len(members),
            "n_evaluated": sum(r.evaluated for r in members),
            "seeds": [r.seed for r in members],
            "runs": [str(r.path) for r in members],
            "n_is_samples": sorted({r.n_is_samples for r in members
                                    if r.n_is_samples is not None}),
            "metrics": {m.key: summarize([r.values[m.key] for r in members])
                        for m in AGGREGATED_METRICS},
            "per_transformation": _per_transformation(members),
        })
    return out


#: Measurements of ``metrics["per_transformation"][name]`` summarised over seeds.
PER_TRANSFORMATION_METRICS: tuple[tuple[str, str, int], ...] = (
    ("equivariance_error", "E_eq", 1),
    ("equivariance_ratio", "ratio", 3),
    ("capsule_offset_correlation", "corr.", 3),
    ("capsule_offset_correlation_paper_protocol", "corr. paper protocol", 3),
    ("capsule_offset_correlation_paper_protocol_random", "corr. paper protocol random codes", 3),
)


def _per_transformation(members: Sequence[RunRecord]) -> dict[str, dict[str, Any]]:
    """``{transformation: {key: summarize(values over the runs)}}`` (first-seen order)."""
    names: list[str] = []
    for record in members:
        block = record.metrics.get("per_transformation")
        if isinstance(block, Mapping):
            names += [n for n in block if n not in names]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        entries = [(r.metrics.get("per_transformation") or {}).get(name) for r in members]
        entries = [e if isinstance(e, Mapping) else {} for e in entries]
        out[name] = {key: summarize([_finite_number(e.get(key)) for e in entries])
                     for key, _, _ in PER_TRANSFORMATION_METRICS}
    return out


def per_transformation_table(groups: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of each experiment's measurements per transformation (mean ± std), or ""
    when no run has them. Columns of a measurement no run has (the capsule-offset correlation
    outside dSprites) are left out."""
    names: list[str] = []
    for group in groups:
        names += [n for n in group.get("per_transformation", {}) if n not in names]
    if not names:
        return ""
    columns = [(name, key, label, digits) for name in names
               for key, label, digits in PER_TRANSFORMATION_METRICS
               if any(g.get("per_transformation", {}).get(name, {}).get(key, {}).get("n")
                      for g in groups)]
    header = ["experiment", "n"] + [f"{name} {label}" for name, _, label, _ in columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---:"] + ["---:"] * len(columns)) + "|"]
    for group in groups:
        block = group.get("per_transformation", {})
        cells = [group["group"], str(group["n"])]
        for name, key, _, digits in columns:
            cells.append(_mean_std(block.get(name, {}).get(key, {}), digits, group["n"]))
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def _mean_std(summary: Mapping[str, Any], digits: int, n_group: int, scale: float = 1.0) -> str:
    if summary.get("mean") is None:
        return MISSING
    text = _number(summary["mean"] * scale, digits)
    if summary.get("std") is not None:
        text += f" ± {_number(summary['std'] * scale, digits)}"
    if summary.get("n", 0) < n_group:
        text += f" (n={summary['n']})"
    return text


def _columns(groups: Sequence[Mapping[str, Any]], tables: Sequence[str]) -> list[_Metric]:
    return [m for m in AGGREGATED_METRICS if m.table in tables
            and (not m.optional or any(g["metrics"][m.key]["n"] for g in groups))]


def aggregate_table(groups: Sequence[Mapping[str, Any]],
                    tables: Sequence[str] = ("main", "disentanglement")) -> str:
    """Markdown table of :func:`aggregate_runs` output: one row per experiment, mean ± std.

    Optional columns (capsule-offset correlation, disentanglement scores) appear only when a
    run has them. A cell whose measurement fewer runs have than the group holds says ``(n=k)``.
    ``tables`` picks the kinds of columns (``("disentanglement",)``: only those scores); ``""``
    when no such column has a value.
    """
    columns = _columns(groups, tables)
    if not columns:
        return ""
    header = ["experiment", "model", "n"] + [m.label for m in columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---", "---:"] + ["---:"] * len(columns)) + "|"]
    for group in groups:
        cells = [group["group"], group["model"] or MISSING, str(group["n"])]
        for metric in columns:
            cell = _mean_std(group["metrics"][metric.key], metric.digits, group["n"],
                             metric.scale)
            if metric.key == "log_likelihood_nats_per_image" and cell != MISSING and \
                    group["n_is_samples"]:
                cell += f" (IS {'/'.join(str(k) for k in group['n_is_samples'])})"
            cells.append(cell)
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def compare(run_dirs: Sequence[str | Path], *, by: str = "run", fmt: str = "markdown") -> str:
    """``topovae compare``: one row per run (``by="run"``) or per experiment (``by="preset"``).

    ``fmt="markdown"`` gives a table; ``fmt="json"`` a JSON document: per run (``by="run"``) the
    aggregated values of each run, per experiment the output of :func:`aggregate_runs`.
    """
    if by not in ("run", "preset"):
        raise ValueError(f"by must be 'run' or 'preset', got {by!r}")
    if fmt not in ("markdown", "json"):
        raise ValueError(f"fmt must be 'markdown' or 'json', got {fmt!r}")
    if by == "run":
        if fmt == "markdown":
            return compare_table(run_dirs)
        records = [read_run_record(p) for p in _check_run_dirs(run_dirs)]
        return json.dumps({"by": "run", "runs": [
            {"run": str(r.path), "group": r.group, "preset": r.preset, "model": r.model,
             "seed": r.seed, "n_is_samples": r.n_is_samples, "metrics": r.values}
            for r in records]}, indent=2)
    groups = aggregate_runs(run_dirs)
    if fmt == "markdown":
        return aggregate_table(groups)
    return json.dumps({"by": "preset", "std": "sample standard deviation (ddof=1)",
                       "experiments": groups}, indent=2)
