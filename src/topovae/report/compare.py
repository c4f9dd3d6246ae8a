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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topovae.measure.base import PER_TRANSFORMATION, Column, columns
from topovae.rundir import RunDir
from topovae.training.experiment import ExperimentConfig

__all__ = ["compare_table", "RunRecord", "read_run_record", "group_key", "aggregate_runs",
           "aggregate_table", "compare", "summarize", "aggregated_metrics", "run_columns",
           "per_transformation_metrics", "TRAIN_TIME"]

MISSING = "–"
_LL = "log_likelihood_nats_per_image"

#: The training wall time (from ``train_summary.json``, not a measurement), last column.
TRAIN_TIME = Column("train_seconds", "training wall time", "seconds", 1, None,
                    short="train time (min)", views=frozenset({"compare"}), optional=False,
                    scale=1 / 60)


def aggregated_metrics() -> tuple[Column, ...]:
    """The columns summarised over seeds: the measurements' ``compare`` columns, then the
    training time."""
    return (*columns("compare"), TRAIN_TIME)


def run_columns() -> list[str]:
    """The header of :func:`compare_table`: run, model and the measurements' ``runs`` columns."""
    return ["run", "model"] + [c.header for c in columns("runs")]


def __getattr__(name: str) -> Any:
    # read when asked for, so that measurements registered later are included
    if name == "COLUMNS":
        return run_columns()
    if name == "AGGREGATED_METRICS":
        return aggregated_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _number(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    if not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):,.{digits}f}"


def _lookup(metrics: Mapping[str, Any], key: str) -> Any:
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _row(record: RunRecord) -> list[str]:
    metrics = record.metrics
    name = record.name
    if record.preset and record.preset != name:  # seeds of one preset stay apart
        name = f"{name} ({record.preset})"
    cells = [name, record.model or MISSING]
    for column in columns("runs"):
        cell = _number(_lookup(metrics, column.key), column.table_digits)
        n_samples = metrics.get("n_is_samples")
        if column.key == _LL and cell != MISSING and isinstance(n_samples, int) and \
                not isinstance(n_samples, bool):
            cell = f"{cell} (n={n_samples})"
        cells.append(cell)
    return cells


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def compare_table(run_dirs: Sequence[str | Path]) -> str:
    """Markdown table comparing ``run_dirs`` (one row each, in the given order).

    Raises ``ValueError`` if ``run_dirs`` is empty or names something that is not a directory.
    """
    if isinstance(run_dirs, (str, Path)):
        raise ValueError("run_dirs must be a list of run directories, not one path")
    rows = [_row(read_run_record(p)) for p in _check_run_dirs(run_dirs)]
    header = run_columns()
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- aggregation over seeds ------------------------------------------------------------------------
def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


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
    config: ExperimentConfig | None = None
    train_summary: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluated(self) -> bool:
        return bool(self.metrics)


def group_key(config: Mapping[str, Any] | ExperimentConfig | None, run_dir: Path) -> str:
    """The experiment a run belongs to: its preset, else its description, else its folder."""
    for key in ("preset", "description"):
        if isinstance(config, ExperimentConfig):
            value = getattr(config, key)
        else:
            value = (config or {}).get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return run_dir.name


def read_run_record(run_dir: str | Path) -> RunRecord:
    """Read ``config.yaml``, ``metrics.json`` and ``train_summary.json`` of ``run_dir`` (through
    :class:`~topovae.rundir.RunDir`: a broken or incompatible ``config.yaml`` is an error, a
    folder holding only results is read without one)."""
    run = RunDir(run_dir).check_is_dir()
    config = run.config_if_present()
    metrics = dict(run.results().values)
    summary = run.train_summary()
    model = metrics.get("model") or (config.model.name if config is not None else None)
    merged = {**metrics, "train_seconds": summary.get("train_seconds")}
    n_samples = metrics.get("n_is_samples")
    return RunRecord(
        path=run.path, name=run.name, group=group_key(config, run.path),
        preset=config.preset if config is not None else "",
        description=config.description if config is not None else "",
        model=str(model) if model else None,
        seed=config.train.seed if config is not None else None,
        values={m.json_name: _finite_number(_lookup(merged, m.key)) for m in aggregated_metrics()},
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
            "metrics": {m.json_name: summarize([r.values[m.json_name] for r in members])
                        for m in aggregated_metrics()},
            "per_transformation": _per_transformation(members),
        })
    return out


def per_transformation_metrics() -> list[Column]:
    """The measurements of ``metrics["per_transformation"][name]`` summarised over seeds."""
    return [c for c in columns(PER_TRANSFORMATION) if "compare" in c.views]


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
        out[name] = {c.key: summarize([_finite_number(e.get(c.key)) for e in entries])
                     for c in per_transformation_metrics()}
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
    shown = [(name, c.key, c.header, c.table_digits) for name in names
             for c in per_transformation_metrics()
             if any(g.get("per_transformation", {}).get(name, {}).get(c.key, {}).get("n")
                    for g in groups)]
    header = ["experiment", "n"] + [f"{name} {label}" for name, _, label, _ in shown]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---:"] + ["---:"] * len(shown)) + "|"]
    for group in groups:
        block = group.get("per_transformation", {})
        cells = [group["group"], str(group["n"])]
        for name, key, _, digits in shown:
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


def _columns(groups: Sequence[Mapping[str, Any]], tables: Sequence[str]) -> list[Column]:
    return [m for m in aggregated_metrics() if m.table in tables
            and (not m.optional or any(g["metrics"][m.json_name]["n"] for g in groups))]


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
    header = ["experiment", "model", "n"] + [m.header for m in columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---", "---:"] + ["---:"] * len(columns)) + "|"]
    for group in groups:
        cells = [group["group"], group["model"] or MISSING, str(group["n"])]
        for metric in columns:
            cell = _mean_std(group["metrics"][metric.json_name], metric.table_digits,
                             group["n"], metric.scale)
            if metric.key == _LL and cell != MISSING and \
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
