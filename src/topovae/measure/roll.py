"""Roll prediction (Figure 1's commutative diagram, measured) and, for models with a latent
operator of their own (the shift-operator autoencoder), the prediction with that operator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from topovae.measure.base import Column, Control, Measurement, register
from topovae.measure.context import EvaluationContext
from topovae.models.capabilities import CapsuleCodes, LatentOperator

__all__ = ["RollPrediction", "OperatorPrediction", "roll_prediction_means",
           "operator_prediction_means"]

_NATS = "nats per image"
_STATIC = "roll_prediction_nll_static"
_REVERSED = "roll_prediction_nll_reversed"
_KEYS = ("roll_prediction_nll", "roll_prediction_mse", _STATIC,
         "roll_prediction_nll_sequence_context", _REVERSED)


def roll_prediction_means(model: torch.nn.Module, x: torch.Tensor, batch_size: int
                          ) -> dict[str, float]:
    """Roll prediction of frames ``1 .. S-1`` from frame 0 (alone, and with the sequence as
    context), averaged over the sequences of ``x`` in batches."""
    from topovae.metrics.roll import roll_prediction

    sums = {"nll": 0.0, "mse": 0.0, "nll_static": 0.0, "nll_sequence_context": 0.0,
            "nll_reversed": 0.0}
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        strict = roll_prediction(model, chunk, n_keep=0, context="first_frame")
        informed = roll_prediction(model, chunk, n_keep=0, context="sequence")
        sums["nll"] += strict.nll * len(chunk)
        sums["mse"] += strict.mse * len(chunk)
        sums["nll_static"] += strict.nll_static * len(chunk)
        sums["nll_reversed"] += strict.nll_reversed * len(chunk)
        sums["nll_sequence_context"] += informed.nll * len(chunk)
    return {f"roll_prediction_{key}": value / len(x) for key, value in sums.items()}


@register
class RollPrediction(Measurement):
    name = "roll_prediction"
    requires = CapsuleCodes
    order = 30
    writes = _KEYS
    columns = (
        Column("roll_prediction_nll", "roll prediction NLL", _NATS, 1, True, "prediction",
               "Frame 0 encoded alone, every capsule rolled by k, decoded: negative "
               "log-likelihood of the true frame k, mean over k = 1..S-1.",
               (Control(_STATIC, "predicting no change"),
                Control(_REVERSED, "rolling the other way")), short="roll-prediction NLL",
               short_digits=2, views=frozenset({"report", "compare", "runs"}), optional=False),
        Column(_STATIC, "no-roll prediction NLL", _NATS, 1, True, "prediction",
               "The same for the unrolled code of frame 0 (predicting that nothing changes).",
               short="no-roll NLL", short_digits=2, views=frozenset({"compare"}),
               optional=False),
        Column(_REVERSED, "reversed-roll prediction NLL", _NATS, 1, True, "prediction",
               "The same with every capsule rolled the other way (-k): a code that rolls with "
               "the transformation predicts frame k from +k only; a gain over no change that "
               "this control shares (blurrier decodes of rolled codes) is not equivariance.",
               short="reversed-roll NLL", short_digits=2, views=frozenset({"compare", "report"})),
        Column("roll_prediction_nll_sequence_context", "roll prediction NLL, code from the "
               "sequence", _NATS, 1, True, "prediction",
               "The same with frame 0's code computed from its whole sequence, as in training "
               "(the temporal coupling lets it see frames inside the time window).",
               (Control(_STATIC, "predicting no change"),), views=frozenset({"report"})),
        Column("roll_prediction_mse", "roll prediction MSE", "mean squared error per pixel", 4,
               True, "prediction",
               "Squared error between the decoded rolled code of frame 0 and the true frame k.",
               views=frozenset({"report", "summary"})),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        return ctx.codes() is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        return roll_prediction_means(ctx.model, ctx.x, ctx.batch_size)

    def unavailable(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        return dict.fromkeys(_KEYS)


def operator_prediction_means(model: LatentOperator, x: torch.Tensor, codes: torch.Tensor,
                              batch_size: int) -> dict[str, Any]:
    """Frame ``k`` predicted from frame 0 with the model's own operator, the reconstruction NLL
    (means over ``x`` in batches), and which roll one frame step has become in ``codes``."""
    from topovae.models.shift_operator import operator_prediction, step_roll

    sums: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        for key, value in operator_prediction(model, chunk).items():
            sums[key] = sums.get(key, 0.0) + value * len(chunk)
    return {**{key: value / len(x) for key, value in sums.items()}, **step_roll(codes)}


@register
class OperatorPrediction(Measurement):
    name = "operator_prediction"
    requires = LatentOperator
    order = 60
    writes = ("operator_prediction_nll", "operator_prediction_mse", "reconstruction_nll",
              "step_roll", "step_roll_fraction")
    columns = (
        Column("operator_prediction_nll", "operator prediction NLL", _NATS, 1, True,
               "prediction", "Frame k predicted from frame 0 with the model's own latent "
               "operator, decoded: negative log-likelihood of the true frame k.",
               (Control("roll_prediction_nll", "capsule roll"),
                Control(_STATIC, "predicting no change")), views=frozenset({"report"})),
        Column("operator_prediction_mse", "operator prediction MSE",
               "mean squared error per pixel", 4, True, "prediction",
               "Squared error of the operator's prediction of frame k.",
               views=frozenset({"report"})),
        Column("reconstruction_nll", "reconstruction NLL", _NATS, 1, True, "prediction",
               "Every frame decoded from its own code.", views=frozenset({"report"})),
        Column("step_roll", "roll of one frame step", "capsule units", 0, None, "equivariance",
               "The roll that one frame step has become in the codes.",
               views=frozenset({"report"})),
        Column("step_roll_fraction", "frames with that roll", "fraction (0 to 1)", 3, False,
               "equivariance", "How often consecutive codes are best aligned by that roll.",
               views=frozenset({"report"})),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        return ctx.codes() is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        return operator_prediction_means(ctx.model, ctx.x, ctx.codes(), ctx.batch_size)
