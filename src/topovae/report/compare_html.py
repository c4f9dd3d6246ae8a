"""``topovae compare --html OUT``: one self-contained page comparing runs, shaped like Table 1.

Runs are grouped by experiment as in :func:`topovae.report.compare.aggregate_runs` (the preset,
else the description, else the folder). The page holds one table with a row per experiment and,
for every measurement of :func:`topovae.report.metric_defs.report_metrics` some run has, its
mean ± sample standard deviation over the experiment's seeds, with the controls beside it;
then the same per transformation; then the capsule-roll traversals of the runs
(``RUN/report/roll_traversal.png``, written by ``topovae report``) side by side,
embedded, so the page can be moved or mailed alone.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from topovae.report.compare import RunRecord, _check_run_dirs, read_run_record, summarize
from topovae.report.metric_defs import (
    GROUPS,
    MetricDef,
    finite,
    format_number,
    lookup,
    per_transformation_metrics,
    report_metrics,
)
from topovae.rundir import RunDir

__all__ = ["build_compare_html", "compare_html"]

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:96vw;padding:0 1em;color:#222;line-height:1.45} h1{font-size:1.6em}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ccc;padding:.25em .4em;
vertical-align:top}
th{background:#f4f4f4;text-align:left} td.num{text-align:right;white-space:nowrap}
th.group{text-align:center;text-transform:capitalize;background:#e9eef5}
.control{color:#666;font-size:.85em;white-space:normal;display:inline-block;max-width:11em}
.wide{overflow-x:auto;max-width:100%}
th small{font-weight:normal;color:#555} .legend{font-size:.88em;color:#444;max-width:1000px}
.legend dt{font-weight:600} .legend dd{margin:0 0 .4em 1.2em}
.traversals{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1em}
.traversals figure{margin:0;border:1px solid #ddd;padding:.5em;border-radius:4px}
.traversals img{width:100%;height:auto;image-rendering:pixelated}
figcaption{font-size:.88em;color:#444} p.note{color:#777;font-style:italic}
"""


def _groups(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    return groups


def _cell(values: list[float | None], digits: int, n_runs: int) -> str:
    summary = summarize(values)
    if summary["mean"] is None:
        return "–"
    text = format_number(summary["mean"], digits)
    if summary["std"] is not None:
        text += f" ± {format_number(summary['std'], digits)}"
    if summary["n"] < n_runs:
        text += f" (n={summary['n']})"
    return text


def _columns(records: Sequence[RunRecord]) -> list[MetricDef]:
    """The measurements some run has a number for (in the order of :data:`METRICS`)."""
    return [d for d in report_metrics()
            if any(finite(lookup(r.metrics, d.key)) is not None for r in records)]


def _value_cell(definition: MetricDef, members: Sequence[RunRecord]) -> str:
    """Mean ± std of the measurement, and under it those of each control some run has."""
    n = len(members)
    text = _cell([finite(lookup(r.metrics, definition.key)) for r in members],
                 definition.digits, n)
    for control in definition.controls:
        values = [finite(lookup(r.metrics, control.key)) for r in members]
        if any(v is not None for v in values):
            text += (f'<br><span class="control">{html.escape(control.label)}: '
                     f"{_cell(values, definition.digits, n)}</span>")
    return f'<td class="num">{text}</td>'


def _main_table(groups: dict[str, list[RunRecord]], records: Sequence[RunRecord]) -> str:
    columns = _columns(records)
    if not columns:
        return '<p class="note">no run has been evaluated (run topovae evaluate)</p>'
    spans: list[tuple[str, int]] = []
    for definition in columns:
        if spans and spans[-1][0] == definition.group:
            spans[-1] = (definition.group, spans[-1][1] + 1)
        else:
            spans.append((definition.group, 1))
    top = "".join(f'<th class="group" colspan="{n}">{html.escape(g)}</th>' for g, n in spans)
    head = "".join(f'<th title="{html.escape(d.meaning)}">{html.escape(d.label)}'
                   f"<br><small>{html.escape(d.unit)}</small></th>" for d in columns)
    rows = [f'<tr><th rowspan="2">experiment</th><th rowspan="2">model</th>'
            f'<th rowspan="2">runs (seeds)</th><th rowspan="2">train time<br><small>min</small>'
            f"</th>{top}</tr>",
            f"<tr>{head}</tr>"]
    for name, members in groups.items():
        models = sorted({r.model for r in members if r.model})
        seeds = ", ".join(str(r.seed) for r in members if r.seed is not None)
        minutes = [finite(r.train_summary.get("train_seconds")) for r in members]
        minutes = [m / 60 if m is not None else None for m in minutes]
        cells = "".join(_value_cell(d, members) for d in columns)
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{html.escape('/'.join(models))}</td>"
                    f'<td class="num">{len(members)} ({html.escape(seeds or "–")})</td>'
                    f'<td class="num">{_cell(minutes, 1, len(members))}</td>{cells}</tr>')
    return f'<div class="wide"><table>{"".join(rows)}</table></div>'


def _legend(records: Sequence[RunRecord]) -> str:
    shown = {d.key for d in _columns(records)}
    items = []
    for group in GROUPS:
        for d in report_metrics():
            if d.group == group and d.key in shown:
                better = {"lower": " Lower is better.", "higher": " Higher is better."}.get(
                    d.better, "")
                items.append(f"<dt>{html.escape(d.label)} ({html.escape(d.unit)})</dt>"
                             f"<dd>{html.escape(d.meaning + better)}</dd>")
    return f'<dl class="legend">{"".join(items)}</dl>' if items else ""


def _per_transformation(groups: dict[str, list[RunRecord]], records: Sequence[RunRecord]
                        ) -> str:
    every = [b for r in records for b in (r.metrics.get("per_transformation") or {}).values()
             if isinstance(b, dict)]
    columns = [d for d in per_transformation_metrics() if d.key != "n_sequences"
               and any(finite(b.get(d.key)) is not None for b in every)]
    rows = []
    for name, members in groups.items():
        blocks = [r.metrics.get("per_transformation") for r in members]
        blocks = [b if isinstance(b, dict) else {} for b in blocks]
        transformations: list[str] = []
        for block in blocks:
            transformations += [t for t in block if t not in transformations]
        for transformation in transformations:
            entries = [b.get(transformation) or {} for b in blocks]
            cells = "".join(
                f'<td class="num">{_cell([finite(e.get(d.key)) for e in entries], d.digits, len(members))}</td>'  # noqa: E501
                for d in columns)
            rows.append(f"<tr><th>{html.escape(name)}</th><td>{html.escape(transformation)}"
                        f"</td>{cells}</tr>")
    if not rows:
        return ""
    head = "".join(f'<th title="{html.escape(d.meaning)}">{html.escape(d.label)}</th>'
                   for d in columns)
    return (f"<h2>Per transformation</h2><table><tr><th>experiment</th><th>transformation</th>"
            f"{head}</tr>{''.join(rows)}</table>")


def _traversals(records: Sequence[RunRecord], out_dir: Path) -> str:
    from topovae.report.html import embed_png

    figures = []
    for record in records:
        run = RunDir(record.path)
        png = run.roll_traversal
        name = f"{record.group}, seed {record.seed}" if record.seed is not None else record.name
        index = run.report_index
        link = (f' (<a href="{html.escape(Path(os.path.relpath(index, out_dir)).as_posix())}">'
                "report</a>)" if index.is_file() else "")
        if png.is_file():
            image = embed_png(png, f"capsule-roll traversal of {name}").replace(
                "<img ", '<img class="traversal" ', 1)
            figures.append(f"<figure>{image}<figcaption>{html.escape(name)}: "
                           f"{html.escape(str(record.path))}{link}</figcaption></figure>")
        else:
            figures.append(f'<figure><p class="note">{html.escape(name)}: no traversal '
                           f"(run topovae report {html.escape(str(record.path))})</p></figure>")
    return ('<h2>Capsule-roll traversals</h2><p class="caption">Per run, each group of rows: '
            "true frames of a test sequence; frame 0 encoded alone, capsules rolled by k, "
            "decoded; the same with frame 0's code from its sequence.</p>"
            f'<div class="traversals">{"".join(figures)}</div>')


def compare_html(run_dirs: Sequence[str | Path], out_dir: str | Path = ".") -> str:
    """The comparison page of ``run_dirs`` as one HTML document (links relative to
    ``out_dir``)."""
    records = [read_run_record(p) for p in _check_run_dirs(run_dirs)]
    groups = _groups(records)
    intro = (f"{len(records)} run{'s' if len(records) != 1 else ''} in {len(groups)} "
             f"experiment{'s' if len(groups) != 1 else ''}. Each cell: mean ± sample standard "
             "deviation (ddof = 1) over the experiment's seeds; (n=k) when only k of its runs "
             "have the measurement. Controls are shown under the value they qualify.")
    body = [f"<h1>topovae comparison</h1><p>{html.escape(intro)}</p>",
            "<h2>Measurements</h2>", _main_table(groups, records), _legend(records),
            _per_transformation(groups, records), _traversals(records, Path(out_dir))]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>topovae comparison</title><style>{_STYLE}</style></head><body>"
            + "\n".join(b for b in body if b) + "</body></html>")


def build_compare_html(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write :func:`compare_html` of ``run_dirs`` to ``out`` (atomically); return its path."""
    from topovae.io import atomic_write_text

    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--html {out} is a directory; give the path of the page to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, compare_html(run_dirs, out.parent.resolve()))
    return out
