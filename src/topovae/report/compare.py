"""``topovae compare``: a Markdown table of several runs, shaped like Table 1 of the paper.

One row per run directory, from its ``metrics.json`` (written by ``topovae evaluate``) and its
``config.yaml``. Columns: the run's name and model, the importance-sampled log-likelihood (nats
per image, with the number of importance samples), the equivariance error, its shuffled control,
their ratio (lower is better; 1 is chance) and the capsule-roll prediction NLL. A value that a run
does not have (no capsules, evaluation not run, measurement unavailable) is shown as "–".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["compare_table", "COLUMNS"]

MISSING = "–"
COLUMNS = ["run", "model", "log p(x) (nats/image)", "E_eq", "E_eq control", "ratio",
           "roll-prediction NLL"]


def _number(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    if not math.isfinite(float(value)):
        return MISSING
    return f"{float(value):,.{digits}f}"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    return data if isinstance(data, dict) else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    return data if isinstance(data, dict) else {}


def _row(run_dir: Path) -> list[str]:
    metrics = _read_json(run_dir / "metrics.json")
    config = _read_yaml(run_dir / "config.yaml")
    name = str(config.get("name") or config.get("preset") or run_dir.name)
    model = metrics.get("model")
    if not model and isinstance(config.get("model"), dict):
        model = config["model"].get("name")
    roll = metrics.get("roll_prediction_nll")
    if roll is None and isinstance(metrics.get("roll_prediction"), dict):
        roll = metrics["roll_prediction"].get("nll")
    ll = _number(metrics.get("log_likelihood_nats_per_image"), 2)
    n_samples = metrics.get("n_is_samples")
    if ll != MISSING and isinstance(n_samples, int) and not isinstance(n_samples, bool):
        ll = f"{ll} (n={n_samples})"
    return [name, str(model) if model else MISSING, ll,
            _number(metrics.get("equivariance_error"), 1),
            _number(metrics.get("equivariance_error_control"), 1),
            _number(metrics.get("equivariance_ratio"), 3),
            _number(roll, 2)]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def compare_table(run_dirs: Sequence[str | Path]) -> str:
    """Markdown table comparing ``run_dirs`` (one row each, in the given order).

    Raises ``ValueError`` if ``run_dirs`` is empty or names something that is not a directory.
    """
    if isinstance(run_dirs, (str, Path)):
        raise ValueError("run_dirs must be a list of run directories, not one path")
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("run_dirs must name at least one run directory")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ValueError(f"run_dirs: not a directory: {', '.join(missing)}")
    rows = [_row(p) for p in paths]
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
