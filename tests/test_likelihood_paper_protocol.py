"""The original code's per-frame log-likelihood: a slow loop over samples and frames, the plain
VAE case (= per-image importance sampling + log K), and its relation to the joint weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.nn import functional as F

from topovae.metrics.likelihood import (
    importance_sampled_log_likelihood,
    log_likelihood_paper_protocol,
)
from topovae.models.tvae import TVAE, TVAEConfig

SHIFTING = dict(input_shape=(1, 4, 4), n_caps=2, cap_dim=3, seq_len=3, coherence="shifting",
                time_window=3, capsule_window=3, mu_init=1.0)
VAE = dict(input_shape=(1, 4, 4), n_caps=2, cap_dim=3, seq_len=3, topographic=False,
           coherence="none", time_window=0, capsule_window=1)


def make(seed: int = 0, **config) -> TVAE:
    torch.manual_seed(seed)
    return TVAE(TVAEConfig(**config)).double().eval()


def sequences(b: int = 4, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, 1, 4, 4, generator=g, dtype=torch.float64) > 0.5).double()


@torch.no_grad()
def slow_per_frame(model: TVAE, x: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """``(B, S)``: for each image, logsumexp over samples of its own frame's terms, the latents
    of the whole sequence drawn jointly (same random numbers as the model: z noise, then u)."""
    post = model.encode(x)
    gen = torch.Generator().manual_seed(seed)
    shape = (n_samples, *post.z_mean.shape)
    noise_z = torch.randn(shape, generator=gen, dtype=x.dtype)
    noise_u = torch.randn(shape, generator=gen, dtype=x.dtype)
    b, s = x.shape[:2]
    out = torch.empty(b, s, dtype=x.dtype)
    prior = Normal(0.0, 1.0)
    for i in range(b):
        for frame in range(s):
            terms = []
            for k in range(n_samples):
                z_std, u_std = post.z_logvar[i].mul(0.5).exp(), post.u_logvar[i].mul(0.5).exp()
                z = post.z_mean[i] + z_std * noise_z[k, i]  # (S, d): every frame of the draw
                u = post.u_mean[i] + u_std * noise_u[k, i]
                t = model.codes_from(z, u)  # (S, n_caps, cap_dim), t_s uses neighbours' u
                logits = model.decode(t[frame])
                log_px = -F.binary_cross_entropy_with_logits(logits, x[i, frame],
                                                             reduction="sum")
                log_pz = prior.log_prob(z[frame]).sum()
                log_pu = prior.log_prob(u[frame]).sum()
                log_qz = Normal(post.z_mean[i, frame], z_std[frame]).log_prob(z[frame]).sum()
                log_qu = Normal(post.u_mean[i, frame], u_std[frame]).log_prob(u[frame]).sum()
                terms.append(log_px + log_pz + log_pu - log_qz - log_qu)
            out[i, frame] = torch.logsumexp(torch.stack(terms), 0)  # no - log K
    return out


def test_equals_a_slow_loop_over_frames_and_samples() -> None:
    model = make(**SHIFTING)
    x = sequences()
    fast = log_likelihood_paper_protocol(model, x, n_samples=5,
                                         generator=torch.Generator().manual_seed(7))
    slow = slow_per_frame(model, x, 5, seed=7)
    torch.testing.assert_close(fast.per_sequence, slow.mean(1))
    assert fast.nats_per_image == pytest.approx(float(slow.mean()), abs=1e-9)
    assert (fast.n_samples, fast.n_images) == (5, 12)


@torch.no_grad()
def test_per_frame_weights_sum_to_the_joint_weights() -> None:
    model = make(**SHIFTING)
    x = sequences()
    per_frame = model.log_importance_weights(x, 6, torch.Generator().manual_seed(1),
                                             per_frame=True)
    joint = model.log_importance_weights(x, 6, torch.Generator().manual_seed(1))
    assert per_frame.shape == (6, 4, 3)
    torch.testing.assert_close(per_frame.sum(-1), joint)


def test_plain_vae_is_per_image_importance_sampling_plus_log_k() -> None:
    """Frames of the VAE are independent: the per-frame score is an ordinary per-image IS
    estimate (a sequence of one frame, same weights, same random numbers) plus log K."""
    model = make(**VAE)
    single = TVAE(TVAEConfig(**{**VAE, "seq_len": 1})).double().eval()
    single.load_state_dict(model.state_dict())
    x = sequences(b=5)
    k = 10
    paper = log_likelihood_paper_protocol(model, x, n_samples=k,
                                          generator=torch.Generator().manual_seed(3))
    images = x.reshape(15, 1, 1, 4, 4)
    ordinary = importance_sampled_log_likelihood(single, images, n_samples=k,
                                                 generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(paper.per_sequence,
                               (ordinary.per_sequence.view(5, 3) + math.log(k)).mean(1))
    assert paper.nats_per_image == pytest.approx(ordinary.nats_per_image + math.log(k))


def test_batching_mode_and_errors() -> None:
    model = make(**SHIFTING)
    model.train()
    x = sequences(b=5)
    whole = log_likelihood_paper_protocol(model, x, n_samples=4,
                                          generator=torch.Generator().manual_seed(0))
    assert model.training  # mode restored
    assert whole.per_sequence.shape == (5,)
    with pytest.raises(ValueError, match="n_samples"):
        log_likelihood_paper_protocol(model, x, n_samples=0)
    with pytest.raises(ValueError, match="batch_size"):
        log_likelihood_paper_protocol(model, x, batch_size=0)
    with pytest.raises(ValueError, match=r"\(B, S, C, H, W\)"):
        log_likelihood_paper_protocol(model, x[0])
    with pytest.raises(ValueError, match="per-frame"):
        log_likelihood_paper_protocol(torch.nn.Linear(2, 2), x)  # type: ignore[arg-type]
