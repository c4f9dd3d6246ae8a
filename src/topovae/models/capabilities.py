"""What a model can do, declared as Protocols.

The evaluation (:mod:`topovae.measure`), the report and the CLI ask a model for a capability
with ``isinstance(model, Capability)``, never by probing attribute names: a model has a
capability by implementing its methods. Every Protocol is ``runtime_checkable``.

=========================  ==========================================  ========================
capability                 methods                                     implemented by
=========================  ==========================================  ========================
:class:`Representation`    ``representation(images) -> (N, d)``        every GenerativeModel
:class:`CapsuleCodes`      ``latent_codes(x)``, ``decode(t)``          TVAE, shift operator
:class:`LatentOperator`    the above and ``apply_operator(t, k)``      shift operator
:class:`ImageAutoencoder`  ``encode``, ``decode``, ``representation``  the beta/TC/FactorVAEs
:class:`LogLikelihood`     ``log_likelihood(x, n_samples)``            TVAE
:class:`FrameWeights`      ``log_importance_weights(x, n_samples)``    TVAE
:class:`Sampler`           ``sample(n, generator)``                    TVAE, the VAEs
:class:`TorusMap`          ``torus_grid() -> (rows, cols) | None``     TVAE
=========================  ==========================================  ========================

``TorusMap.torus_grid`` returns ``None`` for a model whose units do not lie on a torus (a TVAE
with another topography): the capability is the method, the answer is the configuration's.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from topovae.models.shift_operator import LatentOperatorModel as LatentOperator

__all__ = ["Representation", "CapsuleCodes", "LatentOperator", "ImageAutoencoder",
           "LogLikelihood", "FrameWeights", "Sampler", "TorusMap", "torus_grid"]


@runtime_checkable
class Representation(Protocol):
    """A deterministic code of single images: ``(N, C, H, W) -> (N, d)``."""

    def representation(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class CapsuleCodes(Protocol):
    """Capsule codes of sequences and their decoder (:func:`topovae.metrics.roll_prediction`).

    ``latent_codes``: ``(B, S, C, H, W)`` -> ``t`` shaped ``(B, S, n_caps, cap_dim)``
    (deterministic, from the posterior); ``decode``: codes -> Bernoulli logits ``(..., C, H, W)``.
    """

    def latent_codes(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, t: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ImageAutoencoder(Protocol):
    """A per-image encoder and decoder (the Gaussian VAE baselines)."""

    def encode(self, images: torch.Tensor) -> object: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def representation(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LogLikelihood(Protocol):
    """An importance-sampled ``log p(x)`` of sequences: nats per image for each sequence."""

    def log_likelihood(self, x: torch.Tensor, n_samples: int = 10,
                       generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class FrameWeights(Protocol):
    """Per-frame log importance weights ``(n_samples, B, S)`` of joint draws of a sequence's
    latents (the original code's likelihood protocol; the TVAE has them)."""

    def log_importance_weights(self, x: torch.Tensor, n_samples: int = 10,
                               generator: torch.Generator | None = None,
                               max_images_per_chunk: int = 4096,
                               per_frame: bool = False) -> torch.Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    """Draws from the prior, decoded to pixel probabilities."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class TorusMap(Protocol):
    """Units laid out on a 2-D torus (Figure 3): ``torus_grid()`` gives ``(rows, cols)``."""

    def torus_grid(self) -> tuple[int, int] | None: ...


def torus_grid(model: object) -> tuple[int, int] | None:
    """``(rows, cols)`` of the torus of ``model``; ``None`` when it has none."""
    return model.torus_grid() if isinstance(model, TorusMap) else None
