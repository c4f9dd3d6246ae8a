"""The full-protocol presets resolve to the settings of docs/presets.csv (the authors' settings
and the documented deliberate differences), and docs/presets.md shows that table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from topovae.presets import load_preset, preset_names
from topovae.presets.audit import (
    PAPER_PRESETS,
    full_protocol_presets,
    mismatches,
    preset_row,
    read_table,
)

ROOT = Path(__file__).resolve().parents[1]
TABLE = read_table(ROOT / "docs" / "presets.csv")
ROWS = {row["preset"]: row for row in TABLE}


def test_the_table_lists_every_full_protocol_preset_once() -> None:
    assert len(ROWS) == len(TABLE)
    assert set(ROWS) == set(PAPER_PRESETS) == set(full_protocol_presets())


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_preset_resolves_to_its_row(name: str) -> None:
    assert mismatches(ROWS[name]) == {}


def test_a_changed_setting_is_caught() -> None:
    row = dict(ROWS["tvae-L0-dsprites"])
    assert mismatches(row) == {}
    row["K"], row["eps"] = "1", "1e-06"  # the settings this preset had before the audit
    assert set(mismatches(row)) == {"K", "eps"}


def test_l0_dsprites_is_the_authors_k3_eps1e3_run() -> None:
    config = load_preset("tvae-L0-dsprites").model.build_config()
    assert (config.capsule_window, config.eps, config.time_window) == (3, 1e-3, 0)


@pytest.mark.parametrize("name", [n for n in PAPER_PRESETS if n + "-cpu" in preset_names()])
def test_cpu_variant_keeps_the_model_settings(name: str) -> None:
    full = load_preset(name).model
    cpu = load_preset(name + "-cpu").model
    assert cpu.name == full.name
    # beta-TCVAE's dataset_size is the number of training images (its aggregate posterior),
    # which the -cpu variant reduces with data.n_train: data, not a model setting
    cpu_config = {k: v for k, v in cpu.build_config().to_dict().items() if k != "dataset_size"}
    full_config = {k: v for k, v in full.build_config().to_dict().items() if k != "dataset_size"}
    assert cpu_config == full_config
    row = preset_row(name + "-cpu")
    for column in ("n_caps", "cap_dim", "S", "topography", "coherence", "L", "K", "eps",
                   "mu_init"):
        assert row[column] == ROWS[name][column], (name, column)


def test_docs_table_is_generated_from_the_csv() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "presets_table.py"),
                             "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
