"""Run directories: creating them safely and reading them back.

Layout (see ``docs/architecture.md``)::

    RUN/config.yaml                    the ExperimentConfig (with format_version)
    RUN/model.json, model.safetensors  final weights
    RUN/checkpoints/last.ckpt          Lightning checkpoint for --resume
    RUN/logs/csv, RUN/logs/tensorboard training logs
    RUN/metrics.json                   topovae evaluate
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from topovae.models.base import GenerativeModel, load_model
from topovae.training.experiment import FORMAT_VERSION, ExperimentConfig, ensure_models_registered

__all__ = ["CONFIG_FILE", "CHECKPOINT_DIR", "Run", "check_output_dir", "create_run_dir",
           "read_run_config", "load_run", "atomic_write_text", "atomic_write_json"]

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_output_dir(path: str | Path) -> Path:
    """Check that a new run can be created at ``path`` without creating anything.

    ``path`` must not exist (or be an empty directory) and its nearest existing parent must be a
    writable directory. Raises ``ValueError`` saying what to do.
    """
    path = Path(path).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--out {path} exists and is not a directory; choose a new path")
        if any(path.iterdir()):
            hint = (" (it holds a run: continue it with --resume)"
                    if (path / CONFIG_FILE).exists() else "")
            raise ValueError(f"--out {path} is not empty{hint}; choose a new path")
        probe_dir = path
    else:
        probe_dir = path.parent
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise ValueError(f"--out {path}: {probe_dir} is not a directory")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: {probe_dir} is not writable; choose a writable location")
    try:  # os.access can be wrong (root, network file systems): really try
        with tempfile.TemporaryFile(dir=probe_dir):
            pass
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write in {probe_dir} ({err.strerror}); "
                         "choose a writable location") from None
    return path


def create_run_dir(path: str | Path, experiment: ExperimentConfig) -> Path:
    """Create ``path`` (checked with :func:`check_output_dir`) and write its ``config.yaml``."""
    path = check_output_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CHECKPOINT_DIR).mkdir(exist_ok=True)
    atomic_write_text(path / CONFIG_FILE, experiment.resolved().to_yaml())
    return path


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """Read ``RUN/config.yaml``; a missing file or another format version is a ``ValueError``."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{run_dir} is not a topovae run directory ({CONFIG_FILE} is missing)")
    try:
        data = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{config_path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{config_path} does not hold an experiment config")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{run_dir} was written by an incompatible topovae version (run format {version}, "
            f"this version reads {FORMAT_VERSION}); retrain it or use a matching topovae"
        )
    ensure_models_registered()
    return ExperimentConfig.from_dict(data)


@dataclasses.dataclass
class Run:
    """A run directory read back: its path, experiment config and (if saved) final model."""

    path: Path
    config: ExperimentConfig
    model: GenerativeModel | None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR / "last.ckpt"


def load_run(run_dir: str | Path, map_location: str = "cpu", require_model: bool = True) -> Run:
    """Read a run directory; with ``require_model`` its final weights must exist."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    model = None
    if (run_dir / "model.json").exists():
        model = load_model(run_dir, map_location=map_location)
    elif require_model:
        raise ValueError(f"{run_dir} has no trained model yet (model.json is missing); "
                         "finish it with topovae train --resume")
    return Run(path=run_dir, config=config, model=model)
