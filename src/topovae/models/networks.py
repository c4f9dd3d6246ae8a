"""Encoder and decoder networks shared by every model.

Two families:

* the paper's 3-layer MLPs (``input -> 3d -> 2d -> 2d``, ReLU), written as plain ``Linear``
  layers (the original code expresses them as full-image convolutions, which computes the same
  thing several times slower on a CPU);
* the small convolutional encoder/decoder for 64x64 images used throughout the disentanglement
  literature (four 4x4 stride-2 convolutions of 32, 32, 64, 64 channels, a 256-unit dense layer),
  as in Higgins et al. (2017), Burgess et al. (2018) and Locatello et al. (2019).

Both take any image size. The MLPs flatten ``C x H x W`` whatever it is. The conv networks keep
halving the image while its smaller side is at least 8 pixels, with at most four convolutions
(:func:`conv_layout`): 64x64 gets the literature's four (4x4x64 before the dense layer), 32x32
three (4x4), 28x28 and 25x25 two (7x7 and 6x6), 8x8 one; smaller images none (the dense layers
alone). The channels are the first of 32, 32, 64, 64. A side of odd length is floored by a
stride-2 convolution; the decoder's transposed convolutions add one pixel back there
(``output_padding``), so its output always has exactly the input's size.

An encoder maps images ``(N, C, H, W)`` to ``(N, 2 * d)`` (mean and log-variance, concatenated);
a decoder maps ``(N, d)`` to Bernoulli logits ``(N, C, H, W)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from topovae.models.mixed_precision import Linear

__all__ = ["mlp_encoder", "mlp_decoder", "conv_encoder", "conv_decoder", "conv_layout",
           "build_encoder", "build_decoder"]


def _check_shape(input_shape: tuple[int, int, int]) -> None:
    if len(input_shape) != 3 or any(int(s) <= 0 for s in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")


def mlp_encoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """The paper's encoder: ``flatten -> 3d -> ReLU -> 2d -> ReLU -> 2d`` (mean, log-variance)."""
    _check_shape(input_shape)
    d = latent_dim
    return nn.Sequential(
        nn.Flatten(),
        Linear(math.prod(input_shape), 3 * d),
        nn.ReLU(inplace=True),
        Linear(3 * d, 2 * d),
        nn.ReLU(inplace=True),
        Linear(2 * d, 2 * d),
    )


def mlp_decoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """The paper's decoder, mirrored: ``d -> 2d -> ReLU -> 3d -> ReLU -> pixels`` (logits)."""
    _check_shape(input_shape)
    d = latent_dim
    return nn.Sequential(
        Linear(d, 2 * d),
        nn.ReLU(inplace=True),
        Linear(2 * d, 3 * d),
        nn.ReLU(inplace=True),
        Linear(3 * d, math.prod(input_shape)),
        nn.Unflatten(1, tuple(input_shape)),
    )


CONV_CHANNELS = (32, 32, 64, 64)
MIN_SIDE_TO_HALVE = 8


def conv_layout(input_shape: tuple[int, int, int]) -> list[tuple[int, int]]:
    """Spatial sizes ``(h, w)`` of the input and after each stride-2 convolution of the conv
    networks for ``input_shape`` (see the module docstring): ``[(64, 64), ..., (4, 4)]``."""
    _check_shape(input_shape)
    sizes = [(int(input_shape[1]), int(input_shape[2]))]
    while len(sizes) <= len(CONV_CHANNELS) and min(sizes[-1]) >= MIN_SIDE_TO_HALVE:
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))  # a 4x4 kernel, stride 2, padding 1 floors n / 2
    return sizes


def conv_encoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """Conv encoder of the disentanglement literature (64x64 inputs -> 4x4x64 -> 256 -> 2d);
    other sizes get the layers of :func:`conv_layout`."""
    sizes = conv_layout(input_shape)
    channels = [int(input_shape[0]), *CONV_CHANNELS[: len(sizes) - 1]]
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU(inplace=True)]
    h, w = sizes[-1]
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        Linear(channels[-1] * h * w, 256),
        nn.ReLU(inplace=True),
        Linear(256, 2 * latent_dim),
    )


def conv_decoder(input_shape: tuple[int, int, int], latent_dim: int) -> nn.Sequential:
    """Mirror of :func:`conv_encoder` with transposed convolutions; outputs logits shaped
    exactly ``input_shape``."""
    sizes = conv_layout(input_shape)
    channels = [int(input_shape[0]), *CONV_CHANNELS[: len(sizes) - 1]]
    h, w = sizes[-1]
    layers: list[nn.Module] = [
        Linear(latent_dim, 256),
        nn.ReLU(inplace=True),
        Linear(256, channels[-1] * h * w),
        nn.ReLU(inplace=True),
        nn.Unflatten(1, (channels[-1], h, w)),
    ]
    n = len(sizes) - 1
    for i in range(n, 0, -1):  # from the smallest map back to the input size
        (h_out, w_out), (h_in, w_in) = sizes[i - 1], sizes[i]
        padding = (h_out - 2 * h_in, w_out - 2 * w_in)  # 0 or 1: the pixel a floor dropped
        layers.append(nn.ConvTranspose2d(channels[i], channels[i - 1], 4, 2, 1,
                                         output_padding=padding))
        if i > 1:
            layers.append(nn.ReLU(inplace=True))
    if n == 0:  # no convolution: the dense layers output the pixels (no ReLU on the logits)
        layers = [layers[0], layers[1], Linear(256, math.prod(input_shape)),
                  nn.Unflatten(1, tuple(int(s) for s in input_shape))]
    return nn.Sequential(*layers)


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
