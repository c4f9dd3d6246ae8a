"""Figures of a run, as pure functions of arrays: each writes one small PNG and returns its path.

Image grids are drawn as one mosaic array shown with nearest-neighbour interpolation (a single
``imshow`` keeps files at tens of kilobytes); frames ``(C, H, W)`` with one channel are shown in
grey, with three channels as RGB. Every function accepts numpy arrays or torch tensors (moved to
the CPU). Matplotlib runs on the Agg backend and every figure is closed after saving.

:func:`~topovae.metrics.topographic_map.topographic_score` (re-exported here) is the number
that goes with the class-selectivity map.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from topovae.io import atomic_write  # noqa: E402
from topovae.metrics.topographic_map import class_profiles, topographic_score  # noqa: E402

__all__ = ["plot_roll_traversal", "plot_reconstructions", "plot_samples", "plot_training_curves",
           "plot_class_selectivity", "plot_max_activating", "topographic_score",
           "read_metrics_csv", "image_mosaic"]

DPI = 100
PAD_VALUE = 0.55  # mid grey between tiles, visible on black and white digits


from topovae.metrics.topographic_map import _grid_shape, _numpy  # noqa: E402


def image_mosaic(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile ``(R, K, C, H, W)`` images into one ``(R*(H+pad)+pad, K*(W+pad)+pad[, 3])`` array."""
    if images.ndim != 5:
        raise ValueError(f"images must be shaped (R, K, C, H, W), got {images.shape}")
    r, k, c, h, w = images.shape
    images = np.clip(images, 0.0, 1.0)
    if c == 3:
        tiles = images.transpose(0, 1, 3, 4, 2)
    elif c == 1:
        tiles = images[:, :, 0]
    else:  # show the first channel of anything else
        tiles = images[:, :, 0]
    shape = (r * (h + pad) + pad, k * (w + pad) + pad) + ((3,) if c == 3 else ())
    canvas = np.full(shape, PAD_VALUE)
    for i in range(r):
        for j in range(k):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y:y + h, x:x + w] = tiles[i, j]
    return canvas


def _show_mosaic(images: np.ndarray, path: str | Path, *, row_labels: Sequence[str] = (),
                 col_labels: Sequence[str] = (), title: str = "", scale: float = 1.0) -> Path:
    """Draw :func:`image_mosaic` of ``(R, K, C, H, W)`` with optional row/column labels."""
    r, k, _, h, w = images.shape
    mosaic = image_mosaic(images)
    # about 0.45 inch per 28-pixel tile, never less than 2 inches wide
    inches_per_pixel = 0.45 / 28 * scale
    width = max(2.0, mosaic.shape[1] * inches_per_pixel + (1.6 if row_labels else 0.3))
    height = max(1.2, mosaic.shape[0] * inches_per_pixel + (0.5 if title else 0.15)
                 + (0.3 if col_labels else 0.0))
    fig, ax = plt.subplots(figsize=(width, height), dpi=DPI)
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([1 + j * (w + 1) + w / 2 - 0.5 for j in range(k)] if col_labels else [])
    ax.set_xticklabels(list(col_labels), fontsize=7)
    ax.xaxis.set_ticks_position("top")
    ax.set_yticks([1 + i * (h + 1) + h / 2 - 0.5 for i in range(r)] if row_labels else [])
    ax.set_yticklabels(list(row_labels), fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9, pad=14 if col_labels else 4)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format=path.suffix[1:] or "png",
                                                      dpi=DPI, bbox_inches="tight",
                                                      pad_inches=0.05))
    finally:
        plt.close(fig)
    return path


def _as_sequences(array: Any, name: str) -> np.ndarray:
    """``(S, C, H, W)`` -> ``(1, S, C, H, W)``; ``(N, S, C, H, W)`` unchanged."""
    out = _numpy(array, name)
    if out.ndim == 4:
        out = out[None]
    if out.ndim != 5:
        raise ValueError(f"{name} must be shaped (S, C, H, W) or (N, S, C, H, W), "
                         f"got {out.shape}")
    return out


def plot_roll_traversal(true_frames: Any, rolled_decodes: Any, path: str | Path, *,
                        shifts: Sequence[int] | None = None,
                        context_decodes: Any = None) -> Path:
    """The commutative diagram of Figure 1: true frames above decodes of rolled codes.

    ``true_frames`` and ``rolled_decodes`` are ``(S, C, H, W)`` for one sequence or
    ``(N, S, C, H, W)`` for several (stacked as groups of rows). Column ``k`` shows true frame
    ``x_k`` and ``decode(Roll_k(t_0))``, the decoded code of frame 0 rolled by ``shifts[k]``
    (default ``k``) units along every capsule. ``context_decodes`` (same shape), when given, adds
    a third row per sequence: the same with ``t_0`` computed from the whole sequence.
    """
    truth = _as_sequences(true_frames, "true_frames")
    rolled = _as_sequences(rolled_decodes, "rolled_decodes")
    groups = [truth, rolled]
    if truth.shape != rolled.shape:
        raise ValueError(f"true_frames {truth.shape} and rolled_decodes {rolled.shape} must "
                         "have the same shape")
    if context_decodes is not None:
        context = _as_sequences(context_decodes, "context_decodes")
        if context.shape != truth.shape:
            raise ValueError(f"context_decodes {context.shape} must have the shape of "
                             f"true_frames {truth.shape}")
        groups.append(context)
    n, s = truth.shape[:2]
    shifts = list(range(s)) if shifts is None else [int(k) for k in shifts]
    if len(shifts) != s:
        raise ValueError(f"shifts must have one entry per frame ({s}), got {len(shifts)}")
    rows = np.stack([g[i] for i in range(n) for g in groups])
    names = ["true $x_k$", "decode(Roll$_k$ $t_0$)", "same, $t_0$ from sequence"][:len(groups)]
    labels = [f"seq {i + 1}: {name}" if j == 0 else name
              for i in range(n) for j, name in enumerate(names)]
    title = ("capsule roll of frame 0 vs true frames" if context_decodes is None else
             "capsule roll of frame 0 (frame 0 alone; from its sequence) vs true frames")
    return _show_mosaic(rows, path, row_labels=labels, col_labels=[f"k={k}" for k in shifts],
                        title=title)


def plot_reconstructions(x: Any, probs: Any, path: str | Path, *, max_images: int = 12) -> Path:
    """Data (top row) and decoded pixel probabilities (bottom row) of up to ``max_images`` images.

    ``x`` and ``probs`` are ``(N, C, H, W)`` or ``(N, S, C, H, W)`` (frames are flattened).
    """
    data = _numpy(x, "x")
    recon = _numpy(probs, "probs")
    if data.shape != recon.shape:
        raise ValueError(f"x {data.shape} and probs {recon.shape} must have the same shape")
    if data.ndim == 5:
        data, recon = data.reshape(-1, *data.shape[2:]), recon.reshape(-1, *recon.shape[2:])
    if data.ndim != 4:
        raise ValueError(f"x must be shaped (N, C, H, W) or (N, S, C, H, W), got {data.shape}")
    m = min(max_images, data.shape[0])
    rows = np.stack([data[:m], recon[:m]])
    return _show_mosaic(rows, path, row_labels=["data", "reconstruction"],
                        title="reconstructions (decoded deterministic code)")


def plot_samples(probs: Any, path: str | Path, *, columns: int = 8) -> Path:
    """Prior samples: ``(N, C, H, W)`` in rows of ``columns``, or ``(N, S, C, H, W)`` one
    sequence per row."""
    samples = _numpy(probs, "probs")
    if samples.ndim == 5:
        rows = samples
        title = "sequences sampled from the prior (one per row)"
    elif samples.ndim == 4:
        n = samples.shape[0]
        columns = max(1, min(columns, n))
        n_rows = math.ceil(n / columns)
        padded = np.full((n_rows * columns, *samples.shape[1:]), PAD_VALUE)
        padded[:n] = samples
        rows = padded.reshape(n_rows, columns, *samples.shape[1:])
        title = "samples from the prior"
    else:
        raise ValueError(f"probs must be shaped (N, C, H, W) or (N, S, C, H, W), "
                         f"got {samples.shape}")
    return _show_mosaic(rows, path, title=title)


# -- training curves ----------------------------------------------------------------------------
def read_metrics_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read Lightning's ``metrics.csv`` into ``column -> float array`` (empty cells are NaN)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"metrics file {path} does not exist")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns: dict[str, list[float]] = {name: [] for name in (reader.fieldnames or [])}
        for row in reader:
            for name in columns:
                cell = (row.get(name) or "").strip()
                try:
                    columns[name].append(float(cell) if cell else math.nan)
                except ValueError:
                    columns[name].append(math.nan)
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


_CURVE_ORDER = ("loss", "recon_nll", "kl", "kl_z", "kl_u", "mu", "equivariance_ratio",
                "roll_gain", "mi", "tc", "dwkl", "tc_estimate", "discriminator_loss")
#: Panel titles of the quantities whose bare name says too little.
_CURVE_TITLES = {
    "recon_nll": "recon_nll (nats per image)", "kl_z": "KL_z (nats per image)",
    "kl_u": "KL_u (nats per image)", "mu": "mu (offset of the capsule code)",
    "equivariance_ratio": "equivariance ratio, held-out batch\n(lower is better; 1 = chance)",
    "roll_gain": "roll-prediction gain, held-out batch\n(nats per image over no change)",
}
#: Logged columns that are bookkeeping, not curves.
_CURVE_SKIP = ("seconds", "elbo")


def plot_training_curves(source: str | Path | Mapping[str, Any], path: str | Path, *,
                         max_panels: int = 12) -> Path:
    """One panel per logged quantity (``train/NAME`` and ``val/NAME`` together) against step.

    ``source`` is the path of a Lightning ``metrics.csv`` or a mapping ``column -> values``.
    Missing columns, NaN gaps (Lightning writes one row per logging call) and columns without a
    single finite value are skipped; a file with nothing to plot raises ``ValueError``.
    """
    if isinstance(source, Mapping):
        columns = {k: _numpy(v, k).ravel() for k, v in source.items()}
    else:
        columns = read_metrics_csv(source)
    n_rows = max((len(v) for v in columns.values()), default=0)
    x_name = "step" if "step" in columns else ("epoch" if "epoch" in columns else None)
    x_all = columns[x_name] if x_name else np.arange(n_rows, dtype=np.float64)

    panels: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for name, values in columns.items():
        if name in ("step", "epoch") or len(values) != len(x_all):
            continue
        finite = np.isfinite(values) & np.isfinite(x_all)
        if not finite.any():
            continue
        split, base = ("", name) if "/" not in name else name.split("/", 1)
        base = base.removesuffix("_epoch").removesuffix("_step")
        if base in _CURVE_SKIP:
            continue
        panels.setdefault(base, []).append((split or name, x_all[finite], values[finite]))
    if not panels:
        raise ValueError("the training log holds no values to plot")

    def order(name: str) -> tuple[int, str]:
        return (_CURVE_ORDER.index(name) if name in _CURVE_ORDER else len(_CURVE_ORDER), name)

    names = sorted(panels, key=order)[:max_panels]
    n_cols = min(3, len(names))
    n_rows_fig = math.ceil(len(names) / n_cols)
    fig, axes = plt.subplots(n_rows_fig, n_cols, figsize=(3.3 * n_cols, 2.4 * n_rows_fig),
                             dpi=DPI, squeeze=False)
    for ax, name in zip(axes.ravel()[:len(names)], names, strict=True):
        for label, xs, ys in panels[name]:
            style = "o-" if len(xs) < 30 else "-"
            ax.plot(xs, ys, style, label=label, linewidth=1.2, markersize=3)
        ax.set_title(_CURVE_TITLES.get(name, name), fontsize=9)
        ax.set_xlabel(x_name or "row", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(panels[name]) > 1:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle("training curves", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# -- 2-D topographic maps -----------------------------------------------------------------------
def plot_class_selectivity(codes: Any, labels: Any, grid_shape: Sequence[int],
                           path: str | Path, *, class_names: Sequence[str] | None = None) -> Path:
    """For each unit of the torus, the class with the highest mean activation (Figure 3)."""
    classes, profiles = class_profiles(codes, labels)
    rows, cols = _grid_shape(grid_shape, profiles.shape[1])
    preferred = profiles.argmax(0).reshape(rows, cols)
    n = len(classes)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20", max(n, 1))
    fig, ax = plt.subplots(figsize=(4.6, 3.6), dpi=DPI)
    ax.imshow(preferred, cmap=cmap, vmin=-0.5, vmax=n - 0.5, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"preferred class of each unit ({rows}x{cols} torus)", fontsize=9)
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    handles = [Patch(color=cmap(i), label=names[i]) for i in range(n)]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8,
              frameon=False, title="class", title_fontsize=8)
    return _save(fig, path)


def plot_max_activating(images: Any, codes: Any, grid_shape: Sequence[int],
                        path: str | Path) -> Path:
    """For each unit, the image (of ``images (N, C, H, W)``) that activates it most, on the grid."""
    imgs = _numpy(images, "images")
    z = _numpy(codes, "codes")
    if imgs.ndim != 4 or z.ndim != 2 or imgs.shape[0] != z.shape[0]:
        raise ValueError(f"images (N, C, H, W) and codes (N, d) must have the same N, got "
                         f"{imgs.shape} and {z.shape}")
    rows, cols = _grid_shape(grid_shape, z.shape[1])
    best = z.argmax(0)
    grid = imgs[best].reshape(rows, cols, *imgs.shape[1:])
    return _show_mosaic(grid, path, title="most activating image of each unit",
                        scale=0.6 if rows * cols > 100 else 1.0)
