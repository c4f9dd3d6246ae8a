"""What each number of ``metrics.json`` means, as the run report and the comparison page show it.

The definitions are the columns the measurements declare (:class:`topovae.measure.base.Column`:
the dotted ``metrics.json`` key, group, label, unit, one line of meaning, which direction is
better, the controls it has to be read against): :func:`report_metrics` (also readable as
``METRICS``) lists those of the report view, :func:`per_transformation_metrics`
(``PER_TRANSFORMATION``) the entries of ``metrics["per_transformation"][name]``. The run report
(:mod:`.html`) and ``topovae compare --html`` (:mod:`.compare_html`) both render from them, so a
number is described the same way everywhere, and a new measurement appears on both pages.

Entries whose key a run does not have are simply not shown (the paper-protocol estimators, the
capsule-offset correlation outside dSprites, the disentanglement scores unless requested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from topovae.measure.base import GROUPS, Column, Control, columns
from topovae.measure.base import PER_TRANSFORMATION as PER_TRANSFORMATION_VIEW

#: One measurement of ``metrics.json`` and how to present it (the measurements' :class:`Column`).
MetricDef = Column

__all__ = ["Control", "MetricDef", "METRICS", "GROUPS", "PER_TRANSFORMATION", "lookup",  # noqa: F822
           "finite", "format_number", "metrics_by_group", "report_metrics",
           "per_transformation_metrics"]


def report_metrics() -> tuple[MetricDef, ...]:
    """The measurements the run report and the comparison page show (declared by the
    measurements of :mod:`topovae.measure`, grouped in the order of :data:`GROUPS`)."""
    return tuple(columns("report"))


def per_transformation_metrics() -> tuple[MetricDef, ...]:
    """The entries of ``metrics["per_transformation"][name]`` the report shows."""
    return tuple(c for c in columns(PER_TRANSFORMATION_VIEW) if "report" in c.views)


def __getattr__(name: str) -> Any:
    # METRICS and PER_TRANSFORMATION are read when asked for: a measurement registered later
    # (a plug-in, a test) is described like the built-in ones
    if name == "METRICS":
        return report_metrics()
    if name == "PER_TRANSFORMATION":
        return per_transformation_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lookup(metrics: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of nested ``metrics`` (``None`` when any part is absent)."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def format_number(value: Any, digits: int) -> str:
    """``1,234.5``-style text of a finite number; ``"–"`` for anything else."""
    number = finite(value)
    return "–" if number is None else f"{number:,.{digits}f}"


def metrics_by_group(metrics: Mapping[str, Any]) -> dict[str, list[MetricDef]]:
    """The entries of :data:`METRICS` that ``metrics`` has a number for, by group (in order)."""
    out: dict[str, list[MetricDef]] = {}
    for definition in report_metrics():
        if finite(lookup(metrics, definition.key)) is not None:
            out.setdefault(definition.group, []).append(definition)
    return {group: out[group] for group in GROUPS if group in out}
