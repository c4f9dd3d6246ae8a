"""Baselines of the disentanglement literature: beta-VAE, beta-TCVAE and FactorVAE.

All three share one Gaussian encoder ``q(z|x) = N(mu(x), diag(exp(logvar(x))))``, a standard
normal prior ``p(z)`` and a Bernoulli decoder, built from :mod:`topovae.models.networks`
(``architecture="conv"``: the literature's 64x64 conv encoder/decoder; ``"mlp"``: the paper's MLPs).
They take sequences ``(B, S, C, H, W)`` like every model of the package and treat the ``B * S``
frames as independent images.

Loss reductions (the same as in the papers, so that beta and gamma mean what they mean there):
every term is **summed over pixels and over latent units** and **averaged over the images of the
batch** (nats per image). With that reduction the published dSprites settings are

* ``beta_vae`` (Higgins et al., 2017): ``recon_nll + beta * KL``; ``beta = 4`` on dSprites,
  ``beta = 1`` is the plain VAE;
* ``beta_tcvae`` (Chen et al., 2018): ``recon_nll + alpha * MI + beta * TC + gamma * DWKL`` with
  ``alpha = gamma = 1`` and ``beta = 6``. The three terms are Monte-Carlo estimates, on the sample
  ``z_i ~ q(z|x_i)`` of each image, of ``log q(z|x) - log q(z)`` (index-code mutual information),
  ``log q(z) - sum_d log q(z_d)`` (total correlation) and ``sum_d log q(z_d) - log p(z)``
  (dimension-wise KL); they add up *exactly* to the single-sample estimate
  ``log q(z|x) - log p(z)`` of the KL, so ``alpha = beta = gamma = 1`` is the VAE loss in
  expectation. The aggregate posterior ``q(z) = (1/N) sum_n q(z|x_n)`` over a dataset of
  ``N = dataset_size`` images is estimated from the minibatch of ``M`` images with

  - minibatch-weighted sampling (``estimator="mws"``):
    ``log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log(N M)``;
  - minibatch-stratified sampling (``estimator="mss"``): weights ``1/N`` for the image's own
    posterior, ``(N - M')/(N M')`` for one other image and ``1/M'`` for the remaining ``M' - 1``
    (``M' = M - 1``); every row of weights sums to one. The authors' code places these weights
    with a wrong stride (column 0 instead of the diagonal); this module uses the intended
    diagonal layout;
* ``factor_vae`` (Kim & Mnih, 2018): ``recon_nll + KL + gamma * TC`` with ``gamma = 35`` on
  dSprites (the paper uses 35-40). TC is estimated by the density-ratio trick with a discriminator
  ``D`` telling samples of ``q(z)`` from samples of ``prod_d q(z_d)`` (the same codes with every
  dimension permuted independently across the batch):
  ``TC ~ E[log D(z) / (1 - D(z))] = E[logit_real - logit_fake]`` for a 2-logit discriminator, or
  ``E[logit]`` for a 1-logit one. The discriminator is the paper's MLP (6 hidden layers of 1000
  units, leaky ReLU 0.2), trained by its own optimiser on :meth:`FactorVAE.auxiliary_loss`.
  The VAE's gradient does not reach the discriminator (its weights enter ``loss`` detached), and
  the discriminator's loss uses detached codes, so the two optimisers never fight over a weight.

  Which codes are permuted (``permute_from``): the paper's Algorithm 1 draws a *second* batch to
  produce the permuted samples so that the real and the permuted codes are independent.
  ``"second_half"`` (default) does that inside one batch: the first half of the images gives the
  "real" codes, the permuted codes of the second half the "fake" ones. ``"same"`` permutes the
  codes of the whole batch (as many re-implementations do), which uses all images on both sides.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import nn

from topovae.config import Config
from topovae.models.base import GenerativeModel, ModelOutput, check_sequences, register_model
from topovae.models.networks import bernoulli_nll, build_decoder, build_encoder
from topovae.models.noise import standard_normal_like

__all__ = [
    "BetaVAEConfig", "BetaVAE", "BetaTCVAEConfig", "BetaTCVAE", "FactorVAEConfig", "FactorVAE",
    "gaussian_log_density", "gaussian_kl", "log_importance_weights_mss", "tc_decomposition",
    "permute_dims", "factor_discriminator",
]

LOG_2PI = math.log(2.0 * math.pi)


# -- shared maths -------------------------------------------------------------------------------
def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise ``log N(z; mu, exp(logvar))`` (broadcasting; no reduction)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic ``KL(N(mu, exp(logvar)) || N(0, 1))`` per row, summed over the last dimension."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar).sum(-1)


def log_importance_weights_mss(batch_size: int, dataset_size: int,
                               device: torch.device | None = None,
                               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(M, M)`` log-weights of minibatch-stratified sampling (Chen et al., 2018, App. C.2).

    Row ``i`` weights the posteriors ``q(z_i | x_j)`` of the batch: ``1/N`` on ``j = i``,
    ``(N - M')/(N M')`` on ``j = i + 1`` (cyclically) and ``1/M'`` elsewhere, ``M' = M - 1``.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for the MSS estimator, got {batch_size}")
    if dataset_size < batch_size:
        raise ValueError(f"dataset_size ({dataset_size}) must be at least the batch size "
                         f"({batch_size}) for the MSS estimator")
    n, m = float(dataset_size), float(batch_size - 1)
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    weights[rows, rows] = 1.0 / n
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    return weights.log().to(device=device, dtype=dtype)


def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                     estimator: Literal["mws", "mss"] = "mws") -> dict[str, torch.Tensor]:
    """Per-sample MI, TC and dimension-wise KL estimates of beta-TCVAE.

    ``z``, ``mu`` and ``logvar`` are ``(M, d)``: one sample of ``q(z|x_i)`` and its parameters for
    each image of the batch. Returns ``(M,)`` tensors ``mi``, ``tc``, ``dwkl`` and the ingredients
    ``log_qz_given_x``, ``log_qz``, ``log_prod_qzd``, ``log_pz``; ``mi + tc + dwkl`` equals
    ``log_qz_given_x - log_pz`` exactly.
    """
    if z.dim() != 2 or z.shape != mu.shape or z.shape != logvar.shape:
        raise ValueError(f"z, mu and logvar must share one (M, d) shape, got {tuple(z.shape)}, "
                         f"{tuple(mu.shape)}, {tuple(logvar.shape)}")
    if estimator not in ("mws", "mss"):
        raise ValueError(f"estimator must be 'mws' or 'mss', got {estimator!r}")
    batch = z.shape[0]
    if dataset_size < batch:
        raise ValueError(f"dataset_size ({dataset_size}) must be at least the number of images "
                         f"in the batch ({batch})")
    # pairwise[i, j, k] = log q(z_ik | x_j)
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    if estimator == "mws":
        log_norm = math.log(batch * dataset_size)
        log_qz = torch.logsumexp(pairwise.sum(2), dim=1) - log_norm
        log_prod_qzd = (torch.logsumexp(pairwise, dim=1) - log_norm).sum(1)
    else:
        log_w = log_importance_weights_mss(batch, dataset_size, z.device, z.dtype)
        log_qz = torch.logsumexp(log_w + pairwise.sum(2), dim=1)
        log_prod_qzd = torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(1)
    log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return {
        "mi": log_qz_given_x - log_qz,
        "tc": log_qz - log_prod_qzd,
        "dwkl": log_prod_qzd - log_pz,
        "log_qz_given_x": log_qz_given_x,
        "log_qz": log_qz,
        "log_prod_qzd": log_prod_qzd,
        "log_pz": log_pz,
    }


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute every column of ``z`` (``(M, d)``) independently across the batch.

    The result has the same marginal distribution in each dimension as ``z`` but the dependence
    between dimensions is destroyed: a sample of ``prod_d q(z_d)`` (Kim & Mnih, 2018, Alg. 1).
    """
    if z.dim() != 2:
        raise ValueError(f"z must be shaped (M, d), got {tuple(z.shape)}")
    keys = torch.rand(z.shape, generator=generator, device=z.device if generator is None
                      else generator.device)
    order = torch.argsort(keys.to(z.device), dim=0)
    return torch.gather(z, 0, order)


def factor_discriminator(latent_dim: int, hidden_layers: int = 6, hidden_units: int = 1000,
                         n_logits: int = 2) -> nn.Sequential:
    """FactorVAE's discriminator: an MLP with ``hidden_layers`` leaky-ReLU (0.2) layers."""
    if hidden_layers < 1 or hidden_units < 1:
        raise ValueError("hidden_layers and hidden_units must be positive")
    if n_logits not in (1, 2):
        raise ValueError(f"n_logits must be 1 or 2, got {n_logits}")
    layers: list[nn.Module] = []
    width = latent_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_units), nn.LeakyReLU(0.2)]
        width = hidden_units
    layers.append(nn.Linear(width, n_logits))
    return nn.Sequential(*layers)


# -- configs ------------------------------------------------------------------------------------
@dataclasses.dataclass
class _GaussianVAEConfig(Config):
    input_shape: tuple[int, int, int] = (1, 64, 64)
    architecture: Literal["conv", "mlp"] = "conv"
    latent_dim: int = 10

    def validate(self) -> None:
        if len(self.input_shape) != 3 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes, "
                             f"got {self.input_shape}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")


@dataclasses.dataclass
class BetaVAEConfig(_GaussianVAEConfig):
    """beta-VAE: ``beta`` multiplies the KL (``1`` = plain VAE, ``4`` = dSprites setting)."""

    beta: float = 4.0

    def validate(self) -> None:
        super().validate()
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")


@dataclasses.dataclass
class BetaTCVAEConfig(_GaussianVAEConfig):
    """beta-TCVAE: weights of MI (``alpha``), TC (``beta``) and dimension-wise KL (``gamma``)."""

    alpha: float = 1.0
    beta: float = 6.0
    gamma: float = 1.0
    estimator: Literal["mws", "mss"] = "mws"
    dataset_size: int = 737280  # dSprites

    def validate(self) -> None:
        super().validate()
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.dataset_size < 2:
            raise ValueError(f"dataset_size must be at least 2, got {self.dataset_size}")


@dataclasses.dataclass
class FactorVAEConfig(_GaussianVAEConfig):
    """FactorVAE: ``gamma`` multiplies the discriminator's TC estimate."""

    gamma: float = 35.0
    discriminator_layers: int = 6
    discriminator_units: int = 1000
    discriminator_logits: int = 2
    permute_from: Literal["second_half", "same"] = "second_half"

    def validate(self) -> None:
        super().validate()
        if self.gamma < 0:
            raise ValueError(f"gamma must be non-negative, got {self.gamma}")
        if self.discriminator_layers < 1 or self.discriminator_units < 1:
            raise ValueError("discriminator_layers and discriminator_units must be positive")
        if self.discriminator_logits not in (1, 2):
            raise ValueError(f"discriminator_logits must be 1 or 2, "
                             f"got {self.discriminator_logits}")


# -- models -------------------------------------------------------------------------------------
class _GaussianVAE(GenerativeModel):
    """Encoder/decoder plumbing shared by the baselines; subclasses define :meth:`_regulariser`."""

    def __init__(self, config: _GaussianVAEConfig) -> None:
        super().__init__(config)
        shape = tuple(config.input_shape)
        self.encoder = build_encoder(config.architecture, shape, config.latent_dim)
        self.decoder = build_decoder(config.architecture, shape, config.latent_dim)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance ``(N, d)`` of images ``(N, C, H, W)``."""
        # statistics and logits in the images' dtype: float32 densities under bfloat16 autocast
        stats = self.encoder(images).to(images.dtype)
        mu, logvar = stats.chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(N, C, H, W)`` of codes ``(N, d)``."""
        return self.decoder(z).to(z.dtype)

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``(N, d)`` of single images ``(N, C, H, W)``."""
        if images.dim() != 4 or tuple(images.shape[1:]) != tuple(self.config.input_shape):
            shape = ", ".join(map(str, self.config.input_shape))
            raise ValueError(f"images must be shaped (N, {shape}), got {tuple(images.shape)}")
        return self.encode(images)[0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` of pixel probabilities decoded from prior samples."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator,
                        device=device if generator is None else generator.device).to(device)
        return torch.sigmoid(self.decode(z))

    def _regulariser(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     kl: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_sequences(x, tuple(self.config.input_shape))
        batch, steps = x.shape[:2]
        images = x.flatten(0, 1)
        mu, logvar = self.encode(images)
        z = mu + torch.exp(0.5 * logvar) * standard_normal_like(mu)
        logits = self.decode(z)
        recon = bernoulli_nll(logits, images)
        kl = gaussian_kl(mu, logvar)
        regulariser, terms = self._regulariser(z, mu, logvar, kl)
        loss = (recon + regulariser).mean()
        terms = {"recon_nll": recon.mean(), "kl": kl.mean(), **terms}
        return ModelOutput(loss=loss, terms=terms, logits=logits.view_as(x),
                           codes=mu.view(batch, steps, -1), extras={"z": z})


@register_model("beta_vae")
class BetaVAE(_GaussianVAE):
    """beta-VAE (Higgins et al., 2017): ``recon_nll + beta * KL`` per image."""

    config_class = BetaVAEConfig

    def _regulariser(self, z, mu, logvar, kl):
        return self.config.beta * kl, {}


@register_model("beta_tcvae")
class BetaTCVAE(_GaussianVAE):
    """beta-TCVAE (Chen et al., 2018): ``recon_nll + alpha MI + beta TC + gamma DWKL`` per image."""

    config_class = BetaTCVAEConfig

    def _regulariser(self, z, mu, logvar, kl):
        cfg = self.config
        if z.shape[0] < 2:
            raise ValueError("x must hold at least 2 images: beta-TCVAE estimates q(z) from the "
                             "minibatch")
        parts = tc_decomposition(z, mu, logvar, cfg.dataset_size, cfg.estimator)
        reg = cfg.alpha * parts["mi"] + cfg.beta * parts["tc"] + cfg.gamma * parts["dwkl"]
        return reg, {"mi": parts["mi"].mean(), "tc": parts["tc"].mean(),
                     "dwkl": parts["dwkl"].mean()}


@register_model("factor_vae")
class FactorVAE(_GaussianVAE):
    """FactorVAE (Kim & Mnih, 2018): ``recon_nll + KL + gamma * TC`` with a discriminator TC."""

    config_class = FactorVAEConfig

    def __init__(self, config: FactorVAEConfig) -> None:
        super().__init__(config)
        self.discriminator = factor_discriminator(
            config.latent_dim, config.discriminator_layers, config.discriminator_units,
            config.discriminator_logits)

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def log_density_ratio(self, z: torch.Tensor,
                          detach_discriminator: bool = False) -> torch.Tensor:
        """``log D(z) / (1 - D(z))`` per row of ``z`` (``(M, d)``): the TC integrand."""
        if detach_discriminator:
            params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
            logits = torch.func.functional_call(self.discriminator, params, (z,))
        else:
            logits = self.discriminator(z)
        if self.config.discriminator_logits == 2:
            return logits[:, 0] - logits[:, 1]
        return logits[:, 0]

    def tc_estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Density-ratio estimate of the total correlation of the codes ``z`` (``(M, d)``)."""
        return self.log_density_ratio(z).mean()

    def discriminator_loss(self, z_real: torch.Tensor, z_permuted: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the discriminator: ``z_real`` from ``q(z)`` (class "real", index 0
        of a 2-logit output, target 1 of a 1-logit one), ``z_permuted`` from ``prod_d q(z_d)``."""
        ratio_real = self.log_density_ratio(z_real)
        ratio_fake = self.log_density_ratio(z_permuted)
        bce = nn.functional.binary_cross_entropy_with_logits
        # For 2 logits, softmax cross-entropy equals the BCE of their difference.
        return 0.5 * (bce(ratio_real, torch.ones_like(ratio_real))
                      + bce(ratio_fake, torch.zeros_like(ratio_fake)))

    def _regulariser(self, z, mu, logvar, kl):
        ratio = self.log_density_ratio(z, detach_discriminator=True)
        return kl + self.config.gamma * ratio, {"tc_estimate": ratio.mean().detach()}

    def auxiliary_loss(self, x: torch.Tensor, output: ModelOutput) -> torch.Tensor:
        """Discriminator loss on the (detached) codes sampled in the forward pass of ``x``.

        Also stores it as ``output.terms["discriminator_loss"]`` for logging.
        """
        z = output.extras.get("z")
        if z is None:
            raise ValueError("output must come from FactorVAE.forward (it holds no sampled codes)")
        z = z.detach()
        if self.config.permute_from == "second_half":
            half = z.shape[0] // 2
            if half < 1:
                raise ValueError("x must hold at least 2 images when permute_from='second_half'")
            z_real, z_permuted = z[:half], permute_dims(z[half:2 * half])
        else:
            z_real, z_permuted = z, permute_dims(z)
        loss = self.discriminator_loss(z_real, z_permuted)
        output.terms["discriminator_loss"] = loss.detach()
        return loss
