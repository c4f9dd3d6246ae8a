"""The original code's capsule-offset correlation: 1 on perfectly rolled codes, its measured
chance level on random codes, and a slow per-sequence reference of its selection rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topovae.metrics.equivariance import (
    capsule_offset_correlation,
    capsule_offset_correlation_paper_protocol,
)

# Measured on Gaussian codes (15 capsules x 15 units, 15 frames), 3 x 20,000 sequences:
# 0.135, 0.136, 0.127 for a 15-valued factor; 0.523, 0.530, 0.522 for a 5-valued one (scale).
CHANCE = {15: 0.13, 5: 0.525}


def factor_index(n_sequences: int, n_values: int, seq_len: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, n_values, (n_sequences,), generator=g)
    return (start[:, None] + torch.arange(seq_len)) % n_values


def rolled_codes(n_sequences: int, seq_len: int = 15, n_caps: int = 15, cap_dim: int = 15,
                 seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    first = torch.randn(n_sequences, n_caps, cap_dim, generator=g)
    return torch.stack([torch.roll(first, k, dims=-1) for k in range(seq_len)], dim=1)


@pytest.mark.parametrize("n_values", [15, 5])
def test_perfectly_rolled_codes_give_one(n_values: int) -> None:
    codes = rolled_codes(300)
    result = capsule_offset_correlation_paper_protocol(codes, factor_index(300, n_values, 15, 1))
    assert result["correlation"] == pytest.approx(1.0)
    assert result["n_sequences"] == 300
    assert torch.equal(result["predicted"], result["true"])


@pytest.mark.parametrize("n_values", [15, 5])
def test_random_codes_give_the_measured_chance_level(n_values: int) -> None:
    g = torch.Generator().manual_seed(5)
    codes = torch.randn(6000, 15, 15, 15, generator=g)
    index = factor_index(6000, n_values, 15, 6)
    paper = capsule_offset_correlation_paper_protocol(codes, index)["correlation"]
    assert paper == pytest.approx(CHANCE[n_values], abs=0.04)
    # far above zero, where the strict estimator sits on the same codes
    assert abs(capsule_offset_correlation(codes)["correlation"]) < 0.03
    assert paper > 0.09


def slow_reference(codes: np.ndarray, index: np.ndarray) -> tuple[list[int], list[int]]:
    """The selection rule written out per sequence and capsule with numpy's FFT."""
    predicted, true = [], []
    cap_dim = codes.shape[-1]
    for b in range(codes.shape[0]):
        start = int(index[b, 0])
        best = None
        for frame in np.flatnonzero(index[b] == 0):
            votes = np.zeros(cap_dim, dtype=int)
            for c in range(codes.shape[2]):
                x, y = codes[b, 0, c], codes[b, frame, c]
                lag = int(np.argmax(np.fft.ifft(np.fft.fft(x) * np.fft.fft(y).conj()).real))
                votes[lag] += 1
            candidate = int(np.argmax(votes))  # most common, smallest on ties
            if best is None or abs(start - candidate) < abs(start - best):
                best = candidate
        if best is not None:
            predicted.append(best)
            true.append(start)
    return predicted, true


def test_agrees_with_a_slow_reference_on_partly_rolled_codes() -> None:
    codes = rolled_codes(80, n_caps=6, cap_dim=15, seed=2)
    codes = codes + 0.8 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(3))
    index = factor_index(80, 5, 15, 4)
    result = capsule_offset_correlation_paper_protocol(codes, index)
    predicted, true = slow_reference(codes.double().numpy(), index.numpy())
    assert result["predicted"].tolist() == predicted
    assert result["true"].tolist() == true
    assert result["correlation"] == pytest.approx(float(np.corrcoef(predicted, true)[0, 1]))


def test_sequences_without_index_zero_are_skipped_and_errors() -> None:
    codes = rolled_codes(4, seq_len=3)
    index = torch.tensor([[0, 1, 2], [5, 6, 7], [13, 14, 0], [2, 3, 4]])
    result = capsule_offset_correlation_paper_protocol(codes, index)
    assert result["n_sequences"] == 2
    with pytest.raises(ValueError, match="factor_index must be shaped"):
        capsule_offset_correlation_paper_protocol(codes, index[:, :2])
    with pytest.raises(ValueError, match="non-negative integer"):
        capsule_offset_correlation_paper_protocol(codes, index.double())
