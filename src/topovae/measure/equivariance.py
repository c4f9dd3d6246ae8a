"""Equivariance of the capsule codes: E_eq, its shuffled control and ratio (with the untrained
twin's ratio), the same per transformation, and the capsule-offset correlations (ours and the
original code's, each with its random-code control, the original's also with the untrained
network's sampled codes)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from topovae.measure.base import Column, Control, Measurement, per_transformation_columns, register
from topovae.measure.context import EvaluationContext
from topovae.models.capabilities import CapsuleCodes
from topovae.training.experiment import ExperimentConfig

__all__ = ["Equivariance", "CapsuleOffsets", "PerTransformation", "per_transformation",
           "offsets_paper_protocol", "finite"]

_RATIO, _ERROR, _CONTROL = "equivariance_ratio", "equivariance_error", "equivariance_error_control"
_UNTRAINED = "equivariance_ratio_untrained"
_CORR, _ACC = "capsule_offset_correlation", "capsule_offset_accuracy"
_CORR_RANDOM = "capsule_offset_correlation_random"
_PAPER = "capsule_offset_correlation_paper_protocol"
_PAPER_RANDOM = "capsule_offset_correlation_paper_protocol_random"
_PAPER_UNTRAINED = "capsule_offset_correlation_paper_protocol_untrained"
_SQ = "squared distance between normalised codes"
_CORRELATION = "correlation (-1 to 1)"


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ratio(error: float, control: float) -> float | None:
    return error / control if control > 0 else None


@register
class Equivariance(Measurement):
    name = "equivariance"
    requires = CapsuleCodes
    order = 20
    writes = (_ERROR, _CONTROL, _RATIO, _UNTRAINED, "equivariance_unavailable")
    columns = (
        Column(_ERROR, "equivariance error E_eq", _SQ, 1, True, "equivariance",
               "The paper's E_eq: distance between the code of each frame and the rolled codes "
               "of the other frames of its sequence, averaged over sequences.",
               (Control(_CONTROL, "frames shuffled across sequences"),), short="E_eq",
               views=frozenset({"report", "compare", "runs", "summary"}), optional=False),
        Column(_CONTROL, "equivariance error, shuffled control", _SQ, 1, None, "equivariance",
               "E_eq with the frames shuffled across sequences.", short="E_eq control",
               views=frozenset({"compare", "runs", "summary"}), optional=False),
        Column(_RATIO, "equivariance ratio", "ratio (E_eq / shuffled control)", 3, True,
               "equivariance",
               "How far the capsule code of frame k is from the code of frame 0 rolled by k, "
               "relative to the same distance with frames shuffled across sequences: 1 is "
               "chance, 0 a perfect roll.",
               (Control(_UNTRAINED, "same network untrained"),), short="ratio",
               views=frozenset({"report", "compare", "runs", "summary"}), optional=False,
               ranks={"report": -1}),
        Column(_UNTRAINED, "equivariance ratio, untrained", "ratio", 3, True, "equivariance",
               "The ratio of the same architecture untrained, on the same sequences.",
               short="ratio untrained", views=frozenset({"compare"})),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        return ctx.codes() is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        from topovae.metrics.equivariance import (
            equivariance_error,
            equivariance_error_control,
            equivariance_ratio,
        )

        codes = ctx.codes()
        error = float(equivariance_error(codes))
        control = float(equivariance_error_control(codes, seed=ctx.seed))
        out: dict[str, Any] = {_ERROR: error, _CONTROL: control, _RATIO: _ratio(error, control)}
        # With temporal coupling the topography alone makes t partly roll-like (neighbouring
        # frames pool overlapping, diagonally shifted windows of u), so an untrained network
        # already scores below 1: the level training must be compared with.
        fresh = ctx.untrained()
        from topovae.measure.context import capsule_codes

        untrained = capsule_codes(fresh, ctx.x, ctx.batch_size)
        out[_UNTRAINED] = (None if untrained is None else
                           finite(float(equivariance_ratio(untrained, seed=ctx.seed))))
        return out

    def unavailable(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        return {**dict.fromkeys((_ERROR, _CONTROL, _RATIO, _UNTRAINED)),
                "equivariance_unavailable": "the model has no capsule codes"}


@register
class CapsuleOffsets(Measurement):
    """How far a factor changed against how far the capsules rolled: ours on the deterministic
    codes (frames one step apart), with a random-code control, and, where the sequences step
    through a known factor grid (dSprites), the original code's correlation on sampled codes."""

    name = "capsule_offsets"
    requires = CapsuleCodes
    order = 40
    writes = (_CORR, _ACC, _CORR_RANDOM, _PAPER, _PAPER_RANDOM, _PAPER_UNTRAINED)
    columns = (
        Column(_CORR, "capsule offset correlation", _CORRELATION, 3, False, "equivariance",
               "Correlation between how far a factor changed and how far the capsules rolled "
               "(our protocol; dSprites).", (Control(_CORR_RANDOM, "random codes"),),
               short="capsule offset corr.",
               views=frozenset({"report", "compare", "summary"})),
        Column(_CORR_RANDOM, "capsule offset correlation, random codes", _CORRELATION, 3, None,
               "equivariance", "The same for Gaussian codes of the same shape (chance level).",
               short="capsule offset corr. random codes", views=frozenset({"compare"})),
        Column(_PAPER, "capsule offset correlation (paper's protocol)", _CORRELATION, 3, False,
               "equivariance", "The same correlation measured as the paper does.",
               (Control(_CORR, "our protocol"), Control(_PAPER_RANDOM, "random codes"),
                Control(_PAPER_UNTRAINED, "untrained network")),
               short="capsule offset corr. paper protocol"),
        Column(_PAPER_RANDOM, "capsule offset correlation (paper's protocol), random codes",
               _CORRELATION, 3, None, "equivariance",
               "The paper's correlation for Gaussian codes (its chance level).",
               short="capsule offset corr. paper protocol random codes",
               views=frozenset({"compare"})),
        Column(_PAPER_UNTRAINED, "capsule offset correlation (paper's protocol), untrained",
               _CORRELATION, 3, None, "equivariance",
               "The paper's correlation for codes sampled from the same architecture untrained: "
               "with shifting temporal windows the sampling alone rolls the codes with the "
               "frame index, so this is the level learning must be compared with.",
               short="capsule offset corr. paper protocol untrained",
               views=frozenset({"compare"})),
        Column(_ACC, "capsule offset accuracy", "fraction (0 to 1)", 3, False, "equivariance",
               "How often the roll that best aligns two codes equals the change of the factor.",
               views=frozenset({"report"})),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        # own sequences and dSprites: frames one step apart, as E_eq assumes
        return ctx.codes() is not None and ctx.traits.one_step_per_frame

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        from topovae.metrics.equivariance import capsule_offset_correlation

        codes = ctx.codes()
        corr = capsule_offset_correlation(codes)
        out: dict[str, Any] = {_CORR: finite(float(corr["correlation"])),
                               _ACC: float(corr["accuracy"])}
        if ctx.traits.factor_grid is None:
            return out
        generator = torch.Generator().manual_seed(ctx.seed)
        random_codes = torch.randn(codes.shape, generator=generator, dtype=torch.float64)
        out[_CORR_RANDOM] = finite(float(capsule_offset_correlation(random_codes)["correlation"]))
        paper = ctx.cached("offsets_paper_protocol", lambda: offsets_paper_protocol(
            ctx.sampled_codes(), ctx.factors, ctx.seed, ctx.traits.factor_grid,
            ctx.traits.stepped_factors, untrained=ctx.untrained_sampled_codes()))
        for key in (_PAPER, _PAPER_RANDOM, _PAPER_UNTRAINED):
            values = [entry[key] for entry in paper.values() if entry.get(key) is not None]
            out[key] = float(np.mean(values)) if values else None
        return out


def offsets_paper_protocol(sampled: torch.Tensor, factors: dict[str, torch.Tensor], seed: int,
                           grid: Mapping[str, np.ndarray] | None = None,
                           stepped: tuple[str, ...] | None = None,
                           untrained: torch.Tensor | None = None) -> dict[str, Any]:
    """The original code's capsule correlation per stepped factor (default: dSprites'), on codes
    sampled from ``q``, on Gaussian codes of the same shape and factors (its chance level) and,
    given ``untrained`` (codes sampled from the untrained twin), on those: with shifting
    temporal windows the sampled ``u`` of neighbouring frames enter each frame's code rolled by
    their frame offset, so sampled codes roll with the frame index before any learning, and
    this estimator, which uses sampled codes, scores that too (docs/metrics.md)."""
    from topovae.data.sequences import sequence_traits
    from topovae.metrics.equivariance import capsule_offset_correlation_paper_protocol

    traits = sequence_traits("dsprites")
    grid = traits.factor_grid if grid is None else grid
    stepped = traits.stepped_factors if stepped is None else stepped
    varied = factors.get("varied")
    if varied is None or grid is None or stepped is None:
        return {}
    generator = torch.Generator().manual_seed(seed)
    random_codes = torch.randn(sampled.shape, generator=generator, dtype=torch.float64)
    out: dict[str, Any] = {}
    for k, name in enumerate(stepped):
        rows = (varied[:, 0] == k).cpu()
        if int(rows.sum()) < 2 or name not in factors:
            continue
        index = torch.from_numpy(np.searchsorted(grid[name], factors[name][rows].cpu().numpy()))
        trained = capsule_offset_correlation_paper_protocol(sampled[rows.to(sampled.device)],
                                                            index)
        chance = capsule_offset_correlation_paper_protocol(random_codes[rows], index)
        out[name] = {_PAPER: finite(trained["correlation"]),
                     _PAPER_RANDOM: finite(chance["correlation"]),
                     "paper_protocol_n_sequences": trained["n_sequences"]}
        if untrained is not None:
            before = capsule_offset_correlation_paper_protocol(
                untrained[rows.to(untrained.device)], index)
            out[name][_PAPER_UNTRAINED] = finite(before["correlation"])
    return out


def per_transformation(codes: torch.Tensor, factors: dict[str, torch.Tensor],
                       experiment: ExperimentConfig, seed: int) -> dict[str, Any]:
    """E_eq, its control and ratio (and, where frames are one step apart, the capsule-offset
    correlation) over the test sequences of each transformation, for builders that vary one
    declared factor per sequence (Table 2 of the paper reports dSprites this way)."""
    from topovae.data.sequences import sequence_traits
    from topovae.metrics.equivariance import (
        capsule_offset_correlation,
        equivariance_error,
        equivariance_error_control,
    )

    traits = sequence_traits(experiment.data.test_sequences or experiment.data.sequences)
    names = traits.stepped_factors
    varied = factors.get("varied")
    if names is None or varied is None:
        return {}
    varied = varied[:, 0].to(codes.device)
    out: dict[str, Any] = {}
    for index, name in enumerate(names):
        rows = codes[varied == index]
        if len(rows) < 2:  # the control shuffles frames across sequences: needs two
            continue
        error = float(equivariance_error(rows))
        control = float(equivariance_error_control(rows, seed=seed))
        entry: dict[str, Any] = {"n_sequences": len(rows), _ERROR: error, _CONTROL: control,
                                 _RATIO: _ratio(error, control)}
        if traits.one_step_per_frame:
            corr = capsule_offset_correlation(rows)
            entry[_CORR] = finite(float(corr["correlation"]))
            entry[_ACC] = float(corr["accuracy"])
        out[name] = entry
    return out


per_transformation_columns(
    Column("n_sequences", "test sequences", "count", 0, None, "equivariance",
           "Test sequences of this transformation.", views=frozenset({"report"})),
    Column(_ERROR, "E_eq", "squared distance", 1, True, "equivariance",
           "Equivariance error of these sequences."),
    Column(_CONTROL, "E_eq shuffled", "squared distance", 1, None, "equivariance",
           "The same with frames shuffled across these sequences.", views=frozenset({"report"})),
    Column(_RATIO, "ratio", "E_eq / shuffled", 3, True, "equivariance",
           "1 is chance, 0 a perfect roll."),
    Column(_CORR, "capsule offset corr.", "correlation", 3, False, "equivariance",
           "Factor change against capsule roll (dSprites).", short="corr."),
    Column(_ACC, "capsule offset acc.", "fraction", 3, False, "equivariance",
           "How often the best-aligning roll equals the factor's change.",
           views=frozenset({"report"})),
    Column(_PAPER, "corr. paper protocol", "correlation", 3, False, "equivariance",
           "The original code's correlation on sampled codes."),
    Column(_PAPER_RANDOM, "corr. paper protocol random codes", "correlation", 3, None,
           "equivariance", "The same for Gaussian codes."),
    Column(_PAPER_UNTRAINED, "corr. paper protocol untrained", "correlation", 3, None,
           "equivariance", "The same for codes sampled from the untrained network."),
    Column("paper_protocol_n_sequences", "sequences (paper protocol)", "count", 0, None,
           "equivariance", "Test sequences the original code's correlation used.",
           views=frozenset({"report"})),
)


@register
class PerTransformation(Measurement):
    """The equivariance of each transformation's test sequences (or, for your own sequences,
    of each factor's; :mod:`topovae.evaluate_own`)."""

    name = "per_transformation"
    requires = CapsuleCodes
    order = 50
    writes = ("per_transformation", "per_transformation_unavailable")

    def applicable(self, ctx: EvaluationContext) -> bool:
        return ctx.codes() is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        codes, out = ctx.codes(), {}
        if ctx.traits.own_factors:
            from topovae.evaluate_own import NO_FACTORS, per_factor

            per = per_factor(codes, ctx.factors, ctx.seed)
            if not ctx.factors:
                out["per_transformation_unavailable"] = NO_FACTORS
        else:
            per = per_transformation(codes, ctx.factors, ctx.experiment, ctx.seed)
        # the original code's correlation per transformation, computed by CapsuleOffsets
        for name, entry in (ctx.cached_value("offsets_paper_protocol") or {}).items():
            per.setdefault(name, {}).update(entry)
        if per:
            out["per_transformation"] = per
        return out
