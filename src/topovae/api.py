"""Train on sequences you already have in memory, in one call.

``train_on_sequences(x, "runs/mine")`` writes ``x`` (``(N, S, C, H, W)``, uint8 or float in
[0, 1], a tensor or an array) into the new run directory as ``RUN/data/sequences.npy`` (and the
factors ``(N, S, F)`` as ``RUN/data/factors.npy``), trains the ``tvae-sequences`` preset on it
(``data.source=sequences``, S and the frame shape from ``x``) and returns the run directory, which
:func:`evaluate_run` and :func:`build_report` read like any other run::

    from topovae.api import train_on_sequences, evaluate_run, build_report
    run = train_on_sequences(x, "runs/mine", overrides={"train.max_time": 120})
    print(evaluate_run(run)["equivariance_ratio"]); build_report(run)

The data are checked before anything is written; if preparing the run fails, the directory it
created is removed again.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from topovae.io import atomic_write
from topovae.measure import evaluate_run
from topovae.report import build_report

__all__ = ["train_on_sequences", "evaluate_run", "build_report"]


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(value))


def _save(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def train_on_sequences(sequences: Any, out: str | Path, *, factors: Any = None,
                       factor_names: Sequence[str] | None = None,
                       preset: str = "tvae-sequences",
                       overrides: Mapping[str, Any] | None = None) -> Path:
    """Train ``preset`` on ``sequences`` ``(N, S, C, H, W)`` into the new run directory ``out``.

    ``factors`` ``(N, S, F)`` (optional) are the per-frame factor values the measurements use;
    ``overrides`` are dotted config keys as on the command line (``{"train.max_time": 120}``).
    Returns the run directory.
    """
    from topovae.data.files import check_factors, check_pixels, check_sequence_array
    from topovae.presets import load_preset
    from topovae.rundir import CHECKPOINT_DIR, CONFIG_FILE, RunDir, check_output_dir
    from topovae.training.experiment import adapt_to_data, check_data
    from topovae.training.trainer import fit

    x = _array(sequences)
    check_sequence_array(x, Path("sequences"))
    check_pixels(x, "sequences", what="sequence")
    f = None
    if factors is not None:
        f = check_factors(_array(factors), x.shape, Path("factors"), Path("sequences"))
    run_dir = check_output_dir(out)
    data_dir = run_dir / "data"
    settings: dict[str, Any] = {"data.source": "sequences", "data.sequences": "given",
                                "data.path": str(data_dir / "sequences.npy")}
    if f is not None:
        settings["data.factors_path"] = str(data_dir / "factors.npy")
    if factor_names is not None:
        settings["data.factor_names"] = list(factor_names)
    experiment = load_preset(preset).with_overrides({"preset": preset, **settings,
                                                     **dict(overrides or {})})
    created = not run_dir.exists()
    data_dir.mkdir(parents=True)
    try:
        _save(data_dir / "sequences.npy", x)
        if f is not None:
            _save(data_dir / "factors.npy", f)
        experiment = adapt_to_data(experiment)
        check_data(experiment)
        (run_dir / CHECKPOINT_DIR).mkdir()
        RunDir(run_dir).write_config(experiment)
    except BaseException:  # nothing half-written: remove what was created
        for path in ([run_dir] if created else [data_dir, run_dir / CHECKPOINT_DIR]):
            shutil.rmtree(path, ignore_errors=True)
        (run_dir / CONFIG_FILE).unlink(missing_ok=True)
        raise
    fit(experiment, run_dir)
    return run_dir
