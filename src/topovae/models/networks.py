"""Encoder and decoder networks shared by every model.

Two families:

* the paper's 3-layer MLPs (``input -> 3d -> 2d -> 2d``, ReLU), written as plain ``Linear``
  layers (the original code expresses them as full-image convolutions, which computes the same
  thing several times slower on a CPU);
* the small convolutional encoder/decoder for 64x64 images used throughout the disentanglement
  literature (four 4x4 stride-2 convolutions of 32, 32, 64, 64 channels, a 256-unit dense layer),
  as in Higgins et al. (2017), Burgess et al. (2018) and Locatello et al. (2019).

An encoder maps images ``(N, C, H, W)`` to ``(N, 2 * d)`` (mean and log-variance, concatenated);
a decoder maps ``(N, d)`` to Bernoulli logits ``(N, C, H, W)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["mlp_encoder", "mlp_decoder", "conv_encoder", "conv_decoder", "build_encoder",
           "build_decoder"]


def _check_shape(input_shape: tuple[int, int, int]) -> None:
    if len(input_shape) != 3 or any(int(s) <= 0 for s in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")


def mlp_encoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """The paper's encoder: ``flatten -> 3d -> ReLU -> 2d -> ReLU -> 2d`` (mean, log-variance)."""
    _check_shape(input_shape)
    d = latent_dim
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), 3 * d),
        nn.ReLU(),
        nn.Linear(3 * d, 2 * d),
        nn.ReLU(),
        nn.Linear(2 * d, 2 * d),
    )


def mlp_decoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """The paper's decoder, mirrored: ``d -> 2d -> ReLU -> 3d -> ReLU -> pixels`` (logits)."""
    _check_shape(input_shape)
    d = latent_dim
    return nn.Sequential(
        nn.Linear(d, 2 * d),
        nn.ReLU(),
        nn.Linear(2 * d, 3 * d),
        nn.ReLU(),
        nn.Linear(3 * d, math.prod(input_shape)),
        nn.Unflatten(1, tuple(input_shape)),
    )


def _conv_trunk_size(input_shape: tuple[int, int, int]) -> tuple[int, int]:
    _, h, w = input_shape
    if h % 16 or w % 16:
        raise ValueError(
            f"conv networks need H and W divisible by 16, got input_shape {input_shape}"
        )
    return h // 16, w // 16


def conv_encoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """Conv encoder of the disentanglement literature (64x64 inputs -> 4x4x64 -> 256 -> 2d)."""
    _check_shape(input_shape)
    c = input_shape[0]
    h, w = _conv_trunk_size(input_shape)
    return nn.Sequential(
        nn.Conv2d(c, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * h * w, 256),
        nn.ReLU(),
        nn.Linear(256, 2 * latent_dim),
    )


def conv_decoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """Mirror of :func:`conv_encoder` with transposed convolutions; outputs logits."""
    _check_shape(input_shape)
    c = input_shape[0]
    h, w = _conv_trunk_size(input_shape)
    return nn.Sequential(
        nn.Linear(latent_dim, 256),
        nn.ReLU(),
        nn.Linear(256, 64 * h * w),
        nn.ReLU(),
        nn.Unflatten(1, (64, h, w)),
        nn.ConvTranspose2d(64, 64, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, c, 4, 2, 1),
    )


_ENCODERS = {"mlp": mlp_encoder, "conv": conv_encoder}
_DECODERS = {"mlp": mlp_decoder, "conv": conv_decoder}


def build_encoder(
    architecture: str, input_shape: tuple[int, int, int], latent_dim: int
) -> nn.Module:
    if architecture not in _ENCODERS:
        raise ValueError(f"architecture must be one of {sorted(_ENCODERS)}, got {architecture!r}")
    return _ENCODERS[architecture](tuple(input_shape), latent_dim)


def build_decoder(
    architecture: str, input_shape: tuple[int, int, int], latent_dim: int
) -> nn.Module:
    if architecture not in _DECODERS:
        raise ValueError(f"architecture must be one of {sorted(_DECODERS)}, got {architecture!r}")
    return _DECODERS[architecture](tuple(input_shape), latent_dim)


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example Bernoulli negative log-likelihood in nats, summed over all but the first dim.

    ``target`` may be grey levels in [0, 1] (the usual relaxation for MNIST).
    """
    nll = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return nll.flatten(1).sum(1)
