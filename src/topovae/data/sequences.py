"""Sequence builders: turn a batch of images into a batch of transformation sequences.

A builder is called as ``builder(images, generator, factors=None) -> SequenceBatch`` with images
``(B, C, H, W)`` (float in [0, 1] or uint8; ignored by the dSprites builder, which renders from the
ground-truth ``factors`` ``(B, n_factors)``), and returns frames ``x`` ``(B, S, C', H, W)``
float32 in [0, 1] with, for every frame, the factor values that produced it (``factors[name]``
is ``(B, S)``).
All frames of a batch are warped by one ``grid_sample`` call; all randomness comes from
``generator``, so a batch is a pure function of its images and the generator's seed.

The MNIST protocol (:class:`SingleFactorSequences`, name ``"single_factor"``): S = 18 frames; one
of rotation (0..340 degrees, step 20), hue (18 equal steps around the colour circle) or scale
(0.60 .. 1.26) is chosen uniformly per sequence and steps through its set from a random start,
cyclically; the other factors are fixed at random values of their sets; the grey digit is placed in
the red channel of an RGB image. Recorded factors: ``rotation`` and ``hue`` in degrees, ``scale``
as a ratio, ``varied`` the index (in ``FACTORS``) of the factor that changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..config import Registry
from .dsprites import FACTOR_NAMES as DSPRITES_FACTORS
from .dsprites import SUBGRID, RenderedDSprites
from .ground_truth import GroundTruthData
from .transforms import colorize_red, hue_matrices, perspective, rotate_scale

FACTORS = ("rotation", "hue", "scale")
N_STEPS = 18
ANGLES_DEG = torch.arange(N_STEPS, dtype=torch.float32) * 20.0
HUES_DEG = torch.arange(N_STEPS, dtype=torch.float32) * (360.0 / N_STEPS)
SCALES = torch.tensor(
    [
        0.60,
        0.64,
        0.68,
        0.72,
        0.76,
        0.79,
        0.83,
        0.87,
        0.91,
        0.95,
        0.99,
        1.03,
        1.07,
        1.11,
        1.14,
        1.18,
        1.22,
        1.26,
    ]
)


@dataclasses.dataclass
class SequenceBatch:
    """Frames ``x`` (B, S, C, H, W) float32 in [0, 1] and per-frame factors ``{name: (B, S)}``."""

    x: torch.Tensor
    factors: dict[str, torch.Tensor]


Builder = Callable[..., SequenceBatch]
SEQUENCES: Registry[Callable[..., Builder]] = Registry("sequence builder")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


class RowGenerators:
    """One ``torch.Generator`` per row of a batch: the draws of row ``i`` come from the ``i``-th.

    Builders that subclass :class:`RowSeededBuilder` accept it in place of a generator, so that a
    loader can seed every sequence on its own and still build the batch in one call.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        if not generators:
            raise ValueError("RowGenerators needs at least one generator")
        self.generators = list(generators)
        self.device = self.generators[0].device


class RowSeededBuilder:
    """Marks a builder whose randomness all goes through ``_randint``: it takes
    :class:`RowGenerators` and then row ``i`` equals the same builder called on row ``i`` alone
    with the ``i``-th generator."""


def _randint(
    high: int, size: tuple[int, ...], generator: torch.Generator | RowGenerators
) -> torch.Tensor:
    if isinstance(generator, RowGenerators):
        if size[0] != len(generator.generators):
            raise ValueError(f"{len(generator.generators)} row generators for {size[0]} rows")
        rows = [torch.randint(0, high, size[1:], generator=g, device=g.device)
                for g in generator.generators]
        return torch.stack(rows)
    return torch.randint(0, high, size, generator=generator, device=generator.device)


def render_mnist_frames(
    images: torch.Tensor,
    angle_deg: torch.Tensor,
    hue_deg: torch.Tensor,
    scale: torch.Tensor,
    perspective_warp: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Frames for per-frame factor values ``(B, S)`` (degrees, degrees, ratio).

    Grey images (C = 1) go to the red channel of RGB; colour images (C = 3) have their hue rotated.
    One warp call for all B x S frames. Returns ``x`` (B, S, 3, H, W) and the factor values.
    """
    images = _to_float(images)
    b, c, h, w = images.shape
    s = angle_deg.shape[1]
    frames = images.unsqueeze(1).expand(b, s, c, h, w).reshape(b * s, c, h, w)
    angle = torch.deg2rad(angle_deg).reshape(-1)
    if perspective_warp:
        warped = perspective(frames, angle, angle, scale.reshape(-1))
    else:
        warped = rotate_scale(frames, angle, scale.reshape(-1))
    hue = torch.deg2rad(hue_deg).reshape(-1)
    if c == 1:
        rgb = colorize_red(warped, hue)
    elif c == 3:
        rgb = torch.einsum("nij,njhw->nihw", hue_matrices(hue), warped).clamp(0.0, 1.0)
    else:
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    factors = {"rotation": angle_deg, "hue": hue_deg, "scale": scale}
    return rgb.reshape(b, s, 3, h, w), factors


def _values(angle_idx, hue_idx, scale_idx, device):
    return (
        ANGLES_DEG.to(device)[angle_idx.to(device)],
        HUES_DEG.to(device)[hue_idx.to(device)],
        SCALES.to(device)[scale_idx.to(device)],
    )


class SingleFactorSequences(RowSeededBuilder):
    """The paper's MNIST protocol: one factor of ``transforms`` varies per sequence.

    Factors in ``transforms`` that do not vary are fixed at random values of their sets; factors
    not in ``transforms`` stay at the identity (angle 0, hue 0, scale 1).
    """

    def __init__(self, transforms: Sequence[str] = FACTORS, seq_len: int = N_STEPS):
        unknown = [t for t in transforms if t not in FACTORS]
        if unknown or not transforms:
            raise ValueError(
                f"transforms must be a non-empty subset of {FACTORS}, got {transforms}"
            )
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.transforms = [t for t in FACTORS if t in transforms]
        self.seq_len = seq_len

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, factors: torch.Tensor | None = None
    ) -> SequenceBatch:
        b, s = images.shape[0], self.seq_len
        gdev = generator.device
        choice = _randint(len(self.transforms), (b,), generator)
        varied = torch.tensor([FACTORS.index(t) for t in self.transforms], device=gdev)[choice]
        start = _randint(N_STEPS, (b, 3), generator)
        moving = varied.view(b, 1, 1) == torch.arange(3, device=gdev)
        index = (start.unsqueeze(1) + moving * torch.arange(s, device=gdev).view(1, s, 1)) % N_STEPS
        angle, hue, scale = _values(*index.unbind(-1), images.device)
        if "rotation" not in self.transforms:
            angle = torch.zeros_like(angle)
        if "hue" not in self.transforms:
            hue = torch.zeros_like(hue)
        if "scale" not in self.transforms:
            scale = torch.ones_like(scale)
        x, values = render_mnist_frames(images, angle, hue, scale)
        values["varied"] = varied.to(images.device).view(b, 1).expand(b, s).clone()
        return SequenceBatch(x, values)


class JointSequences(RowSeededBuilder):
    """Rotation (or a 3-D perspective turn, ``phi = gamma = angle``) and hue step together; the
    scale is fixed at a random value of its set. Used for the generalisation test (train on
    single-factor sequences, test on these) and the complex-transformation figures."""

    def __init__(self, seq_len: int = N_STEPS, perspective_warp: bool = False):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.seq_len = seq_len
        self.perspective_warp = perspective_warp

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, factors: torch.Tensor | None = None
    ) -> SequenceBatch:
        b, s = images.shape[0], self.seq_len
        steps = torch.arange(s, device=generator.device).view(1, s)
        start = _randint(N_STEPS, (b, 3), generator)
        angle_idx = (start[:, :1] + steps) % N_STEPS
        hue_idx = (start[:, 1:2] + steps) % N_STEPS
        scale_idx = start[:, 2:3].expand(b, s)
        angle, hue, scale = _values(angle_idx, hue_idx, scale_idx, images.device)
        x, values = render_mnist_frames(images, angle, hue, scale, self.perspective_warp)
        if self.perspective_warp:  # phi = gamma = angle
            rotation = values.pop("rotation")
            values = {"phi": rotation, "gamma": rotation.clone(), **values}
        return SequenceBatch(x, values)


class DSpritesSequences(RowSeededBuilder):
    """The dSprites protocol: S = 15; each sequence steps one of posX, posY, orientation or scale
    (chosen uniformly) forward by one index of the protocol sub-grid per frame, cyclically, from
    the start factors given by the loader; frames are rendered by ``ground_truth``.

    Recorded factors are full-grid indices ``shape, scale, orientation, pos_x, pos_y`` and
    ``varied`` (index into ``("pos_x", "pos_y", "orientation", "scale")``).
    """

    STEPPED = ("pos_x", "pos_y", "orientation", "scale")

    def __init__(self, ground_truth: GroundTruthData | None = None, seq_len: int = 15):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.ground_truth = ground_truth if ground_truth is not None else RenderedDSprites()
        self.seq_len = seq_len

    def __call__(
        self,
        images: torch.Tensor | None,
        generator: torch.Generator,
        factors: torch.Tensor | None = None,
    ) -> SequenceBatch:
        if factors is None:
            raise ValueError("the dsprites builder needs the start factors (B, 5)")
        start = np.asarray(torch.as_tensor(factors).cpu().numpy(), dtype=np.int64)
        b, s = len(start), self.seq_len
        sub = np.empty_like(start)  # positions on the sub-grid
        for j, name in enumerate(DSPRITES_FACTORS):
            grid = SUBGRID[name]
            sub[:, j] = np.searchsorted(grid, start[:, j])
            if (sub[:, j] >= len(grid)).any() or (
                grid[np.minimum(sub[:, j], len(grid) - 1)] != start[:, j]
            ).any():
                raise ValueError(f"start factor {name} is not on the protocol sub-grid")
        choice = _randint(len(self.STEPPED), (b,), generator).cpu().numpy()
        frames = np.repeat(sub[:, None, :], s, axis=1)  # (B, S, 5)
        steps = np.arange(s)
        for k, name in enumerate(self.STEPPED):
            j = DSPRITES_FACTORS.index(name)
            rows = choice == k
            frames[rows, :, j] = (sub[rows, None, j] + steps) % len(SUBGRID[name])
        full = np.stack(
            [SUBGRID[name][frames[..., j]] for j, name in enumerate(DSPRITES_FACTORS)], axis=-1
        )
        x = self.ground_truth.observations_from_factors(full.reshape(b * s, -1))
        x = x.reshape(b, s, *x.shape[1:]).float()
        values = {name: torch.from_numpy(full[..., j]) for j, name in enumerate(DSPRITES_FACTORS)}
        values["varied"] = torch.from_numpy(np.repeat(choice[:, None], s, axis=1))
        return SequenceBatch(x, values)


class SingleImages(RowSeededBuilder):
    """Plain batches of single images (S = 1), e.g. for the 2-D topographic map."""

    seq_len = 1

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, factors: torch.Tensor | None = None
    ) -> SequenceBatch:
        return SequenceBatch(_to_float(images).unsqueeze(1), {})


class GivenSequences:
    """Sequences that already exist (``data.source=sequences``): the frames ``(B, S, C, H, W)``
    are returned as they are (as float in [0, 1]); per-frame factors ``(B, S, F)``, when the
    source has them, are recorded under ``factor_names``. Nothing is random."""

    def __init__(self, seq_len: int, factor_names: Sequence[str] | None = None):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.seq_len = seq_len
        self.factor_names = list(factor_names or [])

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, factors: torch.Tensor | None = None
    ) -> SequenceBatch:
        if images is None or images.ndim != 5:
            got = None if images is None else tuple(images.shape)
            raise ValueError(f"the given builder needs sequences (B, S, C, H, W), got {got}")
        if images.shape[1] != self.seq_len:
            raise ValueError(f"sequences have {images.shape[1]} frames, expected {self.seq_len}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        values: dict[str, torch.Tensor] = {}
        if factors is not None:
            factors = torch.as_tensor(factors).float()
            names = self.factor_names or [f"factor_{i}" for i in range(factors.shape[-1])]
            values = {name: factors[..., i] for i, name in enumerate(names)}
        return SequenceBatch(x, values)


SEQUENCES.add(
    "given",
    lambda seq_len=18, factor_names=None, **_: GivenSequences(seq_len, factor_names),
)
SEQUENCES.add(
    "single_factor",
    lambda transforms=FACTORS, seq_len=18, **_: SingleFactorSequences(transforms, seq_len),
)
SEQUENCES.add("rotation_hue", lambda seq_len=18, **_: JointSequences(seq_len))
SEQUENCES.add("perspective_hue", lambda seq_len=18, **_: JointSequences(seq_len, True))
SEQUENCES.add(
    "dsprites", lambda seq_len=15, ground_truth=None, **_: DSpritesSequences(ground_truth, seq_len)
)
SEQUENCES.add("none", lambda **_: SingleImages())


@dataclasses.dataclass(frozen=True)
class SequenceTraits:
    """What the measurements may assume about the sequences of a builder.

    ``stepped_factors``: the names of the factors of which each sequence varies exactly one,
    indexed by its recorded ``varied`` factor (the per-transformation split of Table 2);
    ``one_step_per_frame``: consecutive frames are one step of the varied factor apart (what the
    capsule-offset correlation assumes); ``factor_grid``: the factor values the steps walk
    through (the original code's capsule correlation indexes frames on it); ``own_factors``:
    the per-frame factors are the user's own (scored per factor, :mod:`topovae.evaluate_own`).
    """

    stepped_factors: tuple[str, ...] | None = None
    one_step_per_frame: bool = False
    factor_grid: Mapping[str, np.ndarray] | None = None
    own_factors: bool = False


def sequence_traits(name: str | None) -> SequenceTraits:
    """The :class:`SequenceTraits` of the builder ``name`` (nothing assumed for other names)."""
    traits = {
        "single_factor": SequenceTraits(stepped_factors=FACTORS),
        "dsprites": SequenceTraits(stepped_factors=DSpritesSequences.STEPPED,
                                   one_step_per_frame=True, factor_grid=SUBGRID),
        "given": SequenceTraits(one_step_per_frame=True, own_factors=True),
    }
    return traits.get(str(name), SequenceTraits())


def build_sequences(name: str, **options: Any) -> Builder:
    """The builder ``name`` of :data:`SEQUENCES` (options: ``transforms``, ``seq_len``,
    ``ground_truth``, ``factor_names``; those a builder does not use are ignored)."""
    return SEQUENCES.get(name)(**options)
