"""What each number of ``metrics.json`` means: one table used by every page that shows metrics.

:data:`METRICS` lists, for each measurement ``topovae evaluate`` writes, where it is in
``metrics.json`` (a dotted path into nested blocks), the group it belongs to, a short label, its
unit, one line saying what it measures, which direction is better and the controls it has to be
read against (other entries of ``metrics.json``). The run report (:mod:`.html`) and
``topovae compare --html`` (:mod:`.compare_html`) both render from it, so a number is described
the same way everywhere. :data:`PER_TRANSFORMATION` does the same for the entries of
``metrics["per_transformation"][name]``.

Entries whose key a run does not have are simply not shown (the paper-protocol estimators, the
capsule-offset correlation outside dSprites, the disentanglement scores unless requested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Control", "MetricDef", "METRICS", "GROUPS", "PER_TRANSFORMATION", "lookup",
           "finite", "format_number", "metrics_by_group"]


@dataclass(frozen=True)
class Control:
    """A number a measurement must be compared with: its ``metrics.json`` path and a label."""

    key: str
    label: str


@dataclass(frozen=True)
class MetricDef:
    """One measurement of ``metrics.json`` and how to present it."""

    key: str  # dotted path in metrics.json: "topographic_map.score", "disentanglement.sap"
    group: str  # one of GROUPS
    label: str
    unit: str
    meaning: str
    better: str = ""  # "lower", "higher" or "" (neither: a diagnostic)
    controls: tuple[Control, ...] = ()
    digits: int = 3


#: Group names in the order the pages show them.
GROUPS: tuple[str, ...] = ("equivariance", "prediction", "likelihood", "topographic map",
                           "disentanglement")

_NATS = "nats per image"

METRICS: tuple[MetricDef, ...] = (
    # -- equivariance -------------------------------------------------------------------------
    MetricDef("equivariance_ratio", "equivariance", "equivariance ratio",
              "ratio (E_eq / shuffled control)",
              "How far the capsule code of frame k is from the code of frame 0 rolled by k, "
              "relative to the same distance with frames shuffled across sequences: 1 is "
              "chance, 0 a perfect roll.", "lower",
              (Control("equivariance_ratio_untrained", "same network untrained"),)),
    MetricDef("equivariance_error", "equivariance", "equivariance error E_eq",
              "squared distance between normalised codes",
              "The paper's E_eq: distance between the code of each frame and the rolled codes "
              "of the other frames of its sequence, averaged over sequences.", "lower",
              (Control("equivariance_error_control", "frames shuffled across sequences"),), 1),
    MetricDef("capsule_offset_correlation", "equivariance", "capsule offset correlation",
              "correlation (-1 to 1)",
              "Correlation between how far a factor changed and how far the capsules rolled "
              "(our protocol; dSprites).", "higher",
              (Control("capsule_offset_correlation_control", "control"),)),
    MetricDef("capsule_offset_correlation_paper_protocol", "equivariance",
              "capsule offset correlation (paper's protocol)", "correlation (-1 to 1)",
              "The same correlation measured as the paper does.", "higher",
              (Control("capsule_offset_correlation", "our protocol"),
               Control("capsule_offset_correlation_paper_protocol_control", "control"))),
    MetricDef("capsule_offset_accuracy", "equivariance", "capsule offset accuracy",
              "fraction (0 to 1)",
              "How often the roll that best aligns two codes equals the change of the factor.",
              "higher"),
    # -- prediction ---------------------------------------------------------------------------
    MetricDef("roll_prediction_nll", "prediction", "roll prediction NLL", _NATS,
              "Frame 0 encoded alone, every capsule rolled by k, decoded: negative "
              "log-likelihood of the true frame k, mean over k = 1..S-1.", "lower",
              (Control("roll_prediction_nll_static", "predicting no change"),), 1),
    MetricDef("roll_prediction_nll_sequence_context", "prediction",
              "roll prediction NLL, code from the sequence", _NATS,
              "The same with frame 0's code computed from its whole sequence, as in training "
              "(the temporal coupling lets it see frames inside the time window).", "lower",
              (Control("roll_prediction_nll_static", "predicting no change"),), 1),
    MetricDef("roll_prediction_mse", "prediction", "roll prediction MSE",
              "mean squared error per pixel",
              "Squared error between the decoded rolled code of frame 0 and the true frame k.",
              "lower", (), 4),
    # -- likelihood ---------------------------------------------------------------------------
    MetricDef("log_likelihood_nats_per_image", "likelihood", "log-likelihood log p(x)", _NATS,
              "Importance-sampled log p(x) on test sequences, each sequence scored jointly.",
              "higher",
              (Control("log_likelihood_paper_protocol", "paper's protocol"),), 2),
    MetricDef("log_likelihood_paper_protocol", "likelihood",
              "log-likelihood (paper's protocol)", _NATS,
              "Importance-sampled log p(x) estimated as the paper does.", "higher",
              (Control("log_likelihood_nats_per_image", "joint over the sequence (ours)"),
               Control("log_likelihood_paper_protocol_control", "control")), 2),
    # -- topographic map ----------------------------------------------------------------------
    MetricDef("topographic_map.score", "topographic map", "map neighbour correlation",
              "correlation (-1 to 1)",
              "Mean correlation of the class profiles of neighbouring units on the torus: "
              "how smooth the map of preferred classes is.", "higher",
              (Control("topographic_map.control", "units shuffled on the map"),
               Control("topographic_map.score_untrained", "same network untrained"))),
    # -- disentanglement ----------------------------------------------------------------------
    MetricDef("disentanglement.mig.mig", "disentanglement", "MIG", "bits / entropy (0 to 1)",
              "Mutual Information Gap: for each factor, the gap in normalised mutual "
              "information between its two most informative code units.", "higher"),
    MetricDef("disentanglement.sap", "disentanglement", "SAP", "score (0 to 1)",
              "Separated Attribute Predictability: gap in predictability of each factor "
              "between its two best single code units.", "higher"),
    MetricDef("disentanglement.dci.disentanglement", "disentanglement", "DCI disentanglement",
              "score (0 to 1)", "How much each code unit predicts a single factor "
              "(random-forest importances).", "higher"),
    MetricDef("disentanglement.dci.completeness", "disentanglement", "DCI completeness",
              "score (0 to 1)", "How much each factor is captured by a single code unit.",
              "higher"),
    MetricDef("disentanglement.dci.informativeness_test", "disentanglement",
              "DCI informativeness", "test accuracy (0 to 1)",
              "How well the whole code predicts the factors on held-out points.", "higher"),
    MetricDef("disentanglement.factor_vae.eval_accuracy", "disentanglement", "FactorVAE score",
              "accuracy (0 to 1)", "Majority-vote accuracy of guessing which factor was held "
              "fixed from the least-varying normalised unit.", "higher"),
    MetricDef("disentanglement.beta_vae.eval_accuracy", "disentanglement", "beta-VAE score",
              "accuracy (0 to 1)", "Linear-classifier accuracy of guessing which factor was "
              "held fixed from code differences.", "higher"),
)

#: The entries of ``metrics["per_transformation"][name]``, as columns of one table.
PER_TRANSFORMATION: tuple[MetricDef, ...] = (
    MetricDef("n_sequences", "equivariance", "test sequences", "count",
              "Test sequences of this transformation.", "", (), 0),
    MetricDef("equivariance_error", "equivariance", "E_eq", "squared distance",
              "Equivariance error of these sequences.", "lower", (), 1),
    MetricDef("equivariance_error_control", "equivariance", "E_eq shuffled",
              "squared distance", "The same with frames shuffled across these sequences.",
              "", (), 1),
    MetricDef("equivariance_ratio", "equivariance", "ratio", "E_eq / shuffled",
              "1 is chance, 0 a perfect roll.", "lower"),
    MetricDef("capsule_offset_correlation", "equivariance", "capsule offset corr.",
              "correlation", "Factor change against capsule roll (dSprites).", "higher"),
)


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
    for definition in METRICS:
        if finite(lookup(metrics, definition.key)) is not None:
            out.setdefault(definition.group, []).append(definition)
    return {group: out[group] for group in GROUPS if group in out}
