"""What a measurement is: a name, the capability it needs, a function, and its table columns.

A :class:`Measurement` is one small unit of ``topovae evaluate``: it names the model capability
it needs (a Protocol of :mod:`topovae.models.capabilities`, checked with ``isinstance``), says
whether it applies to a run (:meth:`Measurement.applies`), computes its values from the shared
:class:`~topovae.measure.context.EvaluationContext` (:meth:`Measurement.run`), and declares the
``metrics.json`` keys it writes and how they are shown (:class:`Column`: label, unit, digits,
which direction is better, group and meaning, controls). The report, ``topovae compare``, the
results page and the CLI summary build their tables from these columns (:func:`columns`), so a
new measurement is one registered class and appears everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from topovae.measure.context import EvaluationContext

__all__ = ["Control", "Column", "Measurement", "REGISTRY", "register", "unregister",
           "measurements", "columns", "column", "GROUPS", "VIEWS", "PER_TRANSFORMATION"]

#: Group names in the order the pages show them.
GROUPS: tuple[str, ...] = ("equivariance", "prediction", "likelihood", "topographic map",
                           "disentanglement")

#: Where a column can appear: the run report's grouped tables, ``topovae compare`` (per
#: experiment, mean ± std; also its JSON), its one-row-per-run Markdown table, the CLI line
#: ``topovae evaluate`` prints.
VIEWS: tuple[str, ...] = ("report", "compare", "runs", "summary")

#: Pseudo-measurement name of the columns of ``metrics["per_transformation"][name]``.
PER_TRANSFORMATION = "per_transformation"


@dataclasses.dataclass(frozen=True)
class Control:
    """A number a measurement must be compared with: its ``metrics.json`` key and a label."""

    key: str
    label: str


@dataclasses.dataclass(frozen=True)
class Column:
    """One number of ``metrics.json`` and how every table shows it.

    ``key`` is the dotted path in ``metrics.json`` (``"topographic_map.score"``); ``label``,
    ``unit``, ``meaning``, ``group`` and ``digits`` are what the run report shows;
    ``lower_is_better`` is ``True``, ``False`` or ``None`` (a diagnostic). ``short`` and
    ``short_digits`` are the header and decimals of the compact tables (``compare``, the results
    page; default ``label`` / ``digits``); ``name`` is the column's key in ``compare``'s JSON
    (default ``key``); ``views`` lists where it appears (:data:`VIEWS`); ``optional`` columns
    appear in ``compare`` only when some run has them; ``table`` splits the disentanglement
    scores off the main comparison table; ``scale`` multiplies the shown value.
    """

    key: str
    label: str
    unit: str = ""
    digits: int = 3
    lower_is_better: bool | None = None
    group: str = ""
    meaning: str = ""
    controls: tuple[Control, ...] = ()
    short: str = ""
    short_digits: int | None = None
    name: str = ""
    views: frozenset[str] = frozenset({"report", "compare"})
    optional: bool = True
    table: str = "main"
    scale: float = 1.0
    #: position within a view (lower first; default 0, then declaration order)
    ranks: Mapping[str, int] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.views) - set(VIEWS)
        if unknown:
            raise ValueError(f"column {self.key}: unknown views {sorted(unknown)}")
        if "report" in self.views and self.group not in GROUPS:
            raise ValueError(f"column {self.key}: group {self.group!r} is not one of {GROUPS}")

    @property
    def better(self) -> str:
        """``"lower"``, ``"higher"`` or ``""``."""
        return {True: "lower", False: "higher", None: ""}[self.lower_is_better]

    @property
    def header(self) -> str:
        return self.short or self.label

    @property
    def table_digits(self) -> int:
        return self.digits if self.short_digits is None else self.short_digits

    @property
    def json_name(self) -> str:
        return self.name or self.key


class Measurement:
    """One measurement of ``topovae evaluate``.

    Subclasses set ``name``, ``requires`` (a runtime-checkable Protocol, or ``None``),
    ``columns`` (what tables show) and ``writes`` (every ``metrics.json`` key it writes, dotted,
    columns included: the schema of :mod:`topovae.measure.schema`), and implement :meth:`run`.
    :meth:`applicable` adds conditions on the data or the configuration; :meth:`unavailable`
    gives the values written when the measurement does not apply (``None`` placeholders with a
    one-line reason), ``{}`` to write nothing.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[type | None] = None
    columns: ClassVar[tuple[Column, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: the order of evaluation (and of the keys of metrics.json); ties keep registration order
    order: ClassVar[int] = 100

    def applies(self, ctx: EvaluationContext) -> bool:
        """The model has the capability and :meth:`applicable` holds."""
        if self.requires is not None and not isinstance(ctx.model, self.requires):
            return False
        return self.applicable(ctx)

    def applicable(self, ctx: EvaluationContext) -> bool:
        return True

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def unavailable(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        return {}

    def written_keys(self) -> tuple[str, ...]:
        """Every key this measurement may write (its ``writes`` and its columns)."""
        keys = list(self.writes)
        keys += [c.key for c in self.columns if c.key not in keys]
        return tuple(keys)


#: Every registered measurement by name, in registration order.
REGISTRY: dict[str, Measurement] = {}
_PER_TRANSFORMATION_COLUMNS: list[Column] = []


def register(measurement: type[Measurement] | Measurement) -> Any:
    """Register a measurement (class decorator, or an instance); returns its argument.

    A name already registered is a ``ValueError`` (remove it first with :func:`unregister`).
    """
    instance = measurement() if isinstance(measurement, type) else measurement
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} has no name")
    if instance.name in REGISTRY:
        raise ValueError(f"a measurement named {instance.name!r} is already registered")
    REGISTRY[instance.name] = instance
    return measurement


def unregister(name: str) -> None:
    """Remove the measurement ``name`` (tests that register their own)."""
    REGISTRY.pop(name, None)


def measurements() -> list[Measurement]:
    """The registered measurements in evaluation order."""
    _load_builtin()
    order = {name: i for i, name in enumerate(REGISTRY)}
    return sorted(REGISTRY.values(), key=lambda m: (m.order, order[m.name]))


def _iter_columns() -> Iterator[Column]:
    for measurement in measurements():
        yield from measurement.columns


def columns(view: str | None = None, *, table: str | None = None) -> list[Column]:
    """The declared columns (of one ``view`` of :data:`VIEWS`, one ``table``), in order.

    ``view="per_transformation"`` gives the columns of ``metrics["per_transformation"][name]``.
    """
    if view == PER_TRANSFORMATION:
        _load_builtin()
        return list(_PER_TRANSFORMATION_COLUMNS)
    if view is not None and view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS} or {PER_TRANSFORMATION!r}, got {view!r}")
    out = [c for c in _iter_columns() if view is None or view in c.views]
    if view is not None:
        out.sort(key=lambda c: c.ranks.get(view, 0))  # stable: declaration order within a rank
    if view == "report":  # the report groups its rows: keep the groups in page order
        out.sort(key=lambda c: GROUPS.index(c.group))
    return [c for c in out if table is None or c.table == table]


def column(key: str) -> Column:
    """The declared column of ``metrics.json`` key ``key`` (``KeyError`` if none)."""
    for candidate in _iter_columns():
        if candidate.key == key:
            return candidate
    raise KeyError(key)


def per_transformation_columns(*declared: Column) -> None:
    """Declare columns of the per-transformation entries (called by the measurements)."""
    _PER_TRANSFORMATION_COLUMNS.extend(declared)


def _load_builtin() -> None:
    import topovae.measure.builtin  # noqa: F401  (registers the measurements of topovae)
