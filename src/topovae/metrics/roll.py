"""Capsule-roll prediction: the commutative diagram of Figure 1, measured.

An equivariant capsule code turns a transformation of the input into a roll of every capsule.
So encoding frame 0 of a sequence, rolling each capsule by ``k`` units and decoding should give
frame ``k``. :func:`roll_prediction` measures how far that prediction lands from the true frame,
which tests the decoder too (the equivariance error looks at codes only).

The model needs two methods (the TVAE has them):

- ``latent_codes(x)``: ``(B, S, C, H, W)`` sequences -> ``t`` shaped ``(B, S, n_caps, cap_dim)``
  computed from the posterior (deterministic; for the TVAE ``E[z]`` and ``E[u∘u]``);
- ``decode(t)``: codes ``(..., n_caps, cap_dim)`` -> Bernoulli logits ``(..., C, H, W)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import torch
from torch.nn import functional as F

from topovae.models.capabilities import CapsuleCodes

__all__ = ["RollPrediction", "CapsuleModel", "roll_prediction"]


#: What :func:`roll_prediction` needs from a model (:mod:`topovae.models.capabilities`).
CapsuleModel = CapsuleCodes


@dataclasses.dataclass
class RollPrediction:
    """Result of :func:`roll_prediction`.

    Attributes:
        shifts: the roll amounts ``k`` that were measured.
        nll_per_shift: ``(len(shifts),)`` Bernoulli negative log-likelihood of true frame ``k``
            under the decoded rolled code, summed over pixels, averaged over sequences (nats per
            image).
        mse_per_shift: ``(len(shifts),)`` mean squared error per pixel between the decoded
            probabilities and true frame ``k``.
        nll: mean of ``nll_per_shift`` over the shifts.
        mse: mean of ``mse_per_shift`` over the shifts.
        nll_static_per_shift: the same NLL for the *unrolled* code of frame 0 (predicting that
            nothing changes): the control a roll prediction must beat.
        nll_static: mean of ``nll_static_per_shift``.
        nll_reversed_per_shift: the same NLL with every capsule rolled the *other* way
            (``-k``): a code that rolls with the transformation predicts frame ``k`` from ``+k``
            and not from ``-k``; a code that carries no direction (or a decoder whose rolled
            decodes are merely blurrier than frame 0's) scores both alike. A gain over
            ``nll_static`` that ``nll_reversed`` shares is not equivariance.
        nll_reversed: mean of ``nll_reversed_per_shift``.
        context: how frame 0's code was computed (see :func:`roll_prediction`).
        predictions: ``(n_keep, len(shifts), C, H, W)`` decoded probabilities of the first
            sequences, for figures.
        targets: ``(n_keep, len(shifts), C, H, W)`` the matching true frames.
    """

    shifts: list[int]
    nll_per_shift: torch.Tensor
    mse_per_shift: torch.Tensor
    nll: float
    mse: float
    predictions: torch.Tensor
    targets: torch.Tensor
    nll_static_per_shift: torch.Tensor
    nll_static: float
    context: str
    nll_reversed_per_shift: torch.Tensor
    nll_reversed: float

    def to_dict(self) -> dict[str, float | list[float] | list[int]]:
        """The scalar results as plain Python values (for ``metrics.json``)."""
        return {"shifts": list(self.shifts), "nll": self.nll, "mse": self.mse,
                "nll_static": self.nll_static, "nll_reversed": self.nll_reversed,
                "context": self.context,
                "nll_per_shift": self.nll_per_shift.tolist(),
                "mse_per_shift": self.mse_per_shift.tolist(),
                "nll_static_per_shift": self.nll_static_per_shift.tolist(),
                "nll_reversed_per_shift": self.nll_reversed_per_shift.tolist()}


def roll_prediction(
    model: CapsuleModel,
    x: torch.Tensor,
    *,
    shifts: Sequence[int] | None = None,
    n_keep: int = 8,
    context: Literal["first_frame", "sequence"] = "first_frame",
) -> RollPrediction:
    """Predict frame ``k`` of every sequence by rolling frame 0's capsules ``k`` units.

    Args:
        model: a model with ``latent_codes`` and ``decode`` (see the module docstring).
        x: ``(B, S, C, H, W)`` sequences in [0, 1] whose frame ``k`` is frame 0 transformed
            ``k`` steps.
        shifts: the roll amounts to measure, each in ``[0, S)``; default ``1 .. S-1``
            (``0`` measures plain reconstruction of frame 0).
        n_keep: how many sequences' predictions are returned for figures.
        context: ``"first_frame"`` (default) computes frame 0's code from frame 0 alone, given to
            the model as a sequence of S copies of it, so the prediction uses no information
            about the later frames; ``"sequence"`` takes frame 0's code from the whole sequence,
            as in training, where temporal coupling pools ``u`` of the frames inside the time
            window, so the code already carries some information about frames ``1 .. L//2``.

    The roll is ``torch.roll(t0, k, dims=-1)``, the direction of ``docs/architecture.md``.
    The model is evaluated under ``torch.no_grad`` in eval mode; its mode is restored afterwards.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, S, C, H, W) tensor, got {shape}")
    batch, n_frames = x.shape[:2]
    if shifts is None:
        shifts = list(range(1, n_frames))
    shifts = [int(k) for k in shifts]
    if not shifts:
        raise ValueError(f"shifts must not be empty (S={n_frames} leaves no frame to predict)")
    bad = [k for k in shifts if not 0 <= k < n_frames]
    if bad:
        raise ValueError(f"shifts must lie in [0, S={n_frames}), got {bad}")
    if n_keep < 0:
        raise ValueError(f"n_keep must be >= 0, got {n_keep}")
    if context not in ("first_frame", "sequence"):
        raise ValueError(f"context must be 'first_frame' or 'sequence', got {context!r}")

    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            source = x[:, :1].expand_as(x) if context == "first_frame" else x
            codes = model.latent_codes(source)
            if codes.dim() != 4 or codes.shape[:2] != x.shape[:2]:
                raise ValueError(
                    "model.latent_codes must return (B, S, n_caps, cap_dim) codes, "
                    f"got {tuple(codes.shape)}"
                )
            first = codes[:, 0]  # (B, n_caps, cap_dim)
            rolled = torch.stack([torch.roll(first, shifts=k, dims=-1) for k in shifts], dim=1)
            logits = model.decode(rolled)  # (B, K, C, H, W)
            targets = x[:, shifts]
            if logits.shape != targets.shape:
                raise ValueError(
                    f"model.decode returned logits shaped {tuple(logits.shape)}, "
                    f"expected {tuple(targets.shape)}"
                )
            nll = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            nll_per_shift = nll.flatten(2).sum(-1).mean(0)
            probabilities = torch.sigmoid(logits)
            mse_per_shift = (probabilities - targets).square().flatten(2).mean(-1).mean(0)
            static_logits = model.decode(first)  # (B, C, H, W): "nothing changes"
            static = F.binary_cross_entropy_with_logits(
                static_logits.unsqueeze(1).expand_as(targets), targets, reduction="none"
            )
            nll_static_per_shift = static.flatten(2).sum(-1).mean(0)
            reversed_logits = model.decode(
                torch.stack([torch.roll(first, shifts=-k, dims=-1) for k in shifts], dim=1))
            nll_reversed_per_shift = F.binary_cross_entropy_with_logits(
                reversed_logits, targets, reduction="none").flatten(2).sum(-1).mean(0)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    keep = min(n_keep, batch)
    return RollPrediction(
        shifts=shifts,
        nll_per_shift=nll_per_shift.detach().cpu(),
        mse_per_shift=mse_per_shift.detach().cpu(),
        nll=nll_per_shift.mean().item(),
        mse=mse_per_shift.mean().item(),
        predictions=probabilities[:keep].detach().cpu(),
        targets=targets[:keep].detach().cpu(),
        nll_static_per_shift=nll_static_per_shift.detach().cpu(),
        nll_static=nll_static_per_shift.mean().item(),
        context=context,
        nll_reversed_per_shift=nll_reversed_per_shift.detach().cpu(),
        nll_reversed=nll_reversed_per_shift.mean().item(),
    )
