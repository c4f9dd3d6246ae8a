"""Log-likelihood: importance-sampled ``log p(x)`` scored jointly over each sequence, and the
original code's per-frame estimator (``_paper_protocol``), with both for the untrained twin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from topovae.measure.base import Column, Control, Measurement, register
from topovae.measure.context import EvaluationContext
from topovae.models.capabilities import FrameWeights, LogLikelihood

__all__ = ["Likelihood", "PaperProtocolLikelihood", "joint_log_likelihood"]

_NATS = "nats per image"
_LL = "log_likelihood_nats_per_image"
_PAPER = "log_likelihood_paper_protocol_nats_per_image"
_UNTRAINED = "log_likelihood_untrained_nats_per_image"
_PAPER_UNTRAINED = "log_likelihood_paper_protocol_untrained_nats_per_image"


def joint_log_likelihood(model: torch.nn.Module, x: torch.Tensor, n_samples: int,
                         batch_size: int) -> dict[str, Any]:
    """Mean importance-sampled ``log p(x)`` per image of ``x``, in batches of sequences."""
    from topovae.metrics.likelihood import importance_sampled_log_likelihood

    total, images = 0.0, 0
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        result = importance_sampled_log_likelihood(model, chunk, n_samples)
        n_images = chunk.shape[0] * chunk.shape[1]
        total += float(result.nats_per_image) * n_images
        images += n_images
    return {_LL: total / images, "n_is_samples": n_samples, "n_ll_sequences": len(x)}


@register
class Likelihood(Measurement):
    name = "likelihood"
    requires = LogLikelihood
    order = 10
    writes = (_LL, "n_is_samples", "n_ll_sequences", "log_likelihood_unavailable")
    columns = (
        Column(_LL, "log-likelihood log p(x)", _NATS, 2, False, "likelihood",
               "Importance-sampled log p(x) on test sequences, each sequence scored jointly.",
               (Control(_PAPER, "paper's protocol"),), short="log p(x) (nats/image)",
               views=frozenset({"report", "compare", "runs", "summary"}), optional=False),
    )

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        n = ctx.settings.n_is_samples
        try:
            return joint_log_likelihood(ctx.model, ctx.x_ll, n, ctx.batch_size)
        except NotImplementedError as err:  # a configuration without a likelihood
            return {_LL: None, "n_is_samples": n, "log_likelihood_unavailable": str(err)}

    def unavailable(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        # the disentanglement baselines define no importance-sampled likelihood
        return {_LL: None, "n_is_samples": ctx.settings.n_is_samples,
                "log_likelihood_unavailable": f"{type(ctx.model).__name__} has no "
                                              "log_likelihood method"}


@register
class PaperProtocolLikelihood(Measurement):
    """The original code's per-frame log-likelihood, and both estimators for the untrained twin
    (the level training starts from)."""

    name = "likelihood_paper_protocol"
    requires = LogLikelihood
    order = 11
    columns = (
        Column(_PAPER, "log-likelihood (paper's protocol)", _NATS, 2, False, "likelihood",
               "Importance-sampled log p(x) estimated as the paper does.",
               (Control(_LL, "joint over the sequence (ours)"),
                Control(_PAPER_UNTRAINED, "same network untrained")),
               short="log p(x) paper protocol", ranks={"runs": 1},
               views=frozenset({"report", "compare", "runs"})),
        Column(_UNTRAINED, "log-likelihood, untrained", _NATS, 2, False, "likelihood",
               "The joint log-likelihood of the same network untrained.",
               short="log p(x) untrained", views=frozenset({"compare"})),
        Column(_PAPER_UNTRAINED, "log-likelihood (paper's protocol), untrained", _NATS, 2, False,
               "likelihood", "The paper's estimator for the same network untrained.",
               short="log p(x) paper protocol untrained", views=frozenset({"compare"})),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        return ctx.results.get(_LL) is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        from topovae.metrics.likelihood import (
            importance_sampled_log_likelihood,
            log_likelihood_paper_protocol,
        )

        keys = (_PAPER, _UNTRAINED, _PAPER_UNTRAINED)
        model, x, n, b = ctx.model, ctx.x_ll, ctx.settings.n_is_samples, ctx.batch_size
        if not isinstance(model, FrameWeights):
            return dict.fromkeys(keys)
        fresh = ctx.untrained()
        paper = log_likelihood_paper_protocol(model, x, n, batch_size=b)
        untrained = importance_sampled_log_likelihood(fresh, x, n, batch_size=b)
        paper_untrained = log_likelihood_paper_protocol(fresh, x, n, batch_size=b)
        return dict(zip(keys, (paper.nats_per_image, untrained.nats_per_image,
                               paper_untrained.nats_per_image), strict=True))
