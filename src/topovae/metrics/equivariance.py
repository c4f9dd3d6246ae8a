"""Equivariance of capsule codes: the paper's E_eq, its shuffled-frame control, capsule offsets.

A code ``t`` is shaped ``(B, S, n_caps, cap_dim)``: ``B`` sequences of ``S`` frames, each frame
``n_caps`` capsules of ``cap_dim`` units. The ideal code of a transformation sequence *rolls*
one unit along every capsule per step, ``t[:, s + k] == torch.roll(t[:, s], shifts=k, dims=-1)``
(the direction fixed in ``docs/architecture.md``). Every function here uses that direction.

Why a control: E_eq depends on the distribution of the codes (about 13,270 for Gaussian codes of
18 capsules x 18 units over 18 frames, about 4,100 for positive ``|N(3, 1)|`` codes), so a raw
value says nothing until it is compared with the same measure on the same codes with the sequence
structure destroyed. :func:`equivariance_ratio` is that comparison: ~0 for a perfectly equivariant
code, ~1 for a code that carries no rolling structure at all.
"""

from __future__ import annotations

import torch

__all__ = [
    "equivariance_error",
    "equivariance_error_per_sequence",
    "equivariance_error_control",
    "equivariance_ratio",
    "capsule_offset_correlation",
    "capsule_offset_correlation_paper_protocol",
    "normalize_capsules",
]

_NORM_EPS = 1e-12


def _check_codes(codes: torch.Tensor, name: str = "codes") -> None:
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dim() != 4:
        raise ValueError(
            f"{name} must be shaped (B, S, n_caps, cap_dim), got {tuple(codes.shape)}"
        )
    if min(codes.shape) < 1:
        raise ValueError(f"{name} must have no empty dimension, got {tuple(codes.shape)}")
    if not codes.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {codes.dtype}")


def normalize_capsules(codes: torch.Tensor) -> torch.Tensor:
    """Scale every capsule vector (last dimension) to unit L2 norm; all-zero capsules stay zero."""
    norms = codes.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
    return codes / norms


def equivariance_error_per_sequence(codes: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """E_eq of every sequence, shaped ``(B,)``.

    For every pair of frames ``s0 < s1`` of a sequence and every capsule, the L1 distance between
    frame ``s0``'s capsule rolled by ``s1 - s0`` units and frame ``s1``'s capsule, summed over
    capsules and pairs. With ``normalize`` (the paper's definition) each capsule vector is first
    scaled to unit L2 norm, which makes the measure blind to the magnitude of a capsule.

    The pairs are handled one *shift* at a time (``S - 1`` tensor operations, each comparing all
    frames ``s`` with frames ``s + k`` at once), so any ``S`` and ``cap_dim`` work, including
    ``S != cap_dim`` (the roll is circular in the capsule, not in time).
    """
    _check_codes(codes)
    t_hat = normalize_capsules(codes) if normalize else codes
    n_frames = t_hat.shape[1]
    total = t_hat.new_zeros(t_hat.shape[0])
    for shift in range(1, n_frames):
        rolled_early = torch.roll(t_hat[:, : n_frames - shift], shifts=shift, dims=-1)
        total = total + (rolled_early - t_hat[:, shift:]).abs().sum(dim=(1, 2, 3))
    return total


def equivariance_error(codes: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """The paper's equivariance error E_eq: :func:`equivariance_error_per_sequence` averaged
    over the ``B`` sequences (a scalar tensor on the device of ``codes``)."""
    return equivariance_error_per_sequence(codes, normalize=normalize).mean()


def _shuffled_frames(codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch, n_frames = codes.shape[:2]
    frames = codes.reshape(batch * n_frames, *codes.shape[2:])
    permutation = torch.randperm(batch * n_frames, generator=generator).to(codes.device)
    return frames[permutation].reshape(codes.shape)


def equivariance_error_control(
    codes: torch.Tensor, *, normalize: bool = True, seed: int = 0, n_repeats: int = 1
) -> torch.Tensor:
    """Chance level of E_eq for these very codes (a scalar tensor).

    All ``B * S`` frames are shuffled by one random permutation and regrouped into ``B`` sequences
    of ``S``: the marginal distribution of the codes is kept, the sequence structure is destroyed.
    The result is the mean of E_eq over ``n_repeats`` independent shuffles drawn from ``seed``
    (a CPU generator, so the value does not depend on the device).
    """
    _check_codes(codes)
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    generator = torch.Generator().manual_seed(int(seed))
    values = [
        equivariance_error(_shuffled_frames(codes, generator), normalize=normalize)
        for _ in range(n_repeats)
    ]
    return torch.stack(values).mean()


def equivariance_ratio(
    codes: torch.Tensor, *, normalize: bool = True, seed: int = 0, n_repeats: int = 1
) -> torch.Tensor:
    """E_eq divided by its shuffled control (a scalar tensor): ~0 equivariant, ~1 chance."""
    error = equivariance_error(codes, normalize=normalize)
    control = equivariance_error_control(codes, normalize=normalize, seed=seed,
                                         n_repeats=n_repeats)
    return error / control


def _best_roll_offsets(codes: torch.Tensor) -> torch.Tensor:
    """Per sequence, frame ``k`` and capsule: the roll of frame 0's capsule that best matches.

    Returns ``(B, S - 1, n_caps)`` integer offsets in ``[0, cap_dim)``: the argmax over ``d`` of
    the circular cross-correlation ``sum_j roll(a, d)[j] * b[j]`` between the (mean-centred)
    capsule ``a`` of frame 0 and ``b`` of frame ``k``, computed for all ``d`` at once by FFT:
    ``sum_j a[j - d] b[j] = irfft(conj(rfft(a)) * rfft(b))[d]``. Centring does not change the
    argmax (a constant adds the same amount to every shift) but keeps large positive codes from
    drowning the informative part in rounding error.
    """
    cap_dim = codes.shape[-1]
    centred = codes - codes.mean(dim=-1, keepdim=True)
    spectrum = torch.fft.rfft(centred.to(torch.float64), n=cap_dim, dim=-1)
    first, later = spectrum[:, :1], spectrum[:, 1:]
    correlation = torch.fft.irfft(first.conj() * later, n=cap_dim, dim=-1)
    return correlation.argmax(dim=-1)


def capsule_offset_correlation(
    codes: torch.Tensor, true_offsets: torch.Tensor | None = None
) -> dict[str, torch.Tensor | float]:
    """How well the roll between frame 0 and frame ``k`` of each sequence recovers the true step.

    For every sequence and every frame ``k >= 1`` the predicted offset is the mode, over
    capsules, of the roll that best aligns frame 0's capsule with frame ``k``'s (argmax of their
    circular cross-correlation; ties in the mode go to the smallest offset). The true offset of
    frame ``k`` is ``true_offsets[:, k] - true_offsets[:, 0]`` modulo ``cap_dim``; by default
    ``true_offsets[:, k] = k`` (one roll per transformation step).

    Args:
        codes: ``(B, S, n_caps, cap_dim)`` capsule codes, ``S >= 2``.
        true_offsets: optional ``(B, S)`` integer step index of every frame.

    Returns:
        ``accuracy`` (fraction of (sequence, frame) pairs whose predicted offset is exactly the
        true one), ``correlation`` (Pearson correlation of predicted and true offsets over all
        pairs; NaN when either is constant), ``predicted`` and ``true`` (both ``(B, S - 1)``
        integer tensors).
    """
    _check_codes(codes)
    batch, n_frames, n_caps, cap_dim = codes.shape
    if n_frames < 2:
        raise ValueError(f"codes must hold at least 2 frames per sequence, got S={n_frames}")
    if true_offsets is None:
        steps = torch.arange(n_frames, device=codes.device).expand(batch, n_frames)
    else:
        if not isinstance(true_offsets, torch.Tensor):
            true_offsets = torch.as_tensor(true_offsets)
        if tuple(true_offsets.shape) != (batch, n_frames):
            raise ValueError(
                f"true_offsets must be shaped (B, S) = ({batch}, {n_frames}), "
                f"got {tuple(true_offsets.shape)}"
            )
        steps = true_offsets.to(device=codes.device, dtype=torch.long)
    true = torch.remainder(steps[:, 1:] - steps[:, :1], cap_dim)

    per_capsule = _best_roll_offsets(codes)  # (B, S-1, n_caps)
    votes = torch.nn.functional.one_hot(per_capsule, cap_dim).sum(dim=2)  # (B, S-1, cap_dim)
    predicted = votes.argmax(dim=-1)

    accuracy = (predicted == true).double().mean().item()
    pred_f = predicted.double().flatten()
    true_f = true.double().flatten()
    pred_c, true_c = pred_f - pred_f.mean(), true_f - true_f.mean()
    denominator = (pred_c.square().sum() * true_c.square().sum()).sqrt()
    if denominator.item() == 0.0:
        correlation = float("nan")
    else:
        correlation = ((pred_c * true_c).sum() / denominator).item()
    return {"accuracy": accuracy, "correlation": correlation, "predicted": predicted,
            "true": true}


def _pearson(first: torch.Tensor, second: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors; NaN when either is constant or empty."""
    a, b = first.double(), second.double()
    if a.numel() < 2:
        return float("nan")
    a_c, b_c = a - a.mean(), b - b.mean()
    denominator = (a_c.square().sum() * b_c.square().sum()).sqrt()
    if denominator.item() == 0.0:
        return float("nan")
    return ((a_c * b_c).sum() / denominator).item()


def capsule_offset_correlation_paper_protocol(
    codes: torch.Tensor, factor_index: torch.Tensor
) -> dict[str, torch.Tensor | float | int]:
    """The original TVAE code's capsule correlation (the numbers of the paper's Table 2).

    Per sequence, with ``a`` the stepped factor's index at frame 0: take the frames ``i``
    (frame 0 included) where that index is 0; for each, the roll ``r_i`` that best aligns frame
    0's capsules with frame ``i``'s (argmax of the circular cross-correlation) implies, per
    capsule, the start index ``(-r_i) mod cap_dim`` (frame ``i`` is ``-a`` steps from frame 0
    modulo the number of values, so a code rolling one unit per step gives ``a`` when the
    factor has ``cap_dim`` values); the candidate is the mode over capsules of that value (ties
    to the smallest value, which favours small candidates); the candidate closest to ``a``
    (``|a - candidate|``, the first on ties) is kept. ``correlation`` is the Pearson
    correlation of kept candidates and ``a`` over the sequences that have such a frame.

    It is biased upwards: a sequence starting at index 0 compares frame 0 with itself and is
    always right, and a factor with fewer values than frames (dSprites scale: 5 values over 15
    frames) offers several candidates of which the best is kept. On random codes it gives about
    0.13 for 15-valued factors and 0.52 for scale with Gaussian codes of 15 x 15 units over
    15 frames (tested); report it beside
    :func:`capsule_offset_correlation` and a random-code control, never alone.

    Args:
        codes: ``(B, S, n_caps, cap_dim)`` capsule codes (the original uses codes sampled from
            ``q``).
        factor_index: ``(B, S)`` integer index (``0 .. n_values - 1``) of the stepped factor at
            every frame.

    Returns ``correlation`` (NaN when fewer than two sequences qualify or either side is
    constant), ``predicted`` and ``true`` (kept candidates and start indices, ``(n,)``) and
    ``n_sequences`` (``n``).
    """
    _check_codes(codes)
    batch, n_frames, _, cap_dim = codes.shape
    if not isinstance(factor_index, torch.Tensor):
        factor_index = torch.as_tensor(factor_index)
    if tuple(factor_index.shape) != (batch, n_frames):
        raise ValueError(f"factor_index must be shaped (B, S) = ({batch}, {n_frames}), got "
                         f"{tuple(factor_index.shape)}")
    if factor_index.is_floating_point() or bool((factor_index < 0).any()):
        raise ValueError("factor_index must hold non-negative integer indices")
    index = factor_index.to(device=codes.device, dtype=torch.long)
    centred = codes - codes.mean(dim=-1, keepdim=True)
    spectrum = torch.fft.rfft(centred.to(torch.float64), n=cap_dim, dim=-1)
    # roll of frame 0 onto every frame (frame 0 included): (B, S, n_caps) -> mode over capsules
    correlation = torch.fft.irfft(spectrum[:, :1].conj() * spectrum, n=cap_dim, dim=-1)
    # the start index each capsule's roll implies; the mode is taken over these values (ties
    # to the smallest value, as scipy.stats.mode in the original), not over the rolls
    per_capsule = torch.remainder(-correlation.argmax(dim=-1), cap_dim)
    candidates = torch.nn.functional.one_hot(per_capsule, cap_dim).sum(dim=2).argmax(dim=-1)
    start = index[:, :1]
    distance = (start - candidates).abs().double()
    distance = torch.where(index == 0, distance, torch.full_like(distance, float("inf")))
    qualifies = torch.isfinite(distance).any(dim=1)
    best = distance.argmin(dim=1)  # first minimum: the authors' argmin over the frames in order
    predicted = candidates.gather(1, best[:, None])[:, 0][qualifies]
    true = start[:, 0][qualifies]
    return {"correlation": _pearson(predicted, true), "predicted": predicted, "true": true,
            "n_sequences": int(qualifies.sum())}
