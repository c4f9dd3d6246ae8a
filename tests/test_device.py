"""The model and the measurements on ``$TOPOVAE_TEST_DEVICE`` (default ``cpu``) agree with the CPU.

``scripts/gpu_check.sh`` runs this file with ``TOPOVAE_TEST_DEVICE=cuda`` on a machine with an
NVIDIA GPU; on the CPU the same assertions check the device plumbing (``.to(device)``, tensors
created on the right device) against a second copy of the model.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from topovae.metrics import equivariance_error, roll_prediction
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.topography import Topography

DEVICE = torch.device(os.environ.get("TOPOVAE_TEST_DEVICE", "cpu"))

if DEVICE.type == "cuda" and not torch.cuda.is_available():  # pragma: no cover
    pytest.skip("TOPOVAE_TEST_DEVICE=cuda but CUDA is not available", allow_module_level=True)


def _pair() -> tuple[TVAE, TVAE, torch.Tensor]:
    torch.manual_seed(0)
    cpu = TVAE(TVAEConfig(input_shape=(3, 12, 12), n_caps=3, cap_dim=6, seq_len=6,
                          coherence="shifting", time_window=4, capsule_window=3)).eval()
    other = copy.deepcopy(cpu).to(DEVICE)
    x = torch.rand(4, 6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    return cpu, other, x


def test_topography_on_device_matches_cpu() -> None:
    topo = Topography.capsules(4, 8, 3, 6, "shifting", 5)
    u2 = torch.rand(3, 6, 32, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(topo(u2.to(DEVICE)).cpu(), topo(u2), atol=1e-5)


def test_codes_decodes_and_metrics_on_device_match_cpu() -> None:
    cpu, other, x = _pair()
    with torch.no_grad():
        codes = cpu.latent_codes(x)
        codes_dev = other.latent_codes(x.to(DEVICE))
        assert codes_dev.device.type == DEVICE.type
        assert torch.allclose(codes_dev.cpu(), codes, rtol=1e-4, atol=1e-4)
        assert torch.allclose(other.decode(codes_dev).cpu(), cpu.decode(codes), atol=1e-3)
        assert float(equivariance_error(codes_dev)) == pytest.approx(
            float(equivariance_error(codes)), rel=1e-4)
        assert roll_prediction(other, x.to(DEVICE)).nll == pytest.approx(
            roll_prediction(cpu, x).nll, rel=1e-4)


def test_likelihood_and_samples_on_device() -> None:
    _, other, x = _pair()
    ll = other.log_likelihood(x.to(DEVICE), n_samples=4)
    assert ll.device.type == DEVICE.type and ll.shape == (4,) and torch.isfinite(ll).all()
    samples = other.sample(2)
    assert samples.device.type == DEVICE.type and samples.shape == (2, 6, 3, 12, 12)


def test_training_on_device_lowers_the_loss_in_both_precisions() -> None:
    for autocast in (False, True):
        _, model, x = _pair()
        model.train()
        x = x.to(DEVICE)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(30):
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(x)
            assert out.loss.dtype == torch.float32
            optimiser.zero_grad()
            out.loss.backward()
            optimiser.step()
            losses.append(float(out.loss.detach()))
        assert all(map(torch.isfinite, map(torch.tensor, losses)))
        assert sum(losses[-5:]) < sum(losses[:5]), (autocast, losses)
