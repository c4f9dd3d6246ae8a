"""The audit of the full-protocol presets against the experiment settings of the paper.

``docs/presets.csv`` is the one source of truth: one row per full-protocol preset
(:data:`PAPER_PRESETS`) with the values it must resolve to and, where a
value deliberately differs from the authors' experiment script, the reason. :func:`preset_row`
resolves a preset to the same columns, ``tests/test_presets_audit.py`` compares the two, and
``scripts/presets_table.py`` writes the table of ``docs/presets.md`` from the CSV.

A cell ``-`` means "not used by this model" (e.g. ``eps`` of the plain VAE, whose code is
``t = z``); the resolved value is then not compared.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from topovae.presets import load_preset, preset_names

__all__ = ["PAPER_PRESETS", "COLUMNS", "SETTING_COLUMNS", "full_protocol_presets", "preset_row",
           "read_table", "render_markdown", "mismatches"]

#: Columns of ``docs/presets.csv`` that hold settings (compared with the resolved preset).
SETTING_COLUMNS = ("n_caps", "cap_dim", "S", "topography", "coherence", "L", "K", "eps",
                   "mu_init", "optimizer", "lr", "momentum", "batch_size", "max_epochs",
                   "max_steps", "source", "sequences", "split", "test_split", "val_fraction")
#: Every column of ``docs/presets.csv``, in order.
COLUMNS = ("preset", "authors") + SETTING_COLUMNS + ("differences",)

_TOPOGRAPHIC_ONLY = ("coherence", "L", "K", "eps", "mu_init")


#: The presets named after an experiment of the paper (or, for the disentanglement baselines,
#: of the literature it compares with) and run at its full protocol; their ``-cpu`` variants
#: extend them and keep their model settings.
PAPER_PRESETS = (
    "vae-mnist", "tvae-L0-mnist", "bubbles-mnist", "tvae-Lshort-mnist", "tvae-Lpartial-mnist",
    "tvae-Lhalf-mnist", "tvae-Lpartial-mnist-generalization", "tvae-Lpartial-mnist-rotcolor",
    "tvae-Lpartial-mnist-perspective", "tvae-2d-mnist", "vae-dsprites", "tvae-L0-dsprites",
    "bubbles-dsprites", "tvae-Lshort-dsprites", "tvae-Lthird-dsprites", "tvae-Lhalf-dsprites",
    "beta-vae-dsprites", "beta-tcvae-dsprites", "factor-vae-dsprites",
)


def full_protocol_presets() -> list[str]:
    """:data:`PAPER_PRESETS` that exist (all of them in this version), sorted."""
    known = set(preset_names())
    return sorted(name for name in PAPER_PRESETS if name in known)


def _number(value: float | int) -> str:
    return f"{value:g}"


def preset_row(name: str) -> dict[str, str]:
    """The settings columns of preset ``name``, resolved (model defaults written out)."""
    experiment = load_preset(name)
    model = experiment.model.build_config().to_dict()
    data, train = experiment.data, experiment.train
    topographic = bool(model.get("topographic", False)) and "n_caps" in model
    row = {
        "n_caps": str(model.get("n_caps", "-")) if "n_caps" in model else "-",
        "cap_dim": str(model.get("cap_dim", "-")) if "cap_dim" in model else "-",
        "S": str(data.seq_len),
        "topography": str(model["topography"]) if topographic else "-",
        "coherence": str(model.get("coherence", "-")),
        "L": str(model.get("time_window", "-")),
        "K": str(model.get("capsule_window", "-")),
        "eps": _number(model["eps"]) if "eps" in model else "-",
        "mu_init": _number(model["mu_init"]) if "mu_init" in model else "-",
        "optimizer": train.optimizer,
        "lr": _number(train.lr),
        "momentum": _number(train.momentum) if train.optimizer == "sgd" else "-",
        "batch_size": str(data.batch_size),
        "max_epochs": str(train.max_epochs),
        "max_steps": str(train.max_steps) if train.max_steps > 0 else "-",
        "source": data.source,
        "sequences": data.sequences + (f"/{data.test_sequences}" if data.test_sequences else ""),
        "split": data.split,
        "test_split": data.test_split,
        "val_fraction": _number(data.val_fraction),
    }
    if not topographic:
        for column in _TOPOGRAPHIC_ONLY:
            row[column] = "-"
    return row


def read_table(path: str | Path) -> list[dict[str, str]]:
    """The rows of ``docs/presets.csv``; a file without the expected header raises ValueError."""
    text = Path(path).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{path}: header must be {','.join(COLUMNS)}, got "
                         f"{','.join(reader.fieldnames or ())}")
    return [{key: (value or "").strip() for key, value in row.items()} for row in reader]


def mismatches(row: dict[str, str]) -> dict[str, tuple[str, str]]:
    """``{column: (table value, resolved value)}`` where preset ``row["preset"]`` differs from
    its row of the table (``-`` cells of topographic-only settings are skipped)."""
    resolved = preset_row(row["preset"])
    out = {}
    for column in SETTING_COLUMNS:
        expected = row[column]
        if expected == "-" and column in _TOPOGRAPHIC_ONLY:
            continue
        if expected != resolved[column]:
            out[column] = (expected, resolved[column])
    return out


def render_markdown(rows: list[dict[str, str]]) -> str:
    """The table of ``docs/presets.md``: settings of each preset, then its differences."""
    header = ("| preset | authors' run | caps | S | topography | coherence | L | K | eps | "
              "mu_init | optimiser | lr | momentum | batch | epochs | steps | data, sequences "
              "(split / test split / val fraction) |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for row in rows:
        caps = "-" if row["n_caps"] == "-" else f"{row['n_caps']}x{row['cap_dim']}"
        data = (f"{row['source']}, {row['sequences']} ({row['split']} / {row['test_split']} / "
                f"{row['val_fraction']})")
        cells = [f"`{row['preset']}`", row["authors"], caps, row["S"], row["topography"],
                 row["coherence"], row["L"], row["K"], row["eps"], row["mu_init"],
                 row["optimizer"], row["lr"], row["momentum"], row["batch_size"],
                 row["max_epochs"], row["max_steps"], data]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Deliberate differences from the authors' settings, preset by preset:")
    lines.append("")
    for row in rows:
        lines.append(f"- `{row['preset']}`: {row['differences'] or 'none.'}")
    return "\n".join(lines) + "\n"
