"""What ``metrics.json`` holds: one versioned schema, built from the measurements' declarations.

Every key is declared by the measurement that writes it (:attr:`Measurement.writes` and its
columns, :mod:`topovae.measure.base`) or by the evaluation itself (:data:`EVALUATION_KEYS`);
the tables read the same declarations (the columns and their controls). Keys are dotted paths;
``per_transformation.*.KEY`` stands for the entry ``KEY`` of every transformation. A *block*
(``data``, ``disentanglement.mig``, ...) is a JSON object whose inside is documented where it
is made (the data bundle's provenance, a metric's result dict); its children need no
declaration of their own. ``format_version`` (:data:`SCHEMA_VERSION`) changes whenever a key
changes meaning; :class:`~topovae.rundir.RunDir` refuses a ``metrics.json`` of another version.

``tests/test_metrics_schema.py`` checks the schema against what is written and read: a key
written but read by no table or page, or read but never written, fails it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from topovae.format import FORMAT_VERSION
from topovae.measure.base import PER_TRANSFORMATION, columns, measurements

__all__ = ["SCHEMA_VERSION", "Key", "EVALUATION_KEYS", "BLOCKS", "schema", "covered",
           "table_reads", "notes", "flatten"]

SCHEMA_VERSION = FORMAT_VERSION

#: Written by the evaluation itself, around the measurements.
EVALUATION_KEYS: tuple[str, ...] = ("format_version", "model", "data", "seed", "seconds",
                                    "evaluated_at")

#: Objects whose inside is documented where they are made (see the module docstring).
BLOCKS: tuple[str, ...] = ("data", "disentanglement.mig", "disentanglement.dci",
                           "disentanglement.factor_vae", "disentanglement.beta_vae",
                           "disentanglement.estimators")


@dataclasses.dataclass(frozen=True)
class Key:
    """One declared key of ``metrics.json`` and who writes it."""

    key: str
    writer: str  # a measurement's name, or "evaluate"
    block: bool = False


def schema() -> dict[str, Key]:
    """Every declared key of ``metrics.json`` (dotted), in evaluation order."""
    out: dict[str, Key] = {}
    for key in EVALUATION_KEYS:
        out[key] = Key(key, "evaluate", key in BLOCKS)
    for measurement in measurements():
        for key in measurement.written_keys():
            out.setdefault(key, Key(key, measurement.name, key in BLOCKS))
    for key in BLOCKS:
        out.setdefault(key, Key(key, "disentanglement", True))
    for column in columns(PER_TRANSFORMATION):
        key = f"per_transformation.*.{column.key}"
        out.setdefault(key, Key(key, "per_transformation"))
    return out


def covered(key: str, declared: Mapping[str, Key] | None = None) -> bool:
    """``key`` (dotted, ``*`` for a transformation) is declared, or lies inside a block."""
    declared = schema() if declared is None else declared
    if key in declared:
        return True
    parts = key.split(".")
    return any(".".join(parts[:i]) in declared and declared[".".join(parts[:i])].block
               for i in range(1, len(parts)))


def table_reads() -> set[str]:
    """The keys the tables read: every declared column and every control it shows."""
    keys: set[str] = set()
    for column in columns():
        keys.add(column.key)
        keys.update(control.key for control in column.controls)
    for column in columns(PER_TRANSFORMATION):
        keys.add(f"per_transformation.*.{column.key}")
    return keys


def notes() -> list[str]:
    """The declared ``*_unavailable`` keys: one line each saying why a measurement is missing."""
    return [key for key in schema() if key.endswith("_unavailable")]


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted keys of a ``metrics.json`` object, stopping at blocks and naming the
    transformations of ``per_transformation`` ``*``."""
    for name, value in metrics.items():
        key = f"{prefix}{name}"
        if key == "per_transformation" and isinstance(value, Mapping):
            yield key
            for entry in value.values():
                yield from (f"per_transformation.*.{k}" for k in entry)
        elif isinstance(value, Mapping) and key not in BLOCKS and value:
            yield key
            yield from flatten(value, key + ".")
        else:
            yield key
