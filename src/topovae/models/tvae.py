"""The Topographic VAE (Keller & Welling, 2021) and its ablations as one configurable model.

Generative model per sequence ``x_1..x_S``: independent standard-normal ``z`` and ``u`` of size
``d = n_caps * cap_dim`` per frame, ``v = W (u ∘ u)`` with the fixed topography ``W``
(:class:`topovae.topography.Topography`, which may couple neighbouring frames),
``t = (z + mu) / sqrt(v + eps)`` and a Bernoulli decoder ``p(x_s | t_s)``. Inference uses two
amortised Gaussian encoders ``q(z|x_s)`` and ``q(u|x_s)`` applied frame by frame. The loss per
image is ``-log p(x_s|t_s) + beta * (KL_z + KL_u)`` averaged over the ``B * S`` images.

Every model of the paper's comparison is a config of :class:`TVAE`:

* plain VAE: ``topographic=False`` (``t = z``, no ``u``, no ``mu``);
* TVAE L=0: ``coherence="none", time_window=0`` (capsule rings, no temporal coupling);
* BubbleVAE: ``coherence="stationary"``;
* TVAE: ``coherence="shifting"`` (the default, MNIST figure setting L=13, K=3);
* the 2-D topographic map: ``topography="torus"`` (an ``n_caps x cap_dim`` torus, ``K x K``).

For the MLP architecture the first layers of the two encoders (the largest matrices of the model)
run as one matrix multiply reading the image once; this is the same function as two separate
encoders, only faster.

Kept as one module (about 440 lines): the generative model, the loss and both likelihood
estimators use the same few tensors (z, u, v, t); split, the model's equations would be scattered.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from topovae.config import Config
from topovae.models.base import GenerativeModel, ModelOutput, check_sequences, register_model
from topovae.models.mixed_precision import Linear
from topovae.models.networks import build_decoder, build_encoder
from topovae.models.noise import standard_normal_like
from topovae.topography import Topography

__all__ = ["TVAEConfig", "TVAE", "Posterior"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass
class TVAEConfig(Config):
    """Hyper-parameters of :class:`TVAE` (names follow the paper; see the module docstring).

    ``n_caps x cap_dim`` is the latent size ``d`` of one frame. For ``topography="capsules"`` the
    latent is ``n_caps`` rings of ``cap_dim`` units coupled over the ``seq_len`` frames with
    ``coherence``, ``time_window`` (L) and ``capsule_window`` (K, odd). For ``"ring"`` all ``d``
    units form one ring with window K; for ``"torus"`` they form an ``n_caps x cap_dim`` torus
    with a ``K x K`` neighbourhood; neither couples frames (``time_window`` must be 0).
    ``beta`` weighs the KL terms; ``mu_init``/``learn_mu`` set the offset ``mu``.
    """

    input_shape: tuple[int, int, int] = (3, 28, 28)
    architecture: Literal["mlp", "conv"] = "mlp"
    topography: Literal["capsules", "ring", "torus"] = "capsules"
    n_caps: int = 18
    cap_dim: int = 18
    seq_len: int = 18
    coherence: Literal["none", "stationary", "shifting"] = "shifting"
    time_window: int = 13
    capsule_window: int = 3
    topographic: bool = True
    mu_init: float = 30.0
    learn_mu: bool = True
    eps: float = 1e-6
    beta: float = 1.0

    @property
    def latent_dim(self) -> int:
        return self.n_caps * self.cap_dim

    def validate(self) -> None:
        if any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must have positive sizes, got {self.input_shape}")
        for name in ("n_caps", "cap_dim", "seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")
        if not math.isfinite(self.mu_init):
            raise ValueError(f"mu_init must be finite, got {self.mu_init}")
        if not self.topographic:
            return
        k = self.capsule_window
        if k <= 0 or k % 2 == 0:
            raise ValueError(f"capsule_window must be a positive odd integer, got {k}")
        if not 0 <= self.time_window <= self.seq_len:
            raise ValueError(
                f"time_window must be between 0 and seq_len={self.seq_len}, got {self.time_window}"
            )
        if self.topography == "capsules":
            if k > self.cap_dim:
                raise ValueError(f"capsule_window={k} is larger than cap_dim={self.cap_dim}")
            if self.coherence == "none" and self.time_window != 0:
                raise ValueError(
                    f"time_window={self.time_window} needs coherence 'stationary' or 'shifting'; "
                    "coherence 'none' requires time_window=0"
                )
        else:
            if self.time_window != 0:
                raise ValueError(
                    f"time_window must be 0 for topography={self.topography!r} (it couples the "
                    f"latents of one frame only), got {self.time_window}"
                )
            limit = self.latent_dim if self.topography == "ring" else min(self.n_caps, self.cap_dim)
            if k > limit:
                raise ValueError(
                    f"capsule_window={k} is larger than the {self.topography} allows ({limit})"
                )


@dataclasses.dataclass
class Posterior:
    """Gaussian posteriors of a batch of sequences, each ``(B, S, d)``.

    ``u_mean``/``u_logvar`` are ``None`` for the plain VAE (``topographic=False``).
    """

    z_mean: torch.Tensor
    z_logvar: torch.Tensor
    u_mean: torch.Tensor | None
    u_logvar: torch.Tensor | None


def build_topography(config: TVAEConfig, seq_len: int | None = None) -> Topography:
    """The coupling of ``config``; ``seq_len=1`` gives the single-frame version (no time)."""
    k = config.capsule_window
    if config.topography == "ring":
        return Topography.ring(config.latent_dim, k)
    if config.topography == "torus":
        return Topography.torus(config.n_caps, config.cap_dim, k)
    if seq_len == 1:
        return Topography.capsules(config.n_caps, config.cap_dim, k, 1, "none", 0)
    return Topography.capsules(config.n_caps, config.cap_dim, k, config.seq_len,
                               config.coherence, config.time_window)


def _root_mean_square(mean: torch.Tensor | None, logvar: torch.Tensor | None
                      ) -> torch.Tensor | None:
    """``sqrt(E[u²])`` of a Gaussian, so that squaring it inside the topography gives ``E[u²]``."""
    if mean is None or logvar is None:
        return None
    return torch.sqrt(mean * mean + torch.exp(logvar))


def _gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Sum of KL(N(mean, exp(logvar)) || N(0, 1)) over all elements."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum()


def _std_normal_logpdf_sum(x: torch.Tensor, dims: int) -> torch.Tensor:
    """log N(x; 0, 1) summed over the last ``dims`` dimensions."""
    return (-0.5 * (x.square() + _LOG_2PI)).flatten(-dims).sum(-1)


def _gaussian_logpdf_sum(noise: torch.Tensor, logvar: torch.Tensor, dims: int) -> torch.Tensor:
    """log N(mean + std * noise; mean, std²) summed over the last ``dims`` dims."""
    return (-0.5 * (noise.square() + logvar + _LOG_2PI)).flatten(-dims).sum(-1)


def _bernoulli_nll_sum(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x | logits)`` of a Bernoulli decoder summed over the last dim (``x`` broadcast).

    The binary cross-entropy ``softplus(l) - x l`` of every pixel, summed as
    ``sum softplus(l) - x . l``: the same value as ``binary_cross_entropy_with_logits``
    (to float32 rounding of the sums) in two passes over the logits instead of five, the
    second a dot product that writes nothing.
    """
    return F.softplus(logits).sum(-1) - torch.linalg.vecdot(logits, x)


def _sample_log_ratio(mean: torch.Tensor, std: torch.Tensor, logvar_sum: torch.Tensor,
                      noise: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = mean + std * noise`` and ``log N(y; 0, 1) - log N(y; mean, std²)`` summed over the
    last ``dims`` dims, given ``logvar_sum``, the log-variances summed over those dims.

    The two log-densities' ``log 2 pi`` terms cancel, leaving
    ``(|noise|² - |y|² + sum logvar) / 2``: three passes over the samples instead of ten (this
    is the importance sampler's inner loop).
    """
    y = torch.addcmul(mean, std, noise)
    flat_noise, flat_y = noise.flatten(-dims), y.flatten(-dims)
    ratio = 0.5 * (torch.linalg.vecdot(flat_noise, flat_noise) - torch.linalg.vecdot(flat_y, flat_y)
                   + logvar_sum)
    return y, ratio


@register_model("tvae")
class TVAE(GenerativeModel):
    """Topographic VAE; see the module docstring. Inputs are ``(B, S, C, H, W)`` in [0, 1]."""

    config_class = TVAEConfig

    def __init__(self, config: TVAEConfig) -> None:
        super().__init__(config)
        cfg = config
        d = cfg.latent_dim
        self.latent_dim = d
        self.fused = cfg.architecture == "mlp"
        z_encoder = build_encoder(cfg.architecture, cfg.input_shape, d)
        u_encoder = build_encoder(cfg.architecture, cfg.input_shape, d) if cfg.topographic else None
        if self.fused:
            # Layers 1 of both MLP encoders as one Linear (in -> 3d for z, then 3d for u); the
            # remaining layers (ReLU was layer 2) stay per encoder.
            first = [z_encoder[1]] + ([u_encoder[1]] if u_encoder is not None else [])
            self.encoder_input = Linear(first[0].in_features, sum(f.out_features for f in first))
            with torch.no_grad():
                self.encoder_input.weight.copy_(torch.cat([f.weight for f in first]))
                self.encoder_input.bias.copy_(torch.cat([f.bias for f in first]))
            self.hidden = first[0].out_features
            self.z_encoder = z_encoder[3:]
            self.u_encoder = u_encoder[3:] if u_encoder is not None else None
        else:
            self.z_encoder = z_encoder
            self.u_encoder = u_encoder
        self.decoder = build_decoder(cfg.architecture, cfg.input_shape, d)
        if cfg.topographic:
            self.mu = nn.Parameter(torch.tensor(float(cfg.mu_init)), requires_grad=cfg.learn_mu)
            self.topography = build_topography(cfg)
            self.frame_topography = build_topography(cfg, seq_len=1)
        else:
            self.mu = None
            self.topography = None
            self.frame_topography = None

    # -- input checks ------------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor, name: str = "x") -> None:
        check_sequences(x, self.config.input_shape, name)
        if x.shape[1] != self.config.seq_len:
            raise ValueError(
                f"{name} has {x.shape[1]} frames per sequence but the model was built for "
                f"seq_len={self.config.seq_len}"
            )

    # -- encoder -----------------------------------------------------------------------------
    def _encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames ``(N, C, H, W)`` -> ``(N, 2d)`` z-statistics and u-statistics (or None).

        The statistics come back in the dtype of ``frames``: under bfloat16 autocast the
        networks' matrix multiplies run in bfloat16, while sampling, the topography's
        ``sqrt(W u² + eps)`` and the log-densities stay in float32.
        """
        if self.fused:
            h = F.relu(self.encoder_input(frames.reshape(frames.shape[0], -1)), inplace=True)
            z_stats = self.z_encoder(h[:, : self.hidden])
            u_stats = self.u_encoder(h[:, self.hidden:]) if self.u_encoder is not None else None
        else:
            z_stats = self.z_encoder(frames)
            u_stats = self.u_encoder(frames) if self.u_encoder is not None else None
        return (z_stats.to(frames.dtype),
                u_stats.to(frames.dtype) if u_stats is not None else None)

    def encode(self, x: torch.Tensor) -> Posterior:
        """Posterior means and log-variances of ``z`` and ``u`` for ``x`` ``(B, S, C, H, W)``."""
        self._check_x(x)
        b, s = x.shape[:2]
        z_stats, u_stats = self._encode_frames(x.reshape(b * s, *x.shape[2:]))
        d = self.latent_dim
        z_stats = z_stats.view(b, s, 2 * d)
        if u_stats is None:
            return Posterior(z_stats[..., :d], z_stats[..., d:], None, None)
        u_stats = u_stats.view(b, s, 2 * d)
        return Posterior(z_stats[..., :d], z_stats[..., d:], u_stats[..., :d], u_stats[..., d:])

    # -- codes -------------------------------------------------------------------------------
    def _codes(self, z: torch.Tensor, u: torch.Tensor | None, topography: Topography | None
               ) -> torch.Tensor:
        if topography is None:
            t = z
        else:
            t = (z + self.mu) * torch.rsqrt(topography(u * u) + self.config.eps)
        return t.unflatten(-1, (self.config.n_caps, self.config.cap_dim))

    def codes_from(self, z: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``t = (z + mu) / sqrt(W(u∘u) + eps)`` shaped ``(..., S, n_caps, cap_dim)``.

        ``z`` and ``u`` are ``(..., S, d)`` (any leading dims, ``S = seq_len``). For the plain VAE
        ``t = z`` and ``u`` is ignored (may be None).
        """
        d, s = self.latent_dim, self.config.seq_len
        if not isinstance(z, torch.Tensor) or z.dim() < 2 or tuple(z.shape[-2:]) != (s, d):
            raise ValueError(f"z must be shaped (..., {s}, {d}), got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z)}")
        if self.topography is not None:
            if not isinstance(u, torch.Tensor) or u.shape != z.shape:
                raise ValueError(f"u must be a tensor shaped like z {tuple(z.shape)}, got "
                                 f"{tuple(u.shape) if isinstance(u, torch.Tensor) else u}")
        return self._codes(z, u, self.topography)

    def latent_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic code of ``x``: ``t = (E[z] + mu) / sqrt(W E[u∘u] + eps)`` under q.

        Shaped ``(B, S, n_caps, cap_dim)``; the temporal coupling of the model is applied, so
        frame ``s`` depends on the ``u`` of its neighbouring frames. ``v = W(u∘u)`` is linear in
        ``u∘u``, so its posterior mean uses ``E[u²] = u_mean² + exp(u_logvar)``. Plugging in
        ``u_mean`` alone would drop the posterior variance, which early in training (and for
        units the model does not use) is most of ``u²``: ``v`` would shrink towards 0 and ``t``
        grow far outside the range the decoder is trained on.
        """
        post = self.encode(x)
        return self._codes(post.z_mean, _root_mean_square(post.u_mean, post.u_logvar),
                           self.topography)

    def decode(self, t: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(..., C, H, W)`` for codes ``t`` ``(..., n_caps, cap_dim)``."""
        shape = (self.config.n_caps, self.config.cap_dim)
        if not isinstance(t, torch.Tensor) or t.dim() < 2 or tuple(t.shape[-2:]) != shape:
            raise ValueError(f"t must be shaped (..., {shape[0]}, {shape[1]}), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("t contains NaN or infinite values")
        return self._decode(t)

    def _decode(self, t: torch.Tensor) -> torch.Tensor:
        lead = t.shape[:-2]
        logits = self.decoder(t.reshape(-1, self.latent_dim))
        # float32 logits under bfloat16 autocast: the Bernoulli log-likelihood sums 2,352
        # pixels per image, beyond what bfloat16's 8-bit mantissa can add up exactly
        return logits.view(*lead, *self.config.input_shape).to(t.dtype)

    # -- training objective ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Loss (per-image mean), its terms, logits ``(B, S, C, H, W)`` and codes ``t``."""
        self._check_x(x)
        b, s = x.shape[:2]
        n_images = b * s
        d = self.latent_dim
        z_stats, u_stats = self._encode_frames(x.reshape(n_images, *x.shape[2:]))
        z_mean, z_logvar = z_stats[:, :d], z_stats[:, d:]
        z = z_mean + torch.exp(0.5 * z_logvar) * standard_normal_like(z_mean)
        kl_z = _gaussian_kl(z_mean, z_logvar) / n_images
        if u_stats is not None:
            u_mean, u_logvar = u_stats[:, :d], u_stats[:, d:]
            u = u_mean + torch.exp(0.5 * u_logvar) * standard_normal_like(u_mean)
            kl_u = _gaussian_kl(u_mean, u_logvar) / n_images
            t = self._codes(z.view(b, s, d), u.view(b, s, d), self.topography)
        else:
            kl_u = torch.zeros((), device=x.device, dtype=x.dtype)
            t = self._codes(z.view(b, s, d), None, None)
        logits = self._decode(t)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n_images
        kl = kl_z + kl_u
        loss = recon + self.config.beta * kl
        terms = {"recon_nll": recon, "kl_z": kl_z.detach(), "kl_u": kl_u.detach(), "kl": kl,
                 "elbo": -(recon + kl).detach()}
        if self.mu is not None:
            terms["mu"] = self.mu.detach()
        return ModelOutput(loss=loss, terms=terms, logits=logits, codes=t)

    # -- metrics and sampling ----------------------------------------------------------------
    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """Code ``(N, d)`` of single images ``(N, C, H, W)`` for the disentanglement metrics.

        Each image is treated as a sequence of length 1 that only sees its own frame: the code
        of :meth:`latent_codes` (``E[z]`` and ``E[u∘u]`` under the posterior) with the
        within-frame part of the coupling (the capsule window, or the ring/torus neighbourhood)
        and no temporal pooling. This is deterministic and does not depend on what else is in
        the batch.
        """
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"images must be shaped (N, C, H, W), got {got}")
        check_sequences(images.unsqueeze(1), self.config.input_shape, "images")
        z_stats, u_stats = self._encode_frames(images)
        d = self.latent_dim
        z = z_stats[:, None, :d]
        u = None
        if u_stats is not None:
            u = _root_mean_square(u_stats[:, None, :d], u_stats[:, None, d:])
        return self._codes(z, u, self.frame_topography).reshape(images.shape[0], d)

    def torus_grid(self) -> tuple[int, int] | None:
        """``(n_caps, cap_dim)`` when the units lie on a torus (the 2-D map), else ``None``."""
        cfg = self.config
        return (cfg.n_caps, cfg.cap_dim) if cfg.topography == "torus" else None

    @torch.no_grad()
    def sample(self, n_sequences: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixel probabilities ``(n, S, C, H, W)`` of sequences drawn from the prior."""
        if isinstance(n_sequences, bool) or not isinstance(n_sequences, int) or n_sequences <= 0:
            raise ValueError(f"n_sequences must be a positive integer, got {n_sequences!r}")
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        shape = (n_sequences, self.config.seq_len, self.latent_dim)
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        u = (torch.randn(shape, generator=generator, device=device, dtype=dtype)
             if self.topography is not None else None)
        return torch.sigmoid(self._decode(self._codes(z, u, self.topography)))

    @torch.no_grad()
    def log_importance_weights(
        self,
        x: torch.Tensor,
        n_samples: int = 10,
        generator: torch.Generator | None = None,
        max_images_per_chunk: int = 4096,
        per_frame: bool = False,
    ) -> torch.Tensor:
        """``log w`` ``(n_samples, B)`` for whole sequences, samples from ``q(z|x) q(u|x)``.

        ``log w = log p(x_{1:S}|t) + log p(z) + log p(u) - log q(z|x) - log q(u|x)`` with all
        frames' latents drawn jointly (``t`` of a frame depends on ``u`` of its neighbours).
        The encoder runs once; samples go through topography and decoder in chunks of at most
        ``max_images_per_chunk`` decoded images.

        ``per_frame=True`` returns the terms of each frame separately, ``(n_samples, B, S)``:
        ``log p(x_s|t_s) + log p(z_s) + log p(u_s) - log q(z_s|x_s) - log q(u_s|x_s)`` of the
        same joint draws (``t_s`` still uses the ``u`` of the neighbouring frames); summed over
        ``S`` they are the joint weights. This is what the original evaluation code scores.
        """
        self._check_x(x)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples <= 0:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        post = self.encode(x)
        b, s = x.shape[:2]
        per_sample = b * s
        chunk = max(1, max_images_per_chunk // per_sample)
        dims = 1 if per_frame else 2  # latent dims summed: (d,) per frame or (S, d)
        z_std = torch.exp(0.5 * post.z_logvar)
        z_logvar_sum = post.z_logvar.flatten(-dims).sum(-1)
        if post.u_logvar is not None:
            u_std = torch.exp(0.5 * post.u_logvar)
            u_logvar_sum = post.u_logvar.flatten(-dims).sum(-1)
        out = []
        for start in range(0, n_samples, chunk):
            k = min(chunk, n_samples - start)
            shape = (k, *post.z_mean.shape)
            noise_z = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            z, log_w = _sample_log_ratio(post.z_mean, z_std, z_logvar_sum, noise_z, dims)
            u = None
            if post.u_logvar is not None:
                noise_u = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
                u, log_ratio_u = _sample_log_ratio(post.u_mean, u_std, u_logvar_sum, noise_u, dims)
                log_w = log_w + log_ratio_u
            logits = self._decode(self._codes(z, u, self.topography))
            log_w -= _bernoulli_nll_sum(logits.flatten(4 - dims), x.flatten(3 - dims))
            out.append(log_w)
        return torch.cat(out)

    @torch.no_grad()
    def log_likelihood(
        self, x: torch.Tensor, n_samples: int = 10, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Importance-sampled ``log p(x_{1:S}) / S`` per sequence ``(B,)``, in nats per image.

        ``logsumexp(log w) - log(n_samples)`` over :meth:`log_importance_weights`: a stochastic
        lower bound of ``log p`` in expectation that tightens as ``n_samples`` grows (equal to
        the ELBO at one sample).
        """
        log_w = self.log_importance_weights(x, n_samples, generator)
        return (torch.logsumexp(log_w, 0) - math.log(n_samples)) / x.shape[1]
