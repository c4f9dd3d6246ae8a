"""TVAE: shapes, the exact code formula, equivariance of the coupling, the ablations, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from topovae.models import MODELS, build_model, load_model
from topovae.models.networks import mlp_encoder
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.topography import Topography

SMALL = dict(input_shape=(1, 6, 6), n_caps=2, cap_dim=5, seq_len=5, coherence="shifting",
             time_window=3, capsule_window=3, mu_init=2.0)


def small_model(**overrides) -> TVAE:
    torch.manual_seed(0)
    return TVAE(TVAEConfig(**{**SMALL, **overrides}))


def batch(b=3, s=5, shape=(1, 6, 6), seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, s, *shape, generator=g)


def test_registered_and_defaults_are_paper_mnist():
    assert MODELS.get("tvae") is TVAE
    cfg = TVAEConfig()
    assert (cfg.n_caps, cfg.cap_dim, cfg.seq_len, cfg.time_window, cfg.capsule_window) == (
        18, 18, 18, 13, 3)
    assert cfg.coherence == "shifting" and cfg.mu_init == 30.0 and cfg.input_shape == (3, 28, 28)


def test_forward_shapes_terms_and_loss_composition():
    model = small_model(beta=0.5)
    x = batch()
    torch.manual_seed(3)
    out = model(x)
    assert out.logits.shape == x.shape
    assert out.codes.shape == (3, 5, 2, 5)
    for key in ("recon_nll", "kl_z", "kl_u", "kl", "mu"):
        assert key in out.terms
    torch.testing.assert_close(out.loss, out.terms["recon_nll"] + 0.5 * out.terms["kl"])
    torch.testing.assert_close(out.terms["kl"], out.terms["kl_z"] + out.terms["kl_u"])
    # recon is the per-image Bernoulli NLL summed over pixels
    nll = F.binary_cross_entropy_with_logits(out.logits, x, reduction="none").sum((2, 3, 4))
    torch.testing.assert_close(out.terms["recon_nll"], nll.mean())
    out.loss.backward()
    assert model.mu.grad is not None and model.mu.grad.abs() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_kl_terms_match_closed_form():
    model = small_model()
    x = batch()
    post = model.encode(x)
    torch.manual_seed(0)
    out = model(x)
    for mean, logvar, key in ((post.z_mean, post.z_logvar, "kl_z"),
                              (post.u_mean, post.u_logvar, "kl_u")):
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(mean, torch.exp(0.5 * logvar)),
            torch.distributions.Normal(0.0, 1.0)).sum() / 15
        torch.testing.assert_close(out.terms[key], kl)


def test_fused_encoder_equals_two_separate_paper_encoders():
    model = small_model()
    d = 10
    x = batch()
    post = model.encode(x)
    for which, (mean, logvar) in enumerate(((post.z_mean, post.z_logvar),
                                            (post.u_mean, post.u_logvar))):
        enc = mlp_encoder((1, 6, 6), d).double()
        rows = slice(which * 3 * d, (which + 1) * 3 * d)
        trunk = model.z_encoder if which == 0 else model.u_encoder
        with torch.no_grad():
            enc[1].weight.copy_(model.encoder_input.weight[rows])
            enc[1].bias.copy_(model.encoder_input.bias[rows])
            for i in (0, 2):
                enc[3 + i].weight.copy_(trunk[i].weight)
                enc[3 + i].bias.copy_(trunk[i].bias)
        stats = enc(x.reshape(15, 1, 6, 6).double()).float().reshape(3, 5, 2 * d)
        torch.testing.assert_close(mean, stats[..., :d], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logvar, stats[..., d:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("coherence,time_window", [("shifting", 3), ("stationary", 2),
                                                   ("none", 0)])
def test_codes_follow_formula_with_dense_topography(coherence, time_window):
    model = small_model(coherence=coherence, time_window=time_window)
    z = torch.randn(4, 5, 10)
    u = torch.randn(4, 5, 10)
    w = Topography.capsules(2, 5, 3, 5, coherence, time_window).dense_matrix(torch.float32)
    v = ((u * u).reshape(4, 50) @ w.T).reshape(4, 5, 10)
    expected = (z + 2.0) / torch.sqrt(v + 1e-6)
    torch.testing.assert_close(model.codes_from(z, u), expected.reshape(4, 5, 2, 5))


def test_shifting_codes_are_equivariant_for_rolling_latents():
    """z and u that roll one unit per frame give t[:, s + k] == roll(t[:, s], k)."""
    model = small_model()
    z0, u0 = torch.randn(2, 2, 5), torch.randn(2, 2, 5)
    z = torch.stack([torch.roll(z0, s, -1) for s in range(5)], 1).reshape(2, 5, 10)
    u = torch.stack([torch.roll(u0, s, -1) for s in range(5)], 1).reshape(2, 5, 10)
    t = model.codes_from(z, u)
    for k in range(1, 5):
        torch.testing.assert_close(t[:, k], torch.roll(t[:, 0], shifts=k, dims=-1))


def test_plain_vae_is_t_equals_z():
    model = small_model(topographic=False)
    assert model.mu is None and model.u_encoder is None
    z = torch.randn(2, 5, 10)
    torch.testing.assert_close(model.codes_from(z), z.reshape(2, 5, 2, 5))
    out = model(batch())
    assert float(out.terms["kl_u"]) == 0.0 and "mu" not in out.terms
    post = model.encode(batch())
    torch.testing.assert_close(model.latent_codes(batch()), post.z_mean.reshape(3, 5, 2, 5))


def test_latent_codes_use_posterior_expectations():
    model = small_model()
    x = batch()
    post = model.encode(x)
    # t = (E[z] + mu) / sqrt(W E[u∘u] + eps), E[u²] = mean² + variance, written out with W
    w = model.topography.dense_matrix(torch.float32)
    expected_squares = (post.u_mean ** 2 + post.u_logvar.exp()).flatten(1)
    v = (expected_squares @ w.T).view_as(post.u_mean)
    expected = (post.z_mean + 2.0) / torch.sqrt(v + 1e-6)
    torch.testing.assert_close(model.latent_codes(x).flatten(-2), expected)
    torch.testing.assert_close(model.latent_codes(x), model.latent_codes(x))
    # the mean of v under q is what the sampled codes of training see: compare with Monte Carlo
    torch.manual_seed(0)
    u = post.u_mean + post.u_logvar.mul(0.5).exp() * torch.randn(4000, *post.u_mean.shape)
    v_mc = ((u * u).flatten(2) @ w.T).mean(0).view_as(post.u_mean)
    torch.testing.assert_close(v, v_mc, rtol=0.05, atol=0.05)


def test_representation_is_single_frame_code_and_batch_independent():
    model = small_model()
    images = batch(b=1, s=7, seed=4)[0]
    rep = model.representation(images)
    assert rep.shape == (7, 10)
    torch.testing.assert_close(model.representation(images[2:4]), rep[2:4])
    post = model.encode(images[:5].unsqueeze(0))
    frame_topo = Topography.capsules(2, 5, 3)
    v = frame_topo((post.u_mean ** 2 + post.u_logvar.exp())[0].unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(rep[:5], (post.z_mean[0] + 2.0) / torch.sqrt(v + 1e-6))


@pytest.mark.parametrize("overrides", [dict(topography="torus", n_caps=4, cap_dim=5,
                                            time_window=0, coherence="none"),
                                       dict(topography="ring", time_window=0, capsule_window=5)])
def test_ring_and_torus_models(overrides):
    model = small_model(**overrides)
    out = model(batch())
    assert out.codes.shape[-2:] == (model.config.n_caps, model.config.cap_dim)
    z, u = torch.randn(2, 5, model.latent_dim), torch.randn(2, 5, model.latent_dim)
    topo = model.topography
    w = topo.dense_matrix(torch.float32)
    expected = (z + 2.0) / torch.sqrt((u * u) @ w.T + 1e-6)
    torch.testing.assert_close(model.codes_from(z, u).flatten(-2), expected)


def test_decode_and_sample():
    model = small_model()
    t = torch.randn(4, 2, 5)
    assert model.decode(t).shape == (4, 1, 6, 6)
    assert model.decode(torch.randn(2, 3, 2, 5)).shape == (2, 3, 1, 6, 6)
    s1 = model.sample(3, generator=torch.Generator().manual_seed(5))
    s2 = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert s1.shape == (3, 5, 1, 6, 6)
    assert torch.equal(s1, s2) and bool(((s1 >= 0) & (s1 <= 1)).all())


def test_save_load_round_trip(tmp_path):
    model = small_model(learn_mu=False, mu_init=3.5)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, TVAE) and loaded.config == model.config
    x = batch()
    torch.testing.assert_close(loaded.latent_codes(x), model.latent_codes(x), rtol=0, atol=0)
    torch.manual_seed(7)
    a = model(x)
    torch.manual_seed(7)
    b = loaded(x)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)
    assert float(loaded.mu) == 3.5 and not loaded.mu.requires_grad


def test_conv_architecture_runs():
    model = small_model(architecture="conv", input_shape=(1, 16, 16), seq_len=2, time_window=2,
                        n_caps=2, cap_dim=3)
    out = model(batch(b=2, s=2, shape=(1, 16, 16)))
    assert out.logits.shape == (2, 2, 1, 16, 16) and torch.isfinite(out.loss)


def test_training_reduces_loss_on_tiny_problem():
    """Three binary patterns (one per sequence): the model must learn to reconstruct them."""
    model = small_model()
    x = (batch(s=1) > 0.5).float().expand(3, 5, 1, 6, 6).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    with torch.no_grad():
        first = float(model(x).loss)
    for _ in range(200):
        out = model(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        last = sum(float(model(x).loss) for _ in range(5)) / 5
    assert last < 0.5 * first and math.isfinite(last)


def test_build_model_by_name_with_overrides():
    model = build_model("tvae", {**SMALL, "input_shape": [1, 6, 6]})
    assert isinstance(model, TVAE) and model.config.input_shape == (1, 6, 6)


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "overrides,name",
    [
        (dict(capsule_window=2), "capsule_window"),
        (dict(capsule_window=7), "capsule_window"),
        (dict(time_window=6), "time_window"),
        (dict(coherence="none", time_window=3), "time_window"),
        (dict(topography="ring", time_window=3), "time_window"),
        (dict(topography="torus", time_window=0, capsule_window=5, n_caps=2), "capsule_window"),
        (dict(n_caps=0), "n_caps"),
        (dict(eps=0.0), "eps"),
        (dict(coherence="rolling"), "coherence"),
        (dict(input_shape=(1, 6)), "input_shape"),
    ],
)
def test_bad_config(overrides, name):
    with pytest.raises(ValueError, match=name):
        TVAEConfig(**{**SMALL, **overrides})


def test_bad_inputs_name_the_argument():
    model = small_model()
    with pytest.raises(ValueError, match="x"):
        model(torch.rand(3, 4, 1, 6, 6))  # wrong seq_len
    with pytest.raises(ValueError, match="x"):
        model(torch.rand(3, 5, 6, 6))
    bad = batch()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x"):
        model(bad)
    bad[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="x"):
        model.latent_codes(bad)
    with pytest.raises(ValueError, match="t"):
        model.decode(torch.randn(4, 5, 2))  # n_caps/cap_dim swapped
    with pytest.raises(ValueError, match="z"):
        model.codes_from(torch.randn(2, 5, 9), torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match="u"):
        model.codes_from(torch.randn(2, 5, 10), None)
    with pytest.raises(ValueError, match="images"):
        model.representation(torch.rand(2, 1, 6, 7))
    with pytest.raises(ValueError, match="n_sequences"):
        model.sample(0)
    with pytest.raises(ValueError, match="n_samples"):
        model.log_likelihood(batch(), n_samples=0)
