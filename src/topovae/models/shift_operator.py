"""The shift-operator autoencoder of Bouchacourt, Ibrahim & Deny (2021), the supervised reference.

*"Addressing the Topological Defects of Disentanglement via Distributed Operators"* (arXiv
2102.05623) argues that a cyclic transformation (rotation, translation) cannot be mapped to a
subspace of its own without discontinuities in the encoder, and that a *distributed* operator on
the whole latent avoids them: a cyclic shift of the latent vector. That shift is the capsule roll
the TVAE learns without labels, so this model, trained with the transformation known (or inferred
from the two codes), shows on the same sequences and the same measurements what supervision
achieves.

**Model.** A deterministic autoencoder: encoder ``x -> t`` of ``d = n_caps * cap_dim`` units
(the TVAE's MLP for 28x28 images or the literature's conv net for 64x64, with a last layer of
``d`` outputs instead of ``2d``) and the TVAE's decoder ``t -> logits``. The latent is shaped
``(n_caps, cap_dim)`` and the operator for ``k`` steps of the transformation is

* ``operator="shift"`` (the paper's distributed operator): every capsule rolled by ``k`` units,
  ``torch.roll(t, k, dims=-1)``, the direction every measurement of topovae uses
  (``t[:, s + k] == roll(t[:, s], k)``); ``n_caps`` copies of the paper's ``Z_K`` shift with
  ``K = cap_dim`` (the paper reshapes its latent to ``(K, -1)`` and shifts the first axis: the
  same operator, units ordered differently);
* ``operator="rotation"`` (the paper's *disentangled* baseline): the first two latent units
  rotated by ``2 pi k / cap_dim``, the others unchanged; this represents the same cyclic group on
  a 2-D subspace of its own, the mapping whose topological defects the paper describes.

**Training pairs.** Every frame ``s`` of a sequence is paired with a partner ``s'`` drawn uniformly
among the other frames; the known step is ``k = s' - s`` (signed: the roll is circular in the
capsule, so no cyclic data is assumed). The paper trains on pairs ``(x1, x2 = g_k x1)``; frames of
one of our sequences are exactly such pairs.

**Loss and likelihood.** The paper's loss is ``L(x1, dec(enc(x1))) + L(x2, dec(op_k(enc(x1))))``
with equal weights and ``L`` the mean squared error (a Gaussian likelihood of fixed variance).
Here ``L`` is, per image and summed over pixels,

* ``likelihood="bernoulli"`` (the default): the Bernoulli negative log-likelihood of the
  decoder's logits, the likelihood of the TVAE's decoder and of every measurement (roll-prediction
  and reconstruction NLL), so that the comparison with the TVAE changes the supervision and not
  the likelihood;
* ``likelihood="gaussian"``: the paper's choice, the squared error of ``sigmoid(logits)``.

The reported terms are ``recon_nll`` (frames from their own codes) and ``transformed_nll``
(partners from the transformed codes), both per image; ``loss`` is their sum.

That loss asks only the *decoder* to turn ``op_k(enc(x))`` into ``g_k x``; nothing asks the
encoder for ``enc(g_k x) = op_k(enc(x))``, and with non-linear networks the decoder can map
the rolled codes and the codes of the transformed images, two different regions of the latent,
to the same images. ``code_weight > 0`` (not in the paper; 0 by default) adds that missing
half: ``code_weight`` times :func:`code_distance` between ``op_k(enc(x_s))`` and
``enc(x_s')``, the squared distance of their unit-normalised capsules (scale-blind, like E_eq),
logged as ``code_distance``, to the loss.

**Weakly supervised** (``supervision="weak"``, shift operator only): ``k`` is not given. As in
the paper it is inferred from the two codes by the normalised cross power spectrum: with ``Z =
FFT(t)`` along each capsule, ``R = Z' conj(Z) / |Z' conj(Z)|`` is ``exp(-2 pi i f k / D)`` when
``t' = roll(t, k)``, so the inverse FFT of ``R``, averaged over capsules, scores every shift and
peaks at ``k`` (:func:`shift_scores`). The loss weighs the reconstruction of the partner from
every shift ``j = 0 .. cap_dim - 1`` by ``softmax(scores / temperature)`` (the paper's
soft version, temperature 0.1 by default as in its code), so the gradient also reaches the
inference of ``k``. That costs ``cap_dim`` decodes per pair, so only ``weak_pairs`` random pairs
per sequence are used (the paper's weak model decodes every shift of every pair too).
Differences from the paper's weak model, deliberately: real codes and a real FFT along each
capsule instead of a complex-valued encoder and decoder (the roll of a real capsule is the shift
whose Fourier form the paper parametrises directly), and the Bernoulli likelihood above.

The model has no prior and no likelihood ``log p(x)``: ``topovae evaluate`` records the
importance-sampled likelihood as unavailable and reports instead the reconstruction NLL and the
prediction of frame ``k`` from frame 0 with the model's own operator
(:func:`operator_prediction`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from topovae.config import Config
from topovae.models.base import GenerativeModel, ModelOutput, check_sequences, register_model
from topovae.models.networks import build_decoder, build_encoder

__all__ = ["ShiftOperatorConfig", "ShiftOperatorAutoencoder", "LatentOperatorModel",
           "roll_codes", "rotate_codes", "shift_scores", "infer_shift", "operator_prediction",
           "step_roll", "code_distance"]


@dataclasses.dataclass
class ShiftOperatorConfig(Config):
    """Hyper-parameters of :class:`ShiftOperatorAutoencoder` (see the module docstring)."""

    input_shape: tuple[int, int, int] = (3, 28, 28)
    architecture: Literal["mlp", "conv"] = "mlp"
    n_caps: int = 18
    cap_dim: int = 18
    operator: Literal["shift", "rotation"] = "shift"
    supervision: Literal["supervised", "weak"] = "supervised"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    temperature: float = 0.1
    weak_pairs: int = 2
    code_weight: float = 0.0

    @property
    def latent_dim(self) -> int:
        return self.n_caps * self.cap_dim

    def validate(self) -> None:
        if len(self.input_shape) != 3 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes, "
                             f"got {self.input_shape}")
        if self.architecture == "conv" and (self.input_shape[1] % 16 or self.input_shape[2] % 16):
            raise ValueError(f"architecture 'conv' needs H and W divisible by 16, "
                             f"got input_shape {self.input_shape}")
        for name in ("n_caps", "cap_dim", "weak_pairs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.operator == "rotation" and self.latent_dim < 2:
            raise ValueError("operator 'rotation' needs at least 2 latent units")
        if self.supervision == "weak" and self.operator != "shift":
            raise ValueError("supervision 'weak' infers the step from the cross power spectrum of "
                             "the shift operator; it needs operator 'shift'")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not (math.isfinite(self.code_weight) and self.code_weight >= 0):
            raise ValueError(f"code_weight must be non-negative, got {self.code_weight}")
        if self.code_weight > 0 and self.supervision != "supervised":
            raise ValueError("code_weight needs supervision 'supervised' (the known step)")


# -- the operators ------------------------------------------------------------------------------
def _steps(k: torch.Tensor | int, lead: torch.Size, device: torch.device) -> torch.Tensor:
    k = torch.as_tensor(k, device=device)
    if k.is_floating_point() or k.is_complex() or k.dim() > len(lead):
        raise ValueError(f"k must be integer steps broadcastable to {tuple(lead)}, "
                         f"got {k.dtype} shaped {tuple(k.shape)}")
    return k.long().expand(lead)


def roll_codes(t: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Roll every capsule of ``t`` ``(..., n_caps, cap_dim)`` by ``k`` units (one ``k`` per
    code, broadcast over the leading dims): ``out[..., c, n] = t[..., c, n - k]``, which is
    ``torch.roll(t, k, dims=-1)`` for a single ``k``."""
    if not isinstance(t, torch.Tensor) or t.dim() < 2:
        raise ValueError("t must be shaped (..., n_caps, cap_dim)")
    dim = t.shape[-1]
    k = _steps(k, t.shape[:-2], t.device)
    index = (torch.arange(dim, device=t.device) - k[..., None]) % dim  # (..., cap_dim)
    index = index[..., None, :].expand(t.shape)
    return torch.gather(t, -1, index)


def rotate_codes(t: torch.Tensor, k: torch.Tensor | int, period: int) -> torch.Tensor:
    """The disentangled operator: units 0 and 1 of the flattened code rotated by ``2 pi k /
    period``, the other units unchanged; ``t`` is ``(..., n_caps, cap_dim)``."""
    if not isinstance(t, torch.Tensor) or t.dim() < 2 or t.shape[-1] * t.shape[-2] < 2:
        raise ValueError("t must be shaped (..., n_caps, cap_dim) with at least 2 units")
    flat = t.flatten(-2)
    angle = 2.0 * math.pi * _steps(k, t.shape[:-2], t.device).to(t.dtype) / period
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = flat[..., 0], flat[..., 1]
    rotated = torch.stack([cos * a - sin * b, sin * a + cos * b], dim=-1)
    return torch.cat([rotated, flat[..., 2:]], dim=-1).view_as(t)


def shift_scores(t1: torch.Tensor, t2: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Phase-correlation score of every shift ``j`` taking ``t1`` to ``t2``.

    ``t1``, ``t2``: ``(..., n_caps, cap_dim)``. Returns ``(..., cap_dim)``: the inverse FFT of the
    normalised cross power spectrum ``FFT(t2) conj(FFT(t1)) / |...|`` of each capsule, averaged
    over capsules. If ``t2 == roll(t1, k)`` it is 1 at ``j = k`` and 0 elsewhere (for capsules with
    no zero Fourier coefficient). Differentiable in both codes.
    """
    if t1.shape != t2.shape or t1.dim() < 2:
        raise ValueError(f"t1 and t2 must share one (..., n_caps, cap_dim) shape, got "
                         f"{tuple(t1.shape)} and {tuple(t2.shape)}")
    f1 = torch.fft.fft(t1, dim=-1)
    f2 = torch.fft.fft(t2, dim=-1)
    cross = f2 * f1.conj()
    cross = cross / (cross.abs() + eps)
    return torch.fft.ifft(cross, dim=-1).real.mean(-2)


def infer_shift(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """The shift ``k`` in ``[0, cap_dim)`` best taking ``t1`` to ``t2`` (argmax of
    :func:`shift_scores`), shaped like the leading dims."""
    return shift_scores(t1, t2).argmax(-1)


@runtime_checkable
class LatentOperatorModel(Protocol):
    """A capsule model with a latent operator of its own for ``k`` steps of the transformation."""

    def latent_codes(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, t: torch.Tensor) -> torch.Tensor: ...

    def apply_operator(self, t: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor: ...


# -- the model ----------------------------------------------------------------------------------
@register_model("shift_operator")
class ShiftOperatorAutoencoder(GenerativeModel):
    """Autoencoder with a latent shift (or rotation) operator; see the module docstring."""

    config_class = ShiftOperatorConfig

    def __init__(self, config: ShiftOperatorConfig) -> None:
        super().__init__(config)
        shape = tuple(config.input_shape)
        d = config.latent_dim
        self.latent_dim = d
        encoder = build_encoder(config.architecture, shape, d)
        last = encoder[-1]  # both encoders end with Linear(., 2d): mean and log-variance
        encoder[-1] = nn.Linear(last.in_features, d)
        self.encoder = encoder
        self.decoder = build_decoder(config.architecture, shape, d)

    # -- codes --------------------------------------------------------------------------------
    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        t = self.encoder(frames)
        return t.view(frames.shape[0], self.config.n_caps, self.config.cap_dim)

    def _decode(self, t: torch.Tensor) -> torch.Tensor:
        lead = t.shape[:-2]
        logits = self.decoder(t.reshape(-1, self.latent_dim))
        return logits.view(*lead, *self.config.input_shape)

    def latent_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, S, n_caps, cap_dim)`` of ``x`` ``(B, S, C, H, W)``, each frame alone."""
        check_sequences(x, tuple(self.config.input_shape))
        b, s = x.shape[:2]
        return self._encode(x.flatten(0, 1)).view(b, s, self.config.n_caps, self.config.cap_dim)

    def decode(self, t: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(..., C, H, W)`` of codes ``t`` ``(..., n_caps, cap_dim)``."""
        shape = (self.config.n_caps, self.config.cap_dim)
        if not isinstance(t, torch.Tensor) or t.dim() < 2 or tuple(t.shape[-2:]) != shape:
            raise ValueError(f"t must be shaped (..., {shape[0]}, {shape[1]}), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t)}")
        return self._decode(t)

    def apply_operator(self, t: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
        """The latent operator for ``k`` steps (one per code): a roll or the 2-D rotation."""
        if self.config.operator == "shift":
            return roll_codes(t, k)
        return rotate_codes(t, k, self.config.cap_dim)

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """Flattened code ``(N, d)`` of single images ``(N, C, H, W)``."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"images must be shaped (N, C, H, W), got {got}")
        check_sequences(images.unsqueeze(1), tuple(self.config.input_shape), "images")
        return self._encode(images).flatten(1)

    # -- training objective -------------------------------------------------------------------
    def _nll(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image loss (summed over the last three dims) of ``target`` under ``logits``."""
        if self.config.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            nll = (torch.sigmoid(logits) - target).square()
        return nll.flatten(-3).sum(-1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Loss ``recon_nll + transformed_nll`` (per image), logits of the frames, codes."""
        check_sequences(x, tuple(self.config.input_shape))
        b, s = x.shape[:2]
        if s < 2:
            raise ValueError(f"x must hold sequences of at least 2 frames (pairs), got S={s}")
        codes = self.latent_codes(x)
        logits = self._decode(codes)
        recon = self._nll(logits, x).mean()
        rows = torch.arange(b, device=x.device)[:, None]
        terms: dict[str, torch.Tensor] = {"recon_nll": recon}
        if self.config.supervision == "supervised":
            frames = torch.arange(s, device=x.device).expand(b, s)
            partner = (frames + torch.randint(1, s, (b, s), device=x.device)) % s
            moved = self.apply_operator(codes, partner - frames)
            transformed = self._nll(self._decode(moved), x[rows, partner]).mean()
            if self.config.code_weight > 0:
                terms["code_distance"] = code_distance(moved, codes[rows, partner]).mean()
        else:
            transformed, accuracy = self._weak_pair_loss(x, codes, rows)
            terms["shift_accuracy"] = accuracy
        terms["transformed_nll"] = transformed
        loss = recon + transformed
        if "code_distance" in terms:
            loss = loss + self.config.code_weight * terms["code_distance"]
        return ModelOutput(loss=loss, terms=terms, logits=logits, codes=codes)

    def _weak_pair_loss(self, x: torch.Tensor, codes: torch.Tensor, rows: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Partner reconstruction weighted over every shift by the inferred-shift softmax, and
        the fraction of pairs whose argmax shift is the true step (a diagnostic, not trained)."""
        b, s = x.shape[:2]
        dim = self.config.cap_dim
        n_pairs = self.config.weak_pairs
        source = torch.randint(0, s, (b, n_pairs), device=x.device)
        partner = (source + torch.randint(1, s, (b, n_pairs), device=x.device)) % s
        t1, t2 = codes[rows, source], codes[rows, partner]  # (B, P, n_caps, cap_dim)
        weights = torch.softmax(shift_scores(t1, t2) / self.config.temperature, dim=-1)
        shifts = torch.arange(dim, device=x.device)
        every = roll_codes(t1[:, :, None].expand(b, n_pairs, dim, *t1.shape[-2:]), shifts)
        target = x[rows, partner][:, :, None]  # (B, P, 1, C, H, W)
        nll = self._nll(self._decode(every), target.expand(b, n_pairs, dim, *x.shape[2:]))
        loss = (weights * nll).sum(-1).mean()
        truth = (partner - source) % dim
        accuracy = (weights.detach().argmax(-1) == truth).float().mean()
        return loss, accuracy


def code_distance(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Squared distance of the unit-normalised capsules of ``t1`` and ``t2`` ``(..., n_caps,
    cap_dim)``, summed over capsules: ``(...)``. Blind to the codes' scale, as E_eq is, so the
    encoder cannot satisfy it by shrinking its codes."""
    def unit(t: torch.Tensor) -> torch.Tensor:
        return t / t.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    return (unit(t1) - unit(t2)).square().sum((-2, -1))


# -- measurement --------------------------------------------------------------------------------
@torch.no_grad()
def operator_prediction(model: LatentOperatorModel, x: torch.Tensor) -> dict[str, float]:
    """Frame ``k`` predicted from frame 0 with the model's own operator, and reconstruction.

    ``x``: ``(B, S, C, H, W)`` sequences whose frame ``k`` is frame 0 after ``k`` steps. Returns
    ``operator_prediction_nll`` (Bernoulli NLL of true frame ``k`` under ``decode(op_k(t_0))``,
    nats per image, mean over ``k = 1 .. S-1``), ``operator_prediction_mse`` (per pixel) and
    ``reconstruction_nll`` (every frame from its own code, nats per image). For the shift
    operator the first equals the roll prediction of :func:`topovae.metrics.roll_prediction`.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] < 2:
        raise ValueError("x must be (B, S, C, H, W) sequences with S >= 2")
    codes = model.latent_codes(x)
    b, s = x.shape[:2]
    first = codes[:, :1].expand(b, s - 1, *codes.shape[2:])
    steps = torch.arange(1, s, device=x.device).expand(b, s - 1)
    logits = model.decode(model.apply_operator(first, steps))
    target = x[:, 1:]
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).sum(-1)
    mse = (torch.sigmoid(logits) - target).square().flatten(2).mean(-1)
    recon = F.binary_cross_entropy_with_logits(model.decode(codes), x, reduction="none")
    return {"operator_prediction_nll": float(nll.mean()),
            "operator_prediction_mse": float(mse.mean()),
            "reconstruction_nll": float(recon.flatten(2).sum(-1).mean())}


def step_roll(codes: torch.Tensor) -> dict[str, float | int]:
    """Which roll one frame step has become in ``codes`` ``(B, S, n_caps, cap_dim)``.

    ``step_roll``: the shift in ``[0, cap_dim)`` that :func:`infer_shift` finds most often between
    the codes of consecutive frames; ``step_roll_fraction``: how often. A code that rolls as the
    measurements assume has ``step_roll = 1``. The weak variant is told nothing about the
    direction, so it can learn the roll only up to the symmetries of the cyclic group (``-1``,
    or any ``m`` coprime with ``cap_dim``); these two numbers show which one it learned.
    """
    if not isinstance(codes, torch.Tensor) or codes.dim() != 4 or codes.shape[1] < 2:
        raise ValueError("codes must be shaped (B, S, n_caps, cap_dim) with S >= 2")
    found = infer_shift(codes[:, :-1], codes[:, 1:]).flatten()
    counts = torch.bincount(found, minlength=codes.shape[-1])
    return {"step_roll": int(counts.argmax()),
            "step_roll_fraction": float(counts.max()) / found.numel()}
