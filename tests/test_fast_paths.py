"""The faster computations of the training step and the importance sampler against the direct
ones they replace: the topography's block matrix multiply, the Bernoulli sum, the importance
sampler's log-density ratio, the input check."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from topovae.models.base import check_sequences
from topovae.models.tvae import (
    _bernoulli_nll_sum,
    _gaussian_logpdf_sum,
    _sample_log_ratio,
    _std_normal_logpdf_sum,
)
from topovae.topography import Topography


@pytest.mark.parametrize(("coherence", "time_window", "seq_len"), [
    ("shifting", 13, 18), ("stationary", 5, 18), ("none", 0, 18), ("shifting", 0, 1),
])
def test_capsule_block_multiply_equals_the_window_sums(coherence: str, time_window: int,
                                                        seq_len: int) -> None:
    topo = Topography.capsules(18, 18, 3, seq_len, coherence, time_window)
    u2 = torch.rand(3, 2, seq_len, 324, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    grad = torch.rand(3, 2, seq_len, 324, generator=torch.Generator().manual_seed(1))
    fast = topo(u2)
    (fast * grad).sum().backward()
    fast_grad, u2.grad = u2.grad, None
    slow = topo._window_sums(u2)
    (slow * grad).sum().backward()
    assert fast.shape == slow.shape and fast.dtype == torch.float32
    # the same non-negative terms, added in another order
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=0)
    torch.testing.assert_close(fast_grad, u2.grad, rtol=1e-6, atol=0)
    assert bool((fast >= 0).all())


def test_capsule_block_stays_float32_under_bf16_autocast() -> None:
    topo = Topography.capsules(4, 6, 3, 6, "shifting", 4)
    u2 = torch.rand(2, 6, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = topo(u2)
    assert v.dtype == torch.float32
    assert torch.equal(v, topo(u2))


def test_block_of_the_paper_setting_has_the_39_unit_window() -> None:
    block = Topography.capsules(18, 18, 3, 18, "shifting", 13)._block(torch.device("cpu"),
                                                                      torch.float64)
    assert block.shape == (324, 324)
    assert set(block.unique().tolist()) == {0.0, 1.0}
    assert torch.all(block.sum(0) == 39) and torch.all(block.sum(1) == 39)


def test_bernoulli_sum_equals_binary_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 500, generator=generator) * 8
    logits[0, 0, :4] = torch.tensor([-100.0, 100.0, 30.0, -30.0])  # far in both tails
    x = torch.rand(3, 500, generator=generator)
    x[1] = (x[1] > 0.5).float()  # binary and grey targets
    reference = F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)
    got = _bernoulli_nll_sum(logits, x)
    assert got.shape == (4, 3)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("dims", [1, 2])
def test_sample_log_ratio_equals_the_two_log_densities(dims: int) -> None:
    generator = torch.Generator().manual_seed(1)
    mean = torch.randn(3, 5, 7, generator=generator, dtype=torch.float64) * 2
    logvar = torch.randn(3, 5, 7, generator=generator, dtype=torch.float64)
    noise = torch.randn(4, 3, 5, 7, generator=generator, dtype=torch.float64)
    std = torch.exp(0.5 * logvar)
    y, ratio = _sample_log_ratio(mean, std, logvar.flatten(-dims).sum(-1), noise, dims)
    torch.testing.assert_close(y, mean + std * noise)
    reference = _std_normal_logpdf_sum(y, dims) - _gaussian_logpdf_sum(noise, logvar, dims)
    assert ratio.shape == reference.shape == ((4, 3, 5) if dims == 1 else (4, 3))
    torch.testing.assert_close(ratio, reference, rtol=1e-12, atol=1e-10)


def test_input_check_finds_every_non_finite_value_and_only_those() -> None:
    x = torch.rand(2, 3, 1, 4, 4)
    check_sequences(x, (1, 4, 4))
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[1, 2, 0, 3, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            check_sequences(y, (1, 4, 4))
    both = x.clone()
    both[0, 0, 0, 0, 0], both[0, 0, 0, 0, 1] = float("inf"), float("-inf")  # sum is NaN
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_sequences(both, (1, 4, 4))
    huge = torch.full((2, 3, 1, 4, 4), 3e38)  # finite, but its sum overflows
    check_sequences(huge, (1, 4, 4))
