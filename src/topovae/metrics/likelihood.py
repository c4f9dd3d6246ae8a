"""Importance-sampled log-likelihood, scored jointly over whole sequences.

``log p(x_{1:S}) ≈ logsumexp_k log w_k - log K`` with ``K`` samples from ``q(z|x) q(u|x)`` of the
*whole* sequence and ``log w = log p(x_{1:S}|t) + log p(z) + log p(u) - log q(z|x) - log q(u|x)``.
Two differences from the original evaluation code, both deliberate: ``log K`` is subtracted (the
original overstates by ``log 10 = 2.30`` nats at 10 samples), and frames are not scored one by one
(``t`` of a frame depends on ``u`` of its neighbours, so only the joint score is a likelihood).
The result is reported in nats per image (the sequence's ``log p`` divided by ``S``).

:func:`log_likelihood_paper_protocol` is the original code's estimator, to set beside the
paper's tables: every frame scored on its own, ``logsumexp_k log w_{k,s}`` over the per-frame
terms of the same joint draws and without ``- log K``. For a model whose frames are independent
(the plain VAE) it equals the ordinary per-image importance-sampled estimate plus ``log K``;
for coupled models it is not an estimate of ``log p(x)`` at all (the neighbouring frames' ``u``
that enter ``t_s`` are not integrated against ``x_s``'s likelihood alone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from topovae.models import capabilities
from topovae.models.base import GenerativeModel
from topovae.models.capabilities import FrameWeights

__all__ = ["LogLikelihood", "importance_sampled_log_likelihood", "FrameWeights",
           "log_likelihood_paper_protocol"]


@dataclasses.dataclass
class LogLikelihood:
    """``nats_per_image``: mean over sequences of ``log p(x_{1:S}) / S``; ``per_sequence``: that
    value for each sequence ``(B,)``; ``n_samples``: importance samples per sequence;
    ``n_images``: images scored (``B * S``)."""

    nats_per_image: float
    per_sequence: torch.Tensor
    n_samples: int
    n_images: int


def _in_eval_batches(model: object, x: torch.Tensor, n_samples: int, batch_size: int | None,
                     score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Check the arguments, then ``score`` groups of ``batch_size`` sequences of ``x`` with the
    model in eval mode (its mode is restored afterwards); the scores joined along dim 0."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, S, C, H, W) tensor, got {got}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    is_module = isinstance(model, torch.nn.Module)
    was_training = model.training if is_module else False
    if is_module:
        model.eval()
    try:
        step = batch_size or x.shape[0]
        parts = [score(x[i:i + step]) for i in range(0, x.shape[0], step)]
    finally:
        if is_module:
            model.train(was_training)
    return torch.cat(parts)


@torch.no_grad()
def importance_sampled_log_likelihood(
    model: GenerativeModel,
    x: torch.Tensor,
    n_samples: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> LogLikelihood:
    """Estimate ``log p(x)`` of the sequences ``x`` ``(B, S, C, H, W)`` under ``model``.

    ``model`` must provide ``log_likelihood(x, n_samples, generator)`` returning nats per image
    for each sequence (the :class:`~topovae.models.tvae.TVAE` does). ``batch_size`` splits ``x``
    into groups of sequences to bound memory. The estimate is a lower bound in expectation that
    tightens as ``n_samples`` grows.
    """
    if not isinstance(model, capabilities.LogLikelihood):
        raise ValueError(f"model ({type(model).__name__}) has no log_likelihood method")
    per_sequence = _in_eval_batches(
        model, x, n_samples, batch_size,
        lambda part: model.log_likelihood(part, n_samples=n_samples, generator=generator))
    return LogLikelihood(
        nats_per_image=float(per_sequence.mean()),
        per_sequence=per_sequence,
        n_samples=n_samples,
        n_images=int(x.shape[0] * x.shape[1]),
    )


@torch.no_grad()
def log_likelihood_paper_protocol(
    model: FrameWeights,
    x: torch.Tensor,
    n_samples: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> LogLikelihood:
    """The original TVAE code's log-likelihood of the sequences ``x`` ``(B, S, C, H, W)``.

    For every image ``x_s``: ``logsumexp_k [log p(x_s|t_{k,s}) + log p(z_{k,s}) + log p(u_{k,s})
    - log q(z_{k,s}|x_s) - log q(u_{k,s}|x_s)]`` over ``K = n_samples`` joint draws of the
    sequence's latents (``t_{k,s}`` uses the drawn ``u`` of the neighbouring frames), with no
    ``- log K``; averaged over images. ``per_sequence`` is the mean over each sequence's frames.

    It overstates by ``log K`` (2.30 nats at 10 samples) even for independent frames and, for
    coupled models, is not a bound on ``log p(x)``; :func:`importance_sampled_log_likelihood`
    is the estimate to rely on. This one is reported beside it, labelled, so that numbers can be
    compared with the paper's Table 1.
    """
    if not isinstance(model, FrameWeights):
        raise ValueError(f"model ({type(model).__name__}) has no per-frame "
                         "log_importance_weights")
    per_image = _in_eval_batches(  # (B, S)
        model, x, n_samples, batch_size,
        lambda part: torch.logsumexp(model.log_importance_weights(
            part, n_samples, generator, per_frame=True), 0))  # logsumexp over (K, b, S)
    return LogLikelihood(
        nats_per_image=float(per_image.mean()),
        per_sequence=per_image.mean(1),
        n_samples=n_samples,
        n_images=int(x.shape[0] * x.shape[1]),
    )
