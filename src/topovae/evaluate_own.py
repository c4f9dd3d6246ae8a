"""The measurements of ``topovae evaluate`` that depend on your own sequences' factor labels.

For ``data.source=sequences`` the frames are taken to be one transformation step apart (what the
equivariance error, the roll prediction and the capsule-offset correlation with its default
offsets assume). Where the sequences carry per-frame factors ``(N, S, F)``:

* ``per_transformation``: for each factor, the test sequences in which it is the only factor
  that changes: E_eq, its shuffled control and their ratio, and the capsule-offset correlation
  against the factor's own step index (the rank of its value among the values it takes in the
  test set, so a factor stepping through 0, 20, 40 ... degrees counts 0, 1, 2 ...);
* ``--metrics mig,sap,dci``: those scores of the single-frame code ``model.representation``
  against the factors of the test frames (each factor discretised to the index of its value,
  or to 20 equal-width bins when it takes more than 20 values); the first half of the test
  frames trains SAP's and DCI's classifiers, the second half tests them.

The FactorVAE and beta-VAE scores need images drawn with one factor held fixed, which only a
dataset that renders images from chosen factors (dSprites) can give. Whatever cannot be measured
is recorded as one line under ``*_unavailable`` instead of failing the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["NO_FACTORS", "per_factor", "own_disentanglement"]

NO_FACTORS = ("the test sequences carry no per-frame factors (data.factors_path, or 'factors' "
              "in the .npz files)")
N_BINS = 20


def _step_index(values: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` rank of every value among the distinct values of ``values``."""
    distinct = torch.unique(values)
    return torch.searchsorted(distinct, values.contiguous())


def per_factor(codes: torch.Tensor, factors: dict[str, torch.Tensor], seed: int
               ) -> dict[str, Any]:
    """Per factor: E_eq, control, ratio and capsule-offset correlation of the sequences in which
    only that factor changes (factors with fewer than two such sequences are left out)."""
    from topovae.metrics.equivariance import (
        capsule_offset_correlation,
        equivariance_error,
        equivariance_error_control,
    )

    names = list(factors)
    if not names:
        return {}
    changing = torch.stack([(f.amax(1) != f.amin(1)) for f in factors.values()], dim=1).cpu()
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        only = changing[:, j] & (changing.sum(1) == 1)
        rows = codes[only.to(codes.device)]
        if len(rows) < 2:
            continue
        error = float(equivariance_error(rows))
        control = float(equivariance_error_control(rows, seed=seed))
        steps = _step_index(factors[name][only].double())
        corr = capsule_offset_correlation(rows, steps)
        correlation = float(corr["correlation"])
        out[name] = {"n_sequences": int(len(rows)), "equivariance_error": error,
                     "equivariance_error_control": control,
                     "equivariance_ratio": error / control if control > 0 else None,
                     "capsule_offset_correlation": correlation if np.isfinite(correlation)
                     else None, "capsule_offset_accuracy": float(corr["accuracy"])}
    return out


def _discrete(values: np.ndarray) -> np.ndarray:
    """Factor columns ``(N, F)`` as integer codes: value index, or equal-width bins."""
    out = np.empty(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        column = values[:, j]
        distinct, index = np.unique(column, return_inverse=True)
        if len(distinct) <= N_BINS:
            out[:, j] = index
        else:
            edges = np.histogram_bin_edges(column, bins=N_BINS)
            out[:, j] = np.clip(np.digitize(column, edges[1:-1]), 0, N_BINS - 1)
    return out


def own_disentanglement(model: torch.nn.Module, x: torch.Tensor,
                        factors: dict[str, torch.Tensor], names: Sequence[str], seed: int,
                        batch_size: int = 256) -> dict[str, Any]:
    """MIG, SAP and DCI of ``model.representation`` on the frames of ``x`` against their
    factors; the FactorVAE and beta-VAE scores are marked unavailable (see the module)."""
    from topovae.metrics import disentanglement as dis

    out: dict[str, Any] = {}
    for name in names:
        if name in ("factor_vae", "beta_vae"):
            out[f"{name}_unavailable"] = (f"{name} needs images rendered with one factor held "
                                          "fixed (a ground-truth dataset such as dSprites); "
                                          "your sequences only have the factors of their frames")
    wanted = [n for n in names if n in ("mig", "sap", "dci")]
    if not wanted:
        return out
    if not factors:
        for name in wanted:
            out[f"{name}_unavailable"] = f"{name} needs factor labels: {NO_FACTORS}"
        return out
    frames = x.flatten(0, 1)
    with torch.no_grad():
        codes = torch.cat([model.representation(frames[i:i + batch_size]).cpu()
                           for i in range(0, len(frames), batch_size)]).double().numpy()
    values = torch.stack([f.flatten() for f in factors.values()], dim=1).double().cpu().numpy()
    discrete = _discrete(values)
    keep = [j for j in range(discrete.shape[1]) if len(np.unique(discrete[:, j])) > 1]
    out["factor_names"] = [list(factors)[j] for j in keep]
    if not keep:
        for name in wanted:
            out[f"{name}_unavailable"] = f"{name}: no factor varies over the test frames"
        return out
    discrete = discrete[:, keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(codes))
    half = len(order) // 2
    train, test = order[:half], order[half:]
    out["n_frames"] = int(len(codes))
    if "mig" in wanted:
        out["mig"] = dis.mig(codes, discrete)
    if "sap" in wanted:
        out["sap"] = dis.stored("sap", dis.sap(codes[train], discrete[train], codes[test],
                                               discrete[test]))
    if "dci" in wanted:
        out["dci"] = dis.dci(codes[train], discrete[train], codes[test], discrete[test],
                             seed=seed)
    return out
