"""dSprites: the official array and a procedural renderer of the same factor grid.

The factor grid of dSprites (Matthey et al., 2017): 3 shapes (square, ellipse, heart) x 6 scales
(0.5 .. 1) x 40 orientations over 2*pi x 32 x 32 positions in [0, 1], 64x64 binary images.

:class:`RenderedDSprites` draws any grid point on demand, vectorised over a batch, by evaluating the
shape's implicit inside-test on a supersampled pixel grid (2x2 samples per pixel by default)
and thresholding the coverage at 1/2.
It needs no download, so dSprites sequences and the disentanglement metrics run offline. It is a
re-rendering, not a copy: the official sprites differ in pixel detail (sizes, the heart's outline,
anti-aliasing), so numbers measured on it are comparable across models here, not to published
numbers on the official array. Its orientations are ``2*pi*k/40`` (exactly periodic), whereas the
official array uses ``linspace(0, 2*pi, 40)`` (first and last orientations coincide).
:class:`DSpritesArray` serves the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from .download import DSPRITES_FILES, locate_files

FACTOR_NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPES = ["square", "ellipse", "heart"]
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = 2 * np.pi * np.arange(40) / 40
POSITIONS = np.linspace(0.0, 1.0, 32)
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
CITATION = (
    "Matthey, Higgins, Hassabis, Lerchner. dSprites: Disentanglement testing Sprites dataset. "
    "https://github.com/deepmind/dsprites-dataset, 2017"
)

# The sub-grid of the TVAE dSprites protocol: 3 shapes x 5 scales x 15 orientations (every 2nd of
# 40) x 15 x 15 positions (every 2nd of 32) = 50,625 images (full-grid indices of each factor).
SUBGRID: dict[str, np.ndarray] = {
    "shape": np.arange(3),
    "scale": np.arange(1, 6),
    "orientation": np.arange(0, 30, 2),
    "pos_x": np.arange(0, 30, 2),
    "pos_y": np.arange(0, 30, 2),
}


def subgrid_factors() -> np.ndarray:
    """All ``(50625, 5)`` full-grid factor indices of the protocol's sub-grid, row-major."""
    mesh = np.meshgrid(*(SUBGRID[name] for name in FACTOR_NAMES), indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.int64)


def _check_factors(factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(f"factors must have shape (n, {len(FACTOR_NAMES)}), got {factors.shape}")
    sizes = np.asarray(FACTOR_SIZES)
    if (factors < 0).any() or (factors >= sizes).any():
        raise ValueError(f"factors out of range; sizes are {FACTOR_SIZES} for {FACTOR_NAMES}")
    return factors.astype(np.int64)


class RenderedDSprites:
    """Procedural dSprites: exact ground-truth factors, images rendered on demand.

    Geometry (image coordinates in [0, 1], y down): the centre is at ``0.2 + 0.6 * pos``; at scale 1
    the square has side 0.24, the ellipse semi-axes 0.16 x 0.08, the heart is about 0.26 wide.
    Implements :class:`~topovae.data.ground_truth.GroundTruthData`.
    """

    def __init__(self, supersample: int = 2, chunk: int = 512, device: str | torch.device = "cpu"):
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.supersample = supersample
        self.chunk = chunk
        self.device = torch.device(device)
        n = 64 * supersample
        coords = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        self._ys, self._xs = torch.meshgrid(coords, coords, indexing="ij")

    @property
    def factor_names(self) -> list[str]:
        return list(FACTOR_NAMES)

    @property
    def factor_sizes(self) -> list[int]:
        return list(FACTOR_SIZES)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (1, 64, 64)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, size=n) for s in FACTOR_SIZES], axis=1)

    @staticmethod
    def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Inside-test in the sprite's own frame (scale 1, unrotated, y up)."""
        if shape == 0:  # square
            return (u.abs() <= 0.12) & (v.abs() <= 0.12)
        if shape == 1:  # ellipse, long axis along u
            return (u / 0.16) ** 2 + (v / 0.08) ** 2 <= 1.0
        # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, spanning about [-1.14, 1.14] x [-1, 1.25]
        x = u / 0.115
        y = v / 0.115 + 0.12
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        factors = _check_factors(factors)
        out = torch.empty((len(factors), 1, 64, 64), dtype=torch.float32, device=self.device)
        for start in range(0, len(factors), self.chunk):
            part = factors[start : start + self.chunk]
            out[start : start + len(part)] = self._render(part)
        return out

    def _render(self, factors: np.ndarray) -> torch.Tensor:
        n = len(factors)
        xs = self._xs.to(self.device)
        ys = self._ys.to(self.device)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=self.device)  # noqa: E731
        scale = as_t(SCALES[factors[:, 1]]).view(n, 1, 1)
        theta = as_t(ORIENTATIONS[factors[:, 2]]).view(n, 1, 1)
        cx = as_t(0.2 + 0.6 * POSITIONS[factors[:, 3]]).view(n, 1, 1)
        cy = as_t(0.2 + 0.6 * POSITIONS[factors[:, 4]]).view(n, 1, 1)
        dx = xs - cx
        dy = cy - ys  # y up
        cos, sin = torch.cos(theta), torch.sin(theta)
        u = (cos * dx + sin * dy) / scale  # rotate by -theta: the sprite turns by +theta
        v = (-sin * dx + cos * dy) / scale
        inside = torch.zeros_like(u, dtype=torch.bool)
        shapes = torch.as_tensor(factors[:, 0], device=self.device)
        for shape in range(3):
            rows = shapes == shape
            if rows.any():
                inside[rows] = self._inside(shape, u[rows], v[rows])
        s = self.supersample
        coverage = inside.float().view(n, 64, s, 64, s).mean(dim=(2, 4))
        return (coverage >= 0.5).float().unsqueeze(1)


class DSpritesArray:
    """The official dSprites array (``imgs`` of shape (737280, 64, 64)), indexed by factors.

    Implements :class:`~topovae.data.ground_truth.GroundTruthData` on the same factor grid as
    :class:`RenderedDSprites` (the constant colour factor of the file is dropped).
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)  # arrays only: never unpickles
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"dSprites file {path} is not a readable .npz archive "
                             f"({err or type(err).__name__})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"dSprites file {path} is a single .npy array, not the .npz "
                             "archive of the dSprites dataset")
        try:
            with data:
                imgs = data["imgs"]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"dSprites file {path} is unreadable or lacks 'imgs': {err}"
                             ) from None
        if imgs.dtype not in (np.uint8, np.bool_):
            raise ValueError(f"dSprites file {path} has imgs of dtype {imgs.dtype}, expected "
                             "uint8 (binary images)")
        self.imgs = np.asarray(imgs, dtype=np.uint8)
        expected = int(np.prod(FACTOR_SIZES))
        if self.imgs.shape != (expected, 64, 64):
            raise ValueError(
                f"dSprites file {path} has imgs of shape {self.imgs.shape}, "
                f"expected {(expected, 64, 64)}"
            )
        self.path = path
        sizes = np.asarray(FACTOR_SIZES)
        self._strides = np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]])

    @classmethod
    def locate(cls, data_dir: str | Path | None = None, download: bool = True) -> DSpritesArray:
        paths = locate_files(DSPRITES_FILES, [NPZ_NAME], data_dir=data_dir, download=download)
        return cls(paths[NPZ_NAME])

    factor_names = RenderedDSprites.factor_names
    factor_sizes = RenderedDSprites.factor_sizes
    observation_shape = RenderedDSprites.observation_shape
    sample_factors = RenderedDSprites.sample_factors

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        factors = _check_factors(factors)
        index = factors @ self._strides
        return torch.from_numpy(self.imgs[index].astype(np.float32)).unsqueeze(1)


def centroid(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) centroid ``(x, y)`` in pixels of (N, 1, H, W) masks (used by tests and checks)."""
    h, w = images.shape[-2:]
    mass = images.sum(dim=(-1, -2, -3)).clamp_min(1e-12)
    ys = torch.arange(h, dtype=images.dtype, device=images.device) + 0.5
    xs = torch.arange(w, dtype=images.dtype, device=images.device) + 0.5
    cx = (images.sum(dim=(-3, -2)) * xs).sum(-1) / mass
    cy = (images.sum(dim=(-3, -1)) * ys).sum(-1) / mass
    return torch.stack([cx, cy], dim=-1)
