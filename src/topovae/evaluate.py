"""``topovae evaluate``: kept as an import path; the measurements live in :mod:`topovae.measure`.

:func:`evaluate_run`, :func:`evaluate_model` and :func:`collect_test_sequences` are those of
:mod:`topovae.measure` (the registry of measurements, one file each).
"""

from __future__ import annotations

from topovae.measure import collect_test_sequences, evaluate_model, evaluate_run

__all__ = ["evaluate_run", "evaluate_model", "collect_test_sequences"]
