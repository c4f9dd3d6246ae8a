"""The numbers of a run as readable HTML: grouped tables, controls beside values, words for data.

Everything here renders from :mod:`.metric_defs` (what each key means), so the run report and the
comparison page describe a measurement the same way. Nothing of ``metrics.json`` is dumped raw:
measurements without a definition are left out, the ``data`` block is turned into sentences.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from topovae.measure.schema import notes
from topovae.report.metric_defs import (
    MetricDef,
    finite,
    format_number,
    lookup,
    metrics_by_group,
    per_transformation_metrics,
    report_metrics,
)

__all__ = ["metrics_tables_html", "per_transformation_html", "data_budget_text",
           "control_text", "NUMBERS_STYLE"]

NUMBERS_STYLE = """
table.metrics{margin:.3em 0 1em} table.grouped{width:100%;table-layout:fixed}
table.metrics td.value{font-weight:600;text-align:right;white-space:nowrap}
table.metrics td.meaning{
color:#555;font-size:.9em;max-width:420px} table.metrics td.unit{color:#555;font-size:.88em}
h3{font-size:1em;margin:1em 0 .2em;text-transform:capitalize} td.num{text-align:right;
white-space:nowrap} .better{color:#777;font-size:.85em}
"""

_COLUMNS = ('<colgroup><col style="width:21%"><col style="width:9%"><col style="width:16%">'
            '<col style="width:24%"><col style="width:30%"></colgroup>')
_ARROW = {"lower": "lower is better", "higher": "higher is better"}


def control_text(definition: MetricDef, metrics: Mapping[str, Any]) -> list[str]:
    """``"0.904 (same network untrained)"`` for each control of ``definition`` ``metrics`` has;
    for nats-per-image measurements also how far the value is from the control."""
    value = finite(lookup(metrics, definition.key))
    parts = []
    for control in definition.controls:
        reference = finite(lookup(metrics, control.key))
        if reference is None:
            continue
        text = f"{format_number(reference, definition.digits)} ({control.label})"
        if value is not None and definition.unit == "nats per image":
            gain = reference - value if definition.better == "lower" else value - reference
            text += f": {format_number(abs(gain), 1)} nats {'better' if gain >= 0 else 'worse'}"
        parts.append(text)
    return parts


def metrics_tables_html(metrics: Mapping[str, Any]) -> str:
    """One table per group of measurements that ``metrics`` has (``""`` when none)."""
    parts = []
    for group, definitions in metrics_by_group(metrics).items():
        rows = ["<tr><th>measurement</th><th>value</th><th>unit</th><th>control</th>"
                "<th>what it means</th></tr>"]
        for definition in definitions:
            value = format_number(lookup(metrics, definition.key), definition.digits)
            controls = "<br>".join(html.escape(t) for t in control_text(definition, metrics))
            meaning = html.escape(definition.meaning)
            if definition.key == "log_likelihood_nats_per_image" and \
                    finite(metrics.get("n_is_samples")) is not None:
                meaning = meaning.rstrip(".") + html.escape(
                    f" ({int(metrics['n_is_samples'])} importance samples).")
            better = _ARROW.get(definition.better, "")
            rows.append(
                f'<tr data-key="{html.escape(definition.key)}"><th>'
                f"{html.escape(definition.label)}</th><td class=\"value\">{value}</td>"
                f'<td class="unit">{html.escape(definition.unit)}'
                + (f'<br><span class="better">{better}</span>' if better else "")
                + f'</td><td class="control">{controls or "–"}</td>'
                f'<td class="meaning">{meaning}</td></tr>')
        parts.append(f'<h3>{html.escape(group)}</h3><table class="metrics grouped">{_COLUMNS}'
                     f"{''.join(rows)}</table>")
    return "\n".join(parts)


def per_transformation_html(block: Any) -> str:
    """``metrics["per_transformation"]`` as a table: a row per transformation (``""`` if none)."""
    if not isinstance(block, Mapping) or not block:
        return ""
    entries = {name: e for name, e in block.items() if isinstance(e, Mapping)}
    columns = [d for d in per_transformation_metrics()
               if any(finite(e.get(d.key)) is not None for e in entries.values())]
    if not entries or not columns:
        return ""
    header = "".join(f'<th title="{html.escape(d.meaning)}">{html.escape(d.label)}</th>'
                     for d in columns)
    rows = [f"<tr><th>transformation</th>{header}</tr>"]
    for name, entry in entries.items():
        cells = "".join(f'<td class="num">{format_number(entry.get(d.key), d.digits)}</td>'
                        for d in columns)
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{cells}</tr>")
    legend = "; ".join(f"{d.label}: {d.meaning.rstrip('.')}" for d in columns) + "."
    return (f'<table class="metrics per-transformation">{"".join(rows)}</table>'
            f'<p class="caption">{html.escape(legend)}</p>')


def _count(value: Any, noun: str) -> str:
    number = finite(value)
    if number is None:
        return ""
    n = int(number)
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def data_budget_text(metrics: Mapping[str, Any], config: Mapping[str, Any],
                     train_summary: Mapping[str, Any]) -> list[str]:
    """Sentences saying what the run was trained and evaluated on, and for how long."""
    sentences = []
    data = metrics.get("data") if isinstance(metrics.get("data"), Mapping) else {}
    data_cfg = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    source = data.get("source") or data_cfg.get("source")
    splits = data.get("splits") if isinstance(data.get("splits"), Mapping) else {}
    train_split = splits.get("train") if isinstance(splits.get("train"), Mapping) else {}
    test_split = splits.get("test") if isinstance(splits.get("test"), Mapping) else {}
    if source:
        text = f"Data: {source}"
        if train_split.get("n_images"):
            text += (f", {_count(train_split['n_images'], 'training image')}"
                     f" ({train_split.get('split', 'train')})")
        if test_split.get("n_images"):
            text += (f", {_count(test_split['n_images'], 'test image')}"
                     f" ({test_split.get('split', 'test')})")
        builder = data.get("sequence_builder") or data_cfg.get("sequences")
        if builder:
            text += f"; sequences built by {builder}"
        transforms = data.get("transforms") or data_cfg.get("transforms")
        if isinstance(transforms, list) and transforms:
            text += f" ({', '.join(str(t) for t in transforms)})"
        sentences.append(text + ".")
    steps = finite(train_summary.get("steps"))
    seconds = finite(train_summary.get("train_seconds"))
    if steps is not None or seconds is not None:
        text = "Training budget: "
        text += _count(steps, "optimiser step") if steps is not None else "unknown steps"
        if seconds is not None:
            text += f" in {_duration(seconds)}"
        machine = train_summary.get("machine")
        if isinstance(machine, Mapping):
            where = machine.get("device") if machine.get("device") not in (None, "cpu") else \
                machine.get("processor")
            if where:
                text += f" on {where}"
                if machine.get("cpu_count"):
                    text += f" ({machine['cpu_count']} CPUs)"
        train_cfg = config.get("train") if isinstance(config.get("train"), Mapping) else {}
        if train_cfg.get("optimizer") and train_cfg.get("lr"):
            text += f"; {train_cfg['optimizer']} at learning rate {train_cfg['lr']}"
        sentences.append(text + ".")
    n_seq = finite(data.get("n_test_sequences"))
    if n_seq is not None:
        text = f"Evaluated on {_count(n_seq, 'test sequence')}"
        if finite(data.get("sequence_length")) is not None:
            text += f" of {int(data['sequence_length'])} frames"
        if finite(metrics.get("n_ll_sequences")) is not None:
            text += (f"; the log-likelihood on {_count(metrics['n_ll_sequences'], 'sequence')}"
                     f" with {_count(metrics.get('n_is_samples'), 'importance sample')}")
        if finite(metrics.get("seconds")) is not None:
            text += f"; evaluation took {_duration(float(metrics['seconds']))}"
        sentences.append(text + ".")
    sentences += _provenance(metrics)
    for key in notes():
        if isinstance(lookup(metrics, key), str):
            sentences.append(f"Not measured: {lookup(metrics, key)}.")
    return sentences


def _provenance(metrics: Mapping[str, Any]) -> list[str]:
    """Where the map and the disentanglement scores come from, and when the run was evaluated."""
    sentences = []
    found = metrics.get("topographic_map")
    if isinstance(found, Mapping) and finite(found.get("n_images")) is not None:
        sentences.append(f"The topographic map is scored on "
                         f"{_count(found['n_images'], 'test image')}, each encoded alone.")
    scores = metrics.get("disentanglement")
    if isinstance(scores, Mapping):
        names, sizes = scores.get("factor_names"), scores.get("factor_sizes")
        text = "Disentanglement scores"
        if isinstance(names, list) and isinstance(sizes, list) and len(names) == len(sizes):
            grid = zip(names, sizes, strict=True)
            text += " on the factor grid " + " x ".join(f"{n} {k}" for n, k in grid)
        elif isinstance(names, list):
            text += f" against the factors {', '.join(str(n) for n in names)}"
        if finite(scores.get("disentanglement_samples")) is not None:
            text += f" ({_count(scores['disentanglement_samples'], 'training point')})"
        if finite(scores.get("n_frames")) is not None:
            text += f" ({_count(scores['n_frames'], 'test frame')})"
        estimators = scores.get("estimators")
        if isinstance(estimators, Mapping) and estimators:
            text += "; " + "; ".join(f"{k}: {v}" for k, v in estimators.items())
        sentences.append(text + ".")
    if isinstance(metrics.get("evaluated_at"), str):
        seed = metrics.get("seed")
        sentences.append(f"Evaluated at {metrics['evaluated_at']}"
                         + (f" with seed {seed}" if isinstance(seed, int) else "") + ".")
    return sentences


def defined_keys() -> list[str]:
    """Every ``metrics.json`` key that the report describes (for tests and docs)."""
    return [d.key for d in report_metrics()]
