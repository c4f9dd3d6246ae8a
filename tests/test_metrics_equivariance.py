"""Equivariance error, its shuffled control and the capsule-offset correlation."""

from __future__ import annotations

import pytest
import torch

from topovae.metrics.equivariance import (
    capsule_offset_correlation,
    equivariance_error,
    equivariance_error_control,
    equivariance_error_per_sequence,
    equivariance_ratio,
)


def slow_equivariance_error_per_sequence(codes: torch.Tensor, normalize: bool = True) -> list:
    """Literal transcription of the definition: explicit loops over sequences, pairs, capsules."""
    batch, n_frames, n_caps, cap_dim = codes.shape
    results = []
    for b in range(batch):
        total = 0.0
        for t0 in range(n_frames):
            for t1 in range(t0 + 1, n_frames):
                for c in range(n_caps):
                    a = codes[b, t0, c].double()
                    target = codes[b, t1, c].double()
                    if normalize:
                        a = a / a.norm()
                        target = target / target.norm()
                    shift = t1 - t0
                    rolled = torch.tensor([a[(j - shift) % cap_dim] for j in range(cap_dim)])
                    total += float((rolled - target).abs().sum())
        results.append(total)
    return results


def rolled_codes(batch: int, n_frames: int, n_caps: int, cap_dim: int, direction: int = 1,
                 extra_shift: int = 0, seed: int = 0) -> torch.Tensor:
    """Codes whose frame s is frame 0 rolled by direction * s + extra_shift units."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(batch, n_caps, cap_dim, generator=generator)
    frames = [torch.roll(first, shifts=direction * s + (extra_shift if s else 0), dims=-1)
              for s in range(n_frames)]
    return torch.stack(frames, dim=1)


@pytest.mark.parametrize("shape", [(2, 3, 2, 5), (3, 6, 1, 4), (2, 4, 3, 7), (1, 5, 2, 5)])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_slow_pairwise_reference(shape, normalize):
    codes = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    fast = equivariance_error_per_sequence(codes, normalize=normalize)
    slow = torch.tensor(slow_equivariance_error_per_sequence(codes, normalize), dtype=fast.dtype)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(equivariance_error(codes, normalize=normalize), slow.mean(),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(4, 18, 18, 18), (4, 15, 15, 15), (3, 7, 4, 10), (3, 12, 2, 5)])
def test_perfectly_rolled_codes_give_zero(shape):
    codes = rolled_codes(*shape)
    # Only float32 rounding of the norms remains (chance level is in the thousands).
    assert equivariance_error(codes).item() < 1e-2
    assert equivariance_ratio(codes).item() < 1e-6


@pytest.mark.parametrize("direction", [-1, 0, 2])
def test_wrong_roll_per_step_is_not_zero(direction):
    # Rolling backwards, not at all, or two units per step: a metric that compared frames with
    # the wrong shift (off by one, or the opposite direction) would call one of these perfect.
    codes = rolled_codes(8, 18, 18, 18, direction=direction)
    assert equivariance_ratio(codes).item() > 0.3


def test_one_misplaced_frame_counts_only_its_pairs():
    # Frames 1..17 are rolled one unit too far relative to frame 0 (but right among themselves):
    # only the 17 pairs involving frame 0 are wrong, 17 / 153 of the chance level.
    codes = rolled_codes(32, 18, 18, 18, extra_shift=1)
    assert equivariance_ratio(codes).item() == pytest.approx(17 / 153, rel=0.1)


def test_random_gaussian_codes_at_chance_and_reference_level():
    codes = torch.randn(64, 18, 18, 18, generator=torch.Generator().manual_seed(0))
    error = equivariance_error(codes).item()
    # The reference reports about 13,270 for Gaussian 18x18 codes over S = 18 frames:
    # 153 pairs x 18 capsules x E||a - b||_1 for independent unit vectors a, b in R^18.
    assert error == pytest.approx(13270, rel=0.01)
    ratio = equivariance_ratio(codes, n_repeats=2).item()
    assert ratio == pytest.approx(1.0, abs=0.01)


def test_positive_codes_have_lower_chance_level():
    generator = torch.Generator().manual_seed(1)
    codes = (torch.randn(64, 18, 18, 18, generator=generator) + 3).abs()
    error = equivariance_error(codes).item()
    assert error == pytest.approx(4100, rel=0.05)
    assert equivariance_ratio(codes).item() == pytest.approx(1.0, abs=0.02)


def test_invariant_to_positive_per_capsule_scaling():
    codes = torch.randn(3, 6, 4, 5, generator=torch.Generator().manual_seed(3))
    scales = torch.rand(3, 6, 4, 1, generator=torch.Generator().manual_seed(4)) * 10 + 0.1
    torch.testing.assert_close(equivariance_error(codes * scales), equivariance_error(codes))
    # Without normalisation the measure is not scale-invariant (the flag does something).
    assert not torch.allclose(equivariance_error(codes * scales, normalize=False),
                              equivariance_error(codes, normalize=False))


def test_control_is_reproducible_and_depends_on_seed():
    codes = rolled_codes(16, 6, 3, 6)
    first = equivariance_error_control(codes, seed=5)
    assert torch.equal(first, equivariance_error_control(codes, seed=5))
    assert not torch.equal(first, equivariance_error_control(codes, seed=6))
    assert first.item() > 1.0  # shuffling destroys the perfect rolling


def test_single_frame_sequences_have_zero_error():
    codes = torch.randn(4, 1, 3, 5)
    assert equivariance_error(codes).item() == 0.0


@pytest.mark.parametrize("bad", [torch.randn(3, 4, 5), torch.zeros(2, 3, 4, 5, dtype=torch.long)])
def test_bad_codes_raise(bad):
    with pytest.raises(ValueError, match="codes"):
        equivariance_error(bad)


def test_bad_repeats_raise():
    with pytest.raises(ValueError, match="n_repeats"):
        equivariance_error_control(torch.randn(2, 3, 4, 5), n_repeats=0)


@pytest.mark.parametrize("shape", [(6, 15, 15, 15), (5, 7, 4, 10), (4, 12, 3, 5)])
def test_offset_correlation_perfect_on_rolled_codes(shape):
    codes = rolled_codes(*shape)
    # Large positive offsets must not matter (the correlation is centred per capsule).
    result = capsule_offset_correlation(codes + 30.0)
    assert result["accuracy"] == 1.0
    assert result["correlation"] == pytest.approx(1.0)
    n_frames, cap_dim = shape[1], shape[3]
    expected = torch.arange(1, n_frames) % cap_dim
    assert torch.equal(result["predicted"][0].cpu(), expected)


def test_offset_correlation_with_explicit_true_offsets():
    batch, n_frames, n_caps, cap_dim = 5, 6, 4, 9
    generator = torch.Generator().manual_seed(2)
    first = torch.randn(batch, n_caps, cap_dim, generator=generator)
    start = torch.randint(0, cap_dim, (batch,), generator=generator)
    steps = start[:, None] + 2 * torch.arange(n_frames)[None, :]  # two units per frame
    frames = [torch.stack([torch.roll(first[b], int(steps[b, s] - steps[b, 0]), dims=-1)
                           for b in range(batch)]) for s in range(n_frames)]
    codes = torch.stack(frames, dim=1)
    assert capsule_offset_correlation(codes, steps)["accuracy"] == 1.0
    # Against the default (one step per frame) most offsets are wrong.
    assert capsule_offset_correlation(codes)["accuracy"] < 0.5


def test_offset_correlation_near_zero_on_random_codes():
    codes = torch.randn(200, 15, 15, 15, generator=torch.Generator().manual_seed(7))
    result = capsule_offset_correlation(codes)
    assert abs(result["correlation"]) < 0.1
    assert result["accuracy"] < 0.15  # chance is 1/15


def test_offset_correlation_bad_offsets_shape():
    with pytest.raises(ValueError, match="true_offsets"):
        capsule_offset_correlation(torch.randn(2, 3, 4, 5), torch.zeros(2, 4))
