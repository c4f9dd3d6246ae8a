"""The run folder: the one module that creates, reads and writes ``RUN/``.

Layout (see ``docs/architecture.md``)::

    RUN/config.yaml                    the ExperimentConfig (with format_version)
    RUN/model.json, model.safetensors  final weights (GenerativeModel.save)
    RUN/checkpoints/last.ckpt          Lightning checkpoint for --resume
    RUN/logs/csv, RUN/logs/tensorboard training logs
    RUN/train_summary.json             wall time, steps and machine of training
    RUN/metrics.json                   topovae evaluate (schema: topovae.measure.schema)
    RUN/report/                        topovae report (index.html, roll_traversal.png, ...)
    RUN/commands.txt                   the commands that made it (scripts/reproduce.sh)

:class:`RunDir` is what every other part uses: ``topovae train`` creates one
(:meth:`RunDir.create`), ``evaluate`` reads its typed config and model and writes its results
(:meth:`RunDir.write_results`), ``report`` and ``compare`` read config, results and train summary
back. ``config.yaml`` is parsed in one place (:meth:`RunDir.config`), so every reader refuses
the same broken or incompatible folders with the same one-line error. Every file is written
atomically (:mod:`topovae.io`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from topovae.format import FORMAT_VERSION
from topovae.io import atomic_write_json, atomic_write_text
from topovae.models.base import GenerativeModel, load_model
from topovae.training.experiment import ExperimentConfig, ensure_models_registered

__all__ = ["FORMAT_VERSION", "CONFIG_FILE", "CHECKPOINT_DIR", "METRICS_FILE", "TRAIN_SUMMARY_FILE",
           "REPORT_DIR", "ROLL_TRAVERSAL", "COMMANDS_FILE", "RunDir", "Results", "Run",
           "check_output_dir", "create_run_dir", "read_run_config", "load_run"]

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"
TRAIN_SUMMARY_FILE = "train_summary.json"
MODEL_FILE = "model.json"
REPORT_DIR = "report"
COMMANDS_FILE = "commands.txt"
ROLL_TRAVERSAL = "roll_traversal.png"


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


def _parse_config(path: Path, run_dir: Path) -> ExperimentConfig:
    """``RUN/config.yaml`` as an ExperimentConfig; every problem a one-line ``ValueError``."""
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a topovae run directory ({CONFIG_FILE} is missing)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold an experiment config")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{run_dir} was written by an incompatible topovae version (run format {version}, "
            f"this version reads {FORMAT_VERSION}); retrain it or use a matching topovae"
        )
    ensure_models_registered()
    try:
        return ExperimentConfig.from_dict(data)
    except (TypeError, KeyError) as err:
        raise ValueError(f"{path} is not a valid experiment config: {err}") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} if absent); ``ValueError`` naming the file otherwise."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


@dataclasses.dataclass(frozen=True)
class Results:
    """``RUN/metrics.json`` read back: its format version and its values.

    ``values`` is the JSON object as written (see :mod:`topovae.measure.schema` for its keys);
    :meth:`number` reads one measurement by its dotted key as a finite float or ``None``.
    """

    values: Mapping[str, Any]
    format_version: int = FORMAT_VERSION

    def get(self, key: str, default: Any = None) -> Any:
        """The value at dotted ``key`` (``default`` when any part is absent)."""
        value: Any = self.values
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return default
            value = value[part]
        return value

    def number(self, key: str) -> float | None:
        """The finite number at dotted ``key``, else ``None``."""
        return _finite(self.get(key))

    def __bool__(self) -> bool:
        return bool(self.values)


class RunDir:
    """One run folder. Nothing is read until asked for; every read is checked.

    ``config`` is the typed :class:`~topovae.training.experiment.ExperimentConfig` (a missing,
    broken or incompatible ``config.yaml`` is a one-line ``ValueError``); :meth:`model` loads the
    final weights; :meth:`results` and :meth:`train_summary` read ``metrics.json`` and
    ``train_summary.json``; :meth:`write_results` writes ``metrics.json`` atomically.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._config: ExperimentConfig | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- creating -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, experiment: ExperimentConfig) -> RunDir:
        """A new run folder at ``path`` (checked with :func:`check_output_dir`) with its
        ``config.yaml`` and an empty ``checkpoints/``."""
        path = check_output_dir(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.checkpoint_dir.mkdir(exist_ok=True)
        run.write_config(experiment)
        return run

    def write_config(self, experiment: ExperimentConfig) -> Path:
        """Write ``config.yaml`` (the resolved experiment) atomically."""
        self._config = None
        ensure_models_registered()
        return atomic_write_text(self.config_path, experiment.resolved().to_yaml())

    # -- paths --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def train_summary_path(self) -> Path:
        return self.path / TRAIN_SUMMARY_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.ckpt"

    @property
    def report_dir(self) -> Path:
        return self.path / REPORT_DIR

    def check_is_dir(self, what: str = "run_dirs") -> RunDir:
        """``self``; ``ValueError`` (``"{what}: not a directory: PATH"``) if there is no folder."""
        if not self.path.is_dir():
            raise ValueError(f"{what}: not a directory: {self.path}")
        return self

    # -- the config ---------------------------------------------------------------------------
    @property
    def has_config(self) -> bool:
        return self.config_path.is_file()

    @property
    def config(self) -> ExperimentConfig:
        """The run's experiment; ``ValueError`` when ``config.yaml`` is missing or invalid."""
        if self._config is None:
            self._config = _parse_config(self.config_path, self.path)
        return self._config

    def config_if_present(self) -> ExperimentConfig | None:
        """:attr:`config`, or ``None`` for a folder without ``config.yaml`` (results only).
        A ``config.yaml`` that is there but broken or incompatible is still a ``ValueError``."""
        return self.config if self.has_config else None

    # -- the model ----------------------------------------------------------------------------
    @property
    def has_model(self) -> bool:
        return (self.path / MODEL_FILE).is_file()

    def model(self, map_location: str | Any = "cpu") -> GenerativeModel:
        """The final model (``model.json`` + ``model.safetensors``); ``ValueError`` if not saved."""
        if not self.has_model:
            raise ValueError(f"{self.path} has no trained model yet (model.json is missing); "
                             "finish it with topovae train --resume")
        return load_model(self.path, map_location=map_location)

    # -- results and summary ------------------------------------------------------------------
    def results(self) -> Results:
        """``metrics.json`` (empty :class:`Results` when not evaluated yet).

        A file of another format version is a ``ValueError``; a file without one (written by
        hand) is read as the current version.
        """
        metrics = _read_json_object(self.metrics_path)
        version = metrics.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"{self.metrics_path} was written by an incompatible topovae version "
                             f"(format {version}, this version reads {FORMAT_VERSION}); "
                             "evaluate the run again")
        return Results(metrics, FORMAT_VERSION)

    def write_results(self, values: Mapping[str, Any]) -> Path:
        """Write ``metrics.json`` (with its ``format_version``) atomically; strict JSON."""
        return atomic_write_json(self.metrics_path, {**values, "format_version": FORMAT_VERSION})

    def train_summary(self) -> dict[str, Any]:
        """``train_summary.json`` ({} when training has not finished a session yet)."""
        return _read_json_object(self.train_summary_path)

    def write_train_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write ``train_summary.json`` atomically."""
        return atomic_write_json(self.train_summary_path, dict(summary))

    @property
    def report_index(self) -> Path:
        """``report/index.html`` (written by ``topovae report``)."""
        return self.report_dir / "index.html"

    @property
    def roll_traversal(self) -> Path:
        """``report/roll_traversal.png``, the figure ``topovae compare --html`` shows per run."""
        return self.report_dir / ROLL_TRAVERSAL

    def commands(self) -> list[str]:
        """The commands that made the run, one a line of ``commands.txt`` (``[]`` if absent;
        written by ``scripts/reproduce.sh``)."""
        path = self.path / COMMANDS_FILE
        if not path.is_file():
            return []
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def metrics_csv(self) -> Path | None:
        """The newest ``logs/**/metrics.csv`` (the training log), if any."""
        logs = self.path / "logs"
        if not logs.is_dir():
            return None
        candidates = sorted(logs.glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)
        return candidates[-1] if candidates else None


# -- the functions of the former ``topovae.training.run`` ------------------------------------
def create_run_dir(path: str | Path, experiment: ExperimentConfig) -> Path:
    """Create ``path`` (checked with :func:`check_output_dir`) and write its ``config.yaml``."""
    return RunDir.create(path, experiment).path


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """Read ``RUN/config.yaml``; a missing file or another format version is a ``ValueError``."""
    return RunDir(run_dir).config


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
    run = RunDir(run_dir)
    config = run.config
    model = None
    if run.has_model or require_model:
        model = run.model(map_location=map_location)
    return Run(path=run.path, config=config, model=model)
