"""``topovae evaluate`` writes the original code's estimators beside ours, with controls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from topovae.data.dsprites import SUBGRID


def test_offsets_per_transformation_use_subgrid_indices_and_have_a_random_control() -> None:
    from topovae.measure.equivariance import offsets_paper_protocol as _offsets_paper_protocol

    n, s = 400, 15
    g = torch.Generator().manual_seed(0)
    first = torch.randn(n, 15, 15, generator=g)
    codes = torch.stack([first.roll(k, dims=-1) for k in range(s)], dim=1)  # rolling codes
    varied = torch.arange(n).remainder(4)[:, None].expand(n, s)
    start = torch.randint(0, 15, (n,), generator=g)
    factors = {"varied": varied}
    for name in ("pos_x", "pos_y", "orientation", "scale"):
        sub = (start[:, None] + torch.arange(s)) % len(SUBGRID[name])
        factors[name] = torch.from_numpy(SUBGRID[name][sub.numpy()])  # full-grid indices
    out = _offsets_paper_protocol(codes, factors, seed=0)
    assert list(out) == ["pos_x", "pos_y", "orientation", "scale"]
    for entry in out.values():
        assert entry["capsule_offset_correlation_paper_protocol"] == pytest.approx(1.0)
        assert entry["paper_protocol_n_sequences"] == n // 4
    # its chance level is well above 0 (0.13 for 15 values, 0.52 for scale; see the metric)
    assert out["scale"]["capsule_offset_correlation_paper_protocol_random"] > 0.3
    assert out["pos_x"]["capsule_offset_correlation_paper_protocol_random"] < 0.35


@pytest.mark.parametrize("model_name", ["tvae-L0-dsprites-cpu", "vae-dsprites-cpu"])
def test_evaluate_writes_both_likelihoods_and_both_offset_correlations(model_name: str) -> None:
    from topovae.measure import evaluate_model
    from topovae.models.base import build_model
    from topovae.presets import load_preset

    experiment = load_preset(model_name).with_overrides(
        {"data.n_train": 16, "data.n_test": 48, "data.batch_size": 8,
         "evaluate.n_eval_sequences": 24, "evaluate.n_ll_sequences": 4,
         "evaluate.n_is_samples": 3})
    torch.manual_seed(experiment.train.seed)
    model = build_model(experiment.model.name, experiment.model.config).eval()
    result = evaluate_model(model, experiment)
    for key in ("log_likelihood_nats_per_image", "log_likelihood_paper_protocol_nats_per_image",
                "log_likelihood_untrained_nats_per_image",
                "log_likelihood_paper_protocol_untrained_nats_per_image",
                "capsule_offset_correlation_random"):
        assert isinstance(result[key], float), key
    # the model is the untrained architecture itself (same seed): same level, other draws
    assert result["log_likelihood_untrained_nats_per_image"] == pytest.approx(
        result["log_likelihood_nats_per_image"], rel=0.05)
    per = result["per_transformation"]
    values = [entry["capsule_offset_correlation_paper_protocol"] for entry in per.values()
              if entry.get("capsule_offset_correlation_paper_protocol") is not None]
    if values:
        assert result["capsule_offset_correlation_paper_protocol"] == pytest.approx(
            float(np.mean(values)))
    assert "capsule_offset_correlation_paper_protocol_random" in result
    assert math.isfinite(result["log_likelihood_paper_protocol_nats_per_image"])
