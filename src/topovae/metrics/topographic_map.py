"""How topographic a 2-D map of units is (Figure 3 of the paper), as a number.

Each unit's *class profile* is its mean activation for each class. On a topographic map,
neighbouring units respond to the same classes, so neighbours' profiles correlate more than the
profiles of units placed at random: :func:`topographic_score` compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["class_profiles", "topographic_score"]


def _numpy(array: Any, name: str) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None


def _grid_shape(grid_shape: Sequence[int], d: int) -> tuple[int, int]:
    if len(grid_shape) != 2 or any(int(g) <= 0 for g in grid_shape):
        raise ValueError(f"grid_shape must be two positive sizes, got {grid_shape}")
    rows, cols = int(grid_shape[0]), int(grid_shape[1])
    if rows * cols != d:
        raise ValueError(f"grid_shape {grid_shape} has {rows * cols} units but codes have {d}")
    return rows, cols


def _codes_labels(codes: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = _numpy(codes, "codes")
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if z.ndim != 2:
        raise ValueError(f"codes must be shaped (N, d), got {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must be shaped (N,) = ({z.shape[0]},), got {y.shape}")
    return z, y


def class_profiles(codes: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation of every unit for every class: ``(classes, profiles (n_classes, d))``."""
    z, y = _codes_labels(codes, labels)
    classes = np.unique(y)
    profiles = np.stack([z[y == c].mean(0) for c in classes])
    return classes, profiles


def _neighbour_correlation(profiles: np.ndarray, rows: int, cols: int) -> float:
    """Mean Pearson correlation (over classes) between each unit and its right/down torus
    neighbours; units with a flat profile count as uncorrelated."""
    centred = profiles - profiles.mean(0, keepdims=True)
    norms = np.linalg.norm(centred, axis=0)
    unit = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 1e-12)
    grid = unit.reshape(unit.shape[0], rows, cols)
    right = (grid * np.roll(grid, -1, axis=2)).sum(0)
    down = (grid * np.roll(grid, -1, axis=1)).sum(0)
    pairs = []
    if cols > 1:
        pairs.append(right.ravel())
    if rows > 1:
        pairs.append(down.ravel())
    if not pairs:
        raise ValueError("grid_shape must have more than one unit")
    return float(np.concatenate(pairs).mean())


def topographic_score(codes: Any, labels: Any, grid_shape: Sequence[int], seed: int = 0,
                      n_shuffles: int = 20) -> dict[str, float]:
    """How topographic a map is: neighbour similarity of class profiles against a shuffled map.

    Each unit's *class profile* is its mean activation per class. ``score`` is the mean Pearson
    correlation between the profiles of torus neighbours (right and down, with wrap-around);
    ``control`` is the same on maps whose units were placed at random positions (mean over
    ``n_shuffles`` seeded shuffles, ``control_std`` their spread). A topographic map has
    ``score`` well above ``control``; ``excess = score - control``.
    """
    _, profiles = class_profiles(codes, labels)
    rows, cols = _grid_shape(grid_shape, profiles.shape[1])
    if n_shuffles < 1:
        raise ValueError(f"n_shuffles must be positive, got {n_shuffles}")
    score = _neighbour_correlation(profiles, rows, cols)
    rng = np.random.default_rng(seed)
    controls = [_neighbour_correlation(profiles[:, rng.permutation(profiles.shape[1])], rows, cols)
                for _ in range(n_shuffles)]
    control = float(np.mean(controls))
    return {"score": score, "control": control, "control_std": float(np.std(controls)),
            "excess": score - control}
