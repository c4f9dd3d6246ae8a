"""Importance-sampled log-likelihood: exact against quadrature, bounded by the ELBO, tightening."""

from __future__ import annotations

import math

import pytest
import torch

from topovae.metrics.likelihood import LogLikelihood, importance_sampled_log_likelihood
from topovae.models.tvae import TVAE, TVAEConfig

TINY = dict(input_shape=(1, 1, 2), n_caps=1, cap_dim=1, seq_len=1, coherence="none",
            time_window=0, capsule_window=1, mu_init=0.5)
SMALL = dict(input_shape=(1, 4, 4), n_caps=2, cap_dim=3, seq_len=3, coherence="shifting",
             time_window=3, capsule_window=3, mu_init=1.0)


def make(seed=0, **config) -> TVAE:
    torch.manual_seed(seed)
    return TVAE(TVAEConfig(**config)).double().eval()


def decoder_log_lik(model: TVAE, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | t) for a grid of scalar codes ``t`` (any shape) and one image ``x`` (1, 1, 2)."""
    logits = model.decoder(t.reshape(-1, 1)).reshape(*t.shape, 2)
    target = x.reshape(2)
    return -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target.expand_as(logits), reduction="none").sum(-1)


X_TINY = torch.tensor([[[[[1.0, 0.0]]]], [[[[0.3, 0.9]]]]], dtype=torch.float64)


@torch.no_grad()
def test_exact_against_2d_quadrature():
    """p(x) = ∫∫ p(x | (z + mu)/sqrt(u² + eps)) N(z) N(u) dz du on a fine grid (d = 1, S = 1)."""
    model = make(**TINY)
    # scale the decoder up so that p(x|t) really varies with t
    for p in model.decoder.parameters():
        p.mul_(1.5)
    dz, du = 0.01, 0.004
    z = torch.arange(-8.0, 8.0 + dz / 2, dz, dtype=torch.float64)
    u = torch.arange(-8.0, 8.0 + du / 2, du, dtype=torch.float64)
    log_prior_z = -0.5 * (z ** 2 + math.log(2 * math.pi))
    log_prior_u = -0.5 * (u ** 2 + math.log(2 * math.pi))
    for b in range(X_TINY.shape[0]):
        x = X_TINY[b]
        total = []
        for chunk in torch.split(u, 500):
            t = (z[:, None] + model.mu) / torch.sqrt(chunk[None, :] ** 2 + 1e-6)
            log_f = decoder_log_lik(model, t, x) + log_prior_z[:, None]
            log_f = log_f + log_prior_u[torch.searchsorted(u, chunk)][None, :]
            total.append(torch.logsumexp(log_f.flatten(), 0))
        exact = float(torch.logsumexp(torch.stack(total), 0) + math.log(dz * du))
        gen = torch.Generator().manual_seed(b)
        estimate = float(model.log_likelihood(x[None], n_samples=400_000, generator=gen)[0])
        assert estimate == pytest.approx(exact, abs=0.01)


@torch.no_grad()
def test_plain_vae_exact_against_1d_quadrature():
    model = make(**TINY, topographic=False)
    for p in model.decoder.parameters():
        p.mul_(3.0)
    dz = 0.001
    z = torch.arange(-9.0, 9.0 + dz / 2, dz, dtype=torch.float64)
    for b in range(X_TINY.shape[0]):
        x = X_TINY[b]
        log_f = decoder_log_lik(model, z, x) - 0.5 * (z ** 2 + math.log(2 * math.pi))
        exact = float(torch.logsumexp(log_f, 0) + math.log(dz))
        gen = torch.Generator().manual_seed(10 + b)
        estimate = float(model.log_likelihood(x[None], n_samples=50_000, generator=gen)[0])
        assert estimate == pytest.approx(exact, abs=0.01)


def sequences(b=4, seed=3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, 1, 4, 4, generator=g, dtype=torch.float64) > 0.5).double()


@torch.no_grad()
def test_mean_log_weight_is_the_training_elbo():
    """E_q[log w] / S equals minus the training loss (beta = 1) in expectation."""
    model = make(**SMALL)
    x = sequences()
    gen = torch.Generator().manual_seed(0)
    log_w = model.log_importance_weights(x, n_samples=20_000, generator=gen)
    elbo_from_weights = float(log_w.mean()) / 3
    torch.manual_seed(1)
    elbo_from_loss = -sum(float(model(x).loss) for _ in range(2000)) / 2000
    assert elbo_from_weights == pytest.approx(elbo_from_loss, abs=0.05)


@torch.no_grad()
def test_estimate_is_above_elbo_and_tightens_with_samples():
    model = make(**SMALL)
    x = sequences()
    gen = torch.Generator().manual_seed(2)
    pool = model.log_importance_weights(x, n_samples=20_000, generator=gen)  # (K, B)

    def grouped(k: int) -> float:
        groups = pool[: (pool.shape[0] // k) * k].reshape(-1, k, pool.shape[1])
        return float((torch.logsumexp(groups, 1) - math.log(k)).mean()) / 3

    e1, e10, e100, e1000 = grouped(1), grouped(10), grouped(100), grouped(1000)
    assert e10 > e1 + 0.05  # the gap to the ELBO is real for an untrained model
    assert e100 > e10 - 0.01 and e1000 > e100 - 0.02
    # for the same samples the IS estimate is never below their mean (Jensen)
    ll = model.log_likelihood(x, n_samples=10, generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    log_w = model.log_importance_weights(x, n_samples=10, generator=gen)
    torch.testing.assert_close(ll, (torch.logsumexp(log_w, 0) - math.log(10)) / 3)
    assert bool((ll >= log_w.mean(0) / 3 - 1e-12).all())


@torch.no_grad()
def test_metric_wrapper_fields_and_batching():
    model = make(**SMALL)
    model.train()
    x = sequences(b=5)
    result = importance_sampled_log_likelihood(model, x, n_samples=8, batch_size=2,
                                               generator=torch.Generator().manual_seed(0))
    assert isinstance(result, LogLikelihood)
    assert result.per_sequence.shape == (5,) and result.n_samples == 8 and result.n_images == 15
    assert result.nats_per_image == pytest.approx(float(result.per_sequence.mean()))
    assert model.training  # mode restored
    # large-sample estimate per sequence agrees with the unbatched one
    a = importance_sampled_log_likelihood(model, x, n_samples=4000, batch_size=2,
                                          generator=torch.Generator().manual_seed(1))
    b = importance_sampled_log_likelihood(model, x, n_samples=4000,
                                          generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.per_sequence, b.per_sequence, atol=0.05, rtol=0)


def test_bad_arguments():
    model = make(**SMALL)
    x = sequences()
    with pytest.raises(ValueError, match="n_samples"):
        importance_sampled_log_likelihood(model, x, n_samples=0)
    with pytest.raises(ValueError, match="x"):
        importance_sampled_log_likelihood(model, x[0])
    with pytest.raises(ValueError, match="batch_size"):
        importance_sampled_log_likelihood(model, x, batch_size=0)
    with pytest.raises(ValueError, match="x"):
        importance_sampled_log_likelihood(model, x[:, :2])
    with pytest.raises(ValueError, match="model"):
        importance_sampled_log_likelihood(torch.nn.Linear(2, 2), x)
