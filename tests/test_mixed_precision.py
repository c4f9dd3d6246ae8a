"""The persistent bfloat16 weight copies of ``bf16-mixed``: the numbers of plain autocast, a copy
refreshed after every change of the float32 master weight, nothing of it in a checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from topovae.models.mixed_precision import Linear
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.training.optim import make_optimizer


def _tvae() -> TVAE:
    torch.manual_seed(0)
    return TVAE(TVAEConfig(input_shape=(3, 12, 12), n_caps=3, cap_dim=6, seq_len=6,
                           coherence="shifting", time_window=4, capsule_window=3))


def _bf16_step(model: TVAE, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, list]:
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.loss.backward()
    return out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_the_copy_gives_the_numbers_of_plain_autocast_bit_for_bit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tvae()
    x = torch.rand(2, 6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    assert isinstance(model.encoder_input, Linear) and isinstance(model.decoder[0], Linear)
    loss, grads = _bf16_step(model, x, seed=3)
    assert model.encoder_input._bf16_weight is not None  # the copy was used
    with monkeypatch.context() as patch:
        patch.setattr(Linear, "forward", nn.Linear.forward)  # autocast's own per-use casts
        reference_loss, reference_grads = _bf16_step(model, x, seed=3)
    assert torch.equal(loss, reference_loss)
    assert len(grads) == len(reference_grads) > 0
    for grad, reference in zip(grads, reference_grads, strict=True):
        assert grad.dtype == torch.float32
        assert torch.equal(grad, reference)


def test_the_copy_is_refreshed_after_every_optimiser_step_in_place() -> None:
    model = _tvae()
    x = torch.rand(2, 6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    optimiser = make_optimizer("adam", model.parameters(), lr=1e-2)
    layer = model.decoder[0]
    pointer = None
    for step in range(3):
        _bf16_step(model, x, seed=step)
        cached = layer._bf16_weight
        assert cached is not None and cached.dtype == torch.bfloat16
        assert torch.equal(cached, layer.weight.detach().to(torch.bfloat16))
        if pointer is not None:
            assert cached.data_ptr() == pointer  # refreshed in place, not reallocated
        pointer = cached.data_ptr()
        before = cached.clone()
        optimiser.step()
        assert not torch.equal(layer.bf16_weight(), before)  # the update reached the copy
        assert torch.equal(layer.bf16_weight(), layer.weight.detach().to(torch.bfloat16))


def test_the_copy_follows_load_state_dict_and_in_place_changes() -> None:
    model, other = _tvae(), _tvae()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    layer = model.encoder_input
    layer.bf16_weight()
    model.load_state_dict(other.state_dict())
    assert torch.equal(layer.bf16_weight(), other.encoder_input.weight.detach().bfloat16())
    with torch.no_grad():
        layer.weight.mul_(2.0)
    assert torch.equal(layer.bf16_weight(), layer.weight.detach().bfloat16())


def test_the_copy_is_a_cache_not_state() -> None:
    model = _tvae()
    model.encoder_input.bf16_weight()
    reference = _tvae()
    assert model.state_dict().keys() == reference.state_dict().keys()
    twin = copy.deepcopy(model)
    assert twin.encoder_input._bf16_weight is None
    assert model.encoder_input._bf16_weight is not None  # the original keeps its copy


def test_outside_bf16_autocast_the_layer_is_nn_linear() -> None:
    torch.manual_seed(0)
    layer = Linear(5, 3)
    plain = nn.Linear(5, 3)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 5)
    assert torch.equal(layer(x), plain(x))
    assert layer._bf16_weight is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        with torch.autocast("cpu", enabled=False):
            assert torch.equal(layer(x), plain(x))
