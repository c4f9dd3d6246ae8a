"""beta-VAE, beta-TCVAE and FactorVAE: shapes, estimators against slow references, convergence."""

from __future__ import annotations

import math

import pytest
import torch

from topovae.models import MODELS, build_model, load_model
from topovae.models.baselines import (
    BetaTCVAE,
    BetaTCVAEConfig,
    BetaVAE,
    BetaVAEConfig,
    FactorVAE,
    FactorVAEConfig,
    gaussian_kl,
    gaussian_log_density,
    log_importance_weights_mss,
    permute_dims,
    tc_decomposition,
)

SMALL = {"input_shape": (1, 16, 16), "architecture": "mlp", "latent_dim": 4}
SMALL_FACTOR = {**SMALL, "discriminator_layers": 2, "discriminator_units": 32}


def small_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "beta_vae": BetaVAE(BetaVAEConfig(**SMALL)),
        "beta_tcvae": BetaTCVAE(BetaTCVAEConfig(**SMALL, dataset_size=1000)),
        "factor_vae": FactorVAE(FactorVAEConfig(**SMALL_FACTOR)),
    }


def bars(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Images of one horizontal and one vertical bar at random positions: ``(n, 1, 1, s, s)``."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, size, (n,), generator=g)
    cols = torch.randint(0, size, (n,), generator=g)
    img = torch.zeros(n, size, size)
    img[torch.arange(n), rows, :] = 1.0
    img[torch.arange(n), :, cols] = 1.0
    return img[:, None, None]


def test_registered_with_paper_defaults() -> None:
    assert {"beta_vae", "beta_tcvae", "factor_vae"} <= set(MODELS.names())
    assert BetaVAEConfig().beta == 4.0 and BetaTCVAEConfig().beta == 6.0
    assert FactorVAEConfig().gamma == 35.0 and FactorVAEConfig().latent_dim == 10
    disc = FactorVAE(FactorVAEConfig()).discriminator
    linears = [m for m in disc if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 7 and all(m.out_features == 1000 for m in linears[:-1])


@pytest.mark.parametrize("name", ["beta_vae", "beta_tcvae", "factor_vae"])
def test_shapes_and_terms(name: str) -> None:
    model = small_models()[name]
    x = torch.rand(3, 2, 1, 16, 16)
    out = model(x)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == x.shape
    assert out.codes.shape == (3, 2, 4)
    assert {"recon_nll", "kl"} <= set(out.terms)
    if name == "beta_tcvae":
        assert {"mi", "tc", "dwkl"} <= set(out.terms)
    if name == "factor_vae":
        assert "tc_estimate" in out.terms
        aux = model.auxiliary_loss(x, out)
        assert aux.dim() == 0 and "discriminator_loss" in out.terms
    images = x.flatten(0, 1)
    torch.testing.assert_close(model.representation(images), out.codes.flatten(0, 1))
    assert model.sample(5).shape == (5, 1, 16, 16)


def test_conv_architecture_on_64x64() -> None:
    torch.manual_seed(0)
    model = build_model("beta_vae", {"latent_dim": 10})
    x = torch.rand(2, 1, 1, 64, 64)
    out = model(x)
    assert out.logits.shape == x.shape and out.codes.shape == (2, 1, 10)


def test_bad_input_raises() -> None:
    model = small_models()["beta_vae"]
    with pytest.raises(ValueError, match="x must be shaped"):
        model(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="images"):
        model.representation(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="beta"):
        BetaVAEConfig(beta=-1.0)
    with pytest.raises(ValueError, match="estimator"):
        BetaTCVAEConfig(estimator="exact")
    with pytest.raises(ValueError, match="input_shape"):
        BetaVAEConfig(input_shape=(1, 0, 28))
    with pytest.raises(ValueError, match="dataset_size"):
        tc_decomposition(torch.zeros(8, 2), torch.zeros(8, 2), torch.zeros(8, 2), dataset_size=4)


def slow_log_qz(z, mu, logvar, dataset_size, estimator):
    """Explicit loops over samples, batch members and dimensions (MWS / MSS formulas)."""
    m, d = len(z), len(z[0])
    n = dataset_size
    log_qz, log_prod = [], []
    for i in range(m):
        weights = []
        for j in range(m):
            if estimator == "mws":
                weights.append(1.0 / (n * m))
            elif j == i:
                weights.append(1.0 / n)
            elif j == (i + 1) % m:
                weights.append((n - (m - 1)) / (n * (m - 1)))
            else:
                weights.append(1.0 / (m - 1))
        joint = 0.0
        for j in range(m):
            density = 1.0
            for k in range(d):
                var = math.exp(logvar[j][k])
                density *= math.exp(-(z[i][k] - mu[j][k]) ** 2 / (2 * var)) / math.sqrt(
                    2 * math.pi * var)
            joint += weights[j] * density
        log_qz.append(math.log(joint))
        total = 0.0
        for k in range(d):
            marginal = 0.0
            for j in range(m):
                var = math.exp(logvar[j][k])
                marginal += weights[j] * math.exp(-(z[i][k] - mu[j][k]) ** 2 / (2 * var)) / (
                    math.sqrt(2 * math.pi * var))
            total += math.log(marginal)
        log_prod.append(total)
    return torch.tensor(log_qz, dtype=torch.float64), torch.tensor(log_prod, dtype=torch.float64)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_log_qz_matches_explicit_loops(estimator: str) -> None:
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    logvar = 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(5, 3, generator=g, dtype=torch.float64)
    parts = tc_decomposition(z, mu, logvar, dataset_size=50, estimator=estimator)
    ref_qz, ref_prod = slow_log_qz(z.tolist(), mu.tolist(), logvar.tolist(), 50, estimator)
    torch.testing.assert_close(parts["log_qz"], ref_qz)
    torch.testing.assert_close(parts["log_prod_qzd"], ref_prod)


def test_mss_weights_rows_sum_to_one() -> None:
    weights = log_importance_weights_mss(7, 100).double().exp()
    torch.testing.assert_close(weights.sum(1), torch.ones(7, dtype=torch.float64))
    assert torch.allclose(weights.diagonal(), torch.full((7,), 0.01, dtype=torch.float64))


def test_decomposition_sums_to_kl_on_known_gaussian() -> None:
    """MI + TC + DWKL == log q(z|x) - log p(z) exactly; its mean is the analytic KL."""
    g = torch.Generator().manual_seed(2)
    m, d = 64, 3
    mu = torch.randn(m, d, generator=g, dtype=torch.float64)
    logvar = torch.log(torch.rand(m, d, generator=g, dtype=torch.float64) * 0.8 + 0.2)
    estimates = []
    for estimator in ("mws", "mss"):
        for _ in range(200):
            z = mu + torch.exp(0.5 * logvar) * torch.randn(m, d, generator=g, dtype=torch.float64)
            parts = tc_decomposition(z, mu, logvar, dataset_size=10_000, estimator=estimator)
            total = parts["mi"] + parts["tc"] + parts["dwkl"]
            torch.testing.assert_close(total, parts["log_qz_given_x"] - parts["log_pz"])
            estimates.append(total)
    mc_kl = torch.stack(estimates).mean(0)
    analytic = gaussian_kl(mu, logvar)
    # standard error of a mean of 400 single-sample estimates of a 3-d KL is ~0.06 nats
    assert (mc_kl - analytic).abs().mean() < 0.06
    assert abs(float((mc_kl - analytic).mean())) < 0.02


def test_tcvae_with_unit_weights_is_the_vae_loss_in_expectation() -> None:
    torch.manual_seed(3)
    tcvae = BetaTCVAE(BetaTCVAEConfig(**SMALL, alpha=1.0, beta=1.0, gamma=1.0,
                                      dataset_size=1000))
    vae = BetaVAE(BetaVAEConfig(**SMALL, beta=1.0))
    vae.load_state_dict(tcvae.state_dict())
    x = bars(16).float()
    diffs = []
    with torch.no_grad():
        for seed in range(300):
            torch.manual_seed(seed)
            a = tcvae(x)
            torch.manual_seed(seed)
            b = vae(x)
            torch.testing.assert_close(a.terms["recon_nll"], b.terms["recon_nll"])
            diffs.append(float(a.loss - b.loss))
    diffs_t = torch.tensor(diffs)
    stderr = float(diffs_t.std()) / math.sqrt(len(diffs))
    assert abs(float(diffs_t.mean())) < 4 * stderr + 1e-3


def test_permute_dims_preserves_marginals_and_destroys_dependence() -> None:
    g = torch.Generator().manual_seed(4)
    base = torch.randn(4000, 1, generator=g)
    z = torch.cat([base, base + 0.05 * torch.randn(4000, 1, generator=g), -base], dim=1)
    permuted = permute_dims(z, generator=g)
    for k in range(3):  # every column is a permutation of the same column
        torch.testing.assert_close(permuted[:, k].sort().values, z[:, k].sort().values)
    assert not torch.equal(permuted[:, 0], z[:, 0])
    corr_before = torch.corrcoef(z.T)
    corr_after = torch.corrcoef(permuted.T)
    assert corr_before[0, 1] > 0.99 and corr_before[0, 2] < -0.99
    off_diagonal = corr_after[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.08
    # columns are permuted independently, not with one shared permutation
    order0 = torch.argsort(permuted[:, 0])
    assert not torch.equal(permuted[order0, 2], -permuted[order0, 0])


@pytest.mark.parametrize("n_logits", [1, 2])
def test_discriminator_estimates_tc_of_correlated_gaussian(n_logits: int) -> None:
    rho = 0.8
    analytic_tc = -0.5 * math.log(1 - rho**2)  # 0.511 nats
    torch.manual_seed(5)
    model = FactorVAE(FactorVAEConfig(**{**SMALL, "latent_dim": 2}, discriminator_layers=3,
                                      discriminator_units=64, discriminator_logits=n_logits))
    chol = torch.tensor([[1.0, 0.0], [rho, math.sqrt(1 - rho**2)]])
    optimiser = torch.optim.Adam(model.auxiliary_parameters(), lr=3e-4)
    for _ in range(800):
        z = torch.randn(1024, 2) @ chol.T
        loss = model.discriminator_loss(z[:512], permute_dims(z[512:]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        estimate = float(model.tc_estimate(torch.randn(20_000, 2) @ chol.T))
    assert abs(estimate - analytic_tc) < 0.1, (estimate, analytic_tc)


@pytest.mark.parametrize("name", ["beta_vae", "beta_tcvae", "factor_vae"])
def test_loss_falls_on_tiny_problem(name: str) -> None:
    model = small_models()[name]
    x = bars(32)
    main = torch.optim.Adam(model.main_parameters(), lr=3e-3)
    aux_params = model.auxiliary_parameters()
    aux = torch.optim.Adam(aux_params, lr=1e-4) if aux_params else None
    torch.manual_seed(6)
    with torch.no_grad():
        before = sum(float(model(x).loss) for _ in range(5)) / 5
    for _ in range(60):
        out = model(x)
        main.zero_grad()
        out.loss.backward()
        main.step()
        if aux is not None:
            aux_loss = model.auxiliary_loss(x, out)
            aux.zero_grad()
            aux_loss.backward()
            aux.step()
            assert torch.isfinite(aux_loss)
    with torch.no_grad():
        after = sum(float(model(x).loss) for _ in range(5)) / 5
    assert after < 0.8 * before, (before, after)


def test_factor_vae_main_loss_does_not_train_the_discriminator() -> None:
    model = small_models()["factor_vae"]
    out = model(bars(8))
    out.loss.backward()
    assert all(p.grad is None for p in model.auxiliary_parameters())
    assert any(p.grad is not None for p in model.main_parameters())
    model.zero_grad()
    model.auxiliary_loss(bars(8), out).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.encoder.parameters())


@pytest.mark.parametrize("name", ["beta_vae", "beta_tcvae", "factor_vae"])
def test_save_load_round_trip(name: str, tmp_path) -> None:
    model = small_models()[name]
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    images = bars(4).flatten(0, 1)
    torch.testing.assert_close(loaded.representation(images), model.representation(images))


def test_gaussian_log_density_matches_torch() -> None:
    z, mu, logvar = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), ref)
