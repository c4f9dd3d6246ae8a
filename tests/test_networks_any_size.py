"""Encoder and decoder networks for any image size."""

from __future__ import annotations

import pytest
import torch

from topovae.models.networks import (
    conv_decoder,
    conv_encoder,
    conv_layout,
    mlp_decoder,
    mlp_encoder,
)
from topovae.models.tvae import TVAE, TVAEConfig


@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 28, 28), (3, 25, 25), (1, 32, 48),
                                   (3, 8, 8), (1, 5, 7), (3, 17, 99)])
def test_networks_fit_any_shape(shape):
    x = torch.rand(2, *shape)
    for encoder, decoder in ((conv_encoder, conv_decoder), (mlp_encoder, mlp_decoder)):
        assert encoder(shape, 6)(x).shape == (2, 12)
        assert decoder(shape, 6)(torch.randn(2, 6)).shape == (2, *shape)


def test_conv_layout_rule():
    assert conv_layout((1, 64, 64)) == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    assert conv_layout((3, 28, 28)) == [(28, 28), (14, 14), (7, 7)]
    assert conv_layout((3, 25, 25)) == [(25, 25), (12, 12), (6, 6)]
    assert conv_layout((1, 7, 100)) == [(7, 100)]
    assert conv_layout((1, 256, 256))[-1] == (16, 16)  # at most four halvings


def test_64x64_conv_networks_are_the_literature_ones():
    encoder, decoder = conv_encoder((1, 64, 64), 10), conv_decoder((1, 64, 64), 10)
    convs = [m for m in encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 32, (4, 4), (2, 2)), (32, 32, (4, 4), (2, 2)), (32, 64, (4, 4), (2, 2)),
        (64, 64, (4, 4), (2, 2))]
    assert encoder[9].in_features == 64 * 4 * 4 and encoder[9].out_features == 256
    transposed = [m for m in decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.output_padding for m in transposed] == [(0, 0)] * 4
    assert sorted(encoder.state_dict()) == sorted(
        ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias",
         "9.weight", "9.bias", "11.weight", "11.bias"])


def test_conv_tvae_on_odd_sized_colour_frames_learns():
    torch.manual_seed(0)
    model = TVAE(TVAEConfig(input_shape=(3, 25, 25), architecture="conv", n_caps=2, cap_dim=4,
                            seq_len=4, time_window=3))
    x = (torch.rand(2, 4, 3, 25, 25) > 0.5).float()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = float(model(x).loss.detach())
    for _ in range(15):
        optimiser.zero_grad()
        loss = model(x).loss
        loss.backward()
        optimiser.step()
    assert float(model(x).loss.detach()) < first
    assert model.latent_codes(x).shape == (2, 4, 2, 4)
