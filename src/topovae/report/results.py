"""The reproduction page: per experiment of the paper, how it was run and what it measured.

:func:`render_results` turns a set of evaluated run directories (several seeds per preset) into
the Markdown of ``docs/results.md``'s results section: for each experiment the commands that
produced it, the machine, the training wall time, the data (splits and numbers of images, from
``metrics.json``) and the table of mean ± standard deviation over the seeds
(:func:`topovae.report.compare.aggregate_runs`); then :func:`table1_claims`, the ordering the
paper reports for Table 1, checked against the measured means (the claims are in
:mod:`topovae.report.claims`, re-exported here).

The claims are fixed statements of the reference (``docs``: the shifting TVAE has the lowest
equivariance error and the highest likelihood, BubbleVAE lies between, TVAE L=0 and the VAE are
worst, the VAE at chance level); each is reported as holding, failing, or not evaluable, with the
numbers that decided it and the seed spread beside the deciding margin. The only threshold
(:data:`CHANCE_TOLERANCE`, for "at chance level") is a constant, not fitted to any result.

``python -m topovae.report.results RUN... [--out FILE] [--title TEXT]`` prints (or writes) the
page; ``scripts/reproduce.sh`` calls it at the end of a reproduction.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from topovae.io import atomic_write_text
from topovae.report.claims import (
    CHANCE_TOLERANCE,
    SECTIONS,
    SHIFTING_TABLE1,
    SHIFTING_TABLE2,
    TABLE1,
    TABLE2,
    Claim,
    base_preset,
    paper_protocol_claims,
    render_claims,
    table1_claims,
    table2_claims,
)
from topovae.report.compare import (
    aggregate_runs,
    aggregate_table,
    per_transformation_table,
    read_run_record,
)
from topovae.rundir import RunDir

__all__ = ["SECTIONS", "TABLE1", "SHIFTING_TABLE1", "TABLE2", "SHIFTING_TABLE2",
           "CHANCE_TOLERANCE", "Claim", "base_preset", "table1_claims", "table2_claims",
           "paper_protocol_claims", "render_claims", "experiment_details", "render_results",
           "main"]

# -- per-experiment details ----------------------------------------------------------------------
def _machine_text(machine: Mapping[str, Any]) -> str:
    if not machine:
        return ""
    parts = [str(machine.get("processor") or "unknown processor")]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPUs")
    device = machine.get("device")
    if device:
        devices = machine.get("num_devices") or 1
        parts.append(f"device {device}" + (f" x{devices}" if devices != 1 else ""))
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    if machine.get("platform"):
        parts.append(str(machine["platform"]))
    return ", ".join(parts)


def _commands(record: Any) -> list[str]:
    """The commands that made a run: RUN/commands.txt (written by reproduce.sh) or rebuilt."""
    lines = RunDir(record.path).commands()
    if lines:
        return lines
    accelerator = record.config.train.accelerator if record.config is not None else None
    command = [f"topovae train --preset {record.preset or 'PRESET'}"]
    if record.seed is not None:
        command.append(f"--seed {record.seed}")
    if accelerator not in (None, "auto"):
        command.append(f"--accelerator {accelerator}")
    command.append(f"--out {record.path}")
    evaluate = f"topovae evaluate {record.path}"
    block = record.metrics.get("disentanglement")
    if isinstance(block, dict):
        names = [n for n in ("mig", "sap", "dci", "factor_vae", "beta_vae") if n in block]
        if names:
            evaluate += f" --metrics {','.join(names)}"
    return [" ".join(command), evaluate, f"topovae report {record.path}"]


def _data_text(metrics: Mapping[str, Any]) -> list[str]:
    data = metrics.get("data")
    if not isinstance(data, Mapping):
        return ["data: not recorded (run not evaluated)"]
    splits = data.get("splits") if isinstance(data.get("splits"), Mapping) else {}
    lines = []
    for name in ("train", "val", "test"):
        split = splits.get(name)
        if not isinstance(split, Mapping):
            continue
        count = split.get("n_images")
        text = f"{name}: {count:,} images" if isinstance(count, int) else f"{name}: ? images"
        if split.get("of"):
            text += f" of the {split['of']:,} of split '{split.get('split', '?')}'"
        elif split.get("split"):
            text += f" ({split['split']})"
        lines.append(text)
    sequences = (f"sequences: {data.get('sequences', data.get('sequence_builder', '?'))} "
                 f"(train), {data.get('test_sequences', '?')} (test), "
                 f"{data.get('seq_len', data.get('sequence_length', '?'))} frames; evaluated on "
                 f"{data.get('n_test_sequences', '?')} test sequences")
    if metrics.get("n_ll_sequences") is not None:
        sequences += (f", likelihood on {metrics['n_ll_sequences']} with "
                      f"{metrics.get('n_is_samples', '?')} importance samples")
    return [f"data: source {data.get('source', '?')}; " + "; ".join(lines), sequences]


def experiment_details(group: Mapping[str, Any]) -> str:
    """Markdown block of one experiment: description, commands, machine, wall time, data."""
    records = [read_run_record(p) for p in group["runs"]]
    first = records[0]
    seeds = [r.seed for r in records]
    lines = [f"#### {group['group']}", ""]
    if group.get("description"):
        lines += [str(group["description"]), ""]
    lines += [f"Seeds {', '.join(str(s) for s in seeds)} ({group['n']} runs, "
              f"{group['n_evaluated']} evaluated). Commands of seed {first.seed}:", "", "```bash"]
    lines += _commands(first)
    lines += ["```", ""]
    machines = sorted({_machine_text(r.train_summary.get("machine") or {}) for r in records}
                      - {""})
    lines.append(f"- machine: {'; '.join(machines) if machines else 'not recorded'}")
    train = group["metrics"].get("train_seconds", {})
    if train.get("mean") is not None:
        text = f"{train['mean'] / 60:,.1f} min per run"
        if train.get("std") is not None:
            text += f" (± {train['std'] / 60:,.1f})"
        steps = sorted({r.train_summary.get("steps") for r in records
                        if isinstance(r.train_summary.get("steps"), int)})
        if steps:
            text += f", {'/'.join(f'{s:,}' for s in steps)} optimiser steps"
        lines.append(f"- training wall time: {text}")
    else:
        lines.append("- training wall time: not recorded")
    eval_seconds = [r.metrics.get("seconds") for r in records
                    if isinstance(r.metrics.get("seconds"), (int, float))]
    if eval_seconds:
        lines.append(f"- evaluation wall time: {sum(eval_seconds) / len(eval_seconds) / 60:,.1f}"
                     " min per run")
    for text in _data_text(first.metrics):
        lines.append(f"- {text}")
    return "\n".join(lines)


# the claims checked under a section's table: (heading, decide(members, variant), the paper-
# protocol table's name, the heading of its paper-estimator version)
_CLAIMS = {TABLE2: ("Table 2 (dSprites) claims", table2_claims, "table2",
                    "The same under the paper's estimator"),
           TABLE1: ("Table 1 ordering", table1_claims, "table1",
                    "The likelihood claims under the paper's estimator")}


def render_results(run_dirs: Sequence[str | Path], title: str = "Results") -> str:
    """The Markdown results section of ``run_dirs`` (grouped by preset, mean ± std over seeds).

    Sections follow :data:`SECTIONS`; runs of other presets go under "Other experiments". Each
    section has the table of its experiments then their details; the Table 1 section ends with
    :func:`table1_claims` for every variant (cpu / full protocol) that has Table 1 runs.
    """
    groups = aggregate_runs(run_dirs)
    placed: set[str] = set()
    parts = [f"## {title}", "",
             "Mean ± sample standard deviation over seeds (n runs). Log-likelihoods are "
             "importance-sampled (IS = number of samples), in nats per image; E_eq is the "
             "equivariance error, its control the same codes with the frames shuffled; ratio = "
             "E_eq / control (1 = chance); roll-prediction NLL: frame 0's capsules rolled by k "
             "and decoded, against true frame k; no-roll NLL: the unrolled code (the control it "
             "must beat). Columns marked 'paper protocol' are the original code's estimators, "
             "reported beside ours for comparison with the paper (log p(x) scored frame by frame "
             "without - log K; the capsule correlation of its Table 2), with their untrained / "
             "random-code controls (docs/metrics.md)."]
    sections = list(SECTIONS)
    for section_title, presets in sections:
        members = [g for g in groups
                   if base_preset(str(g.get("preset") or g["group"]))[0] in presets]
        members.sort(key=lambda g: (presets.index(base_preset(str(g.get("preset")
                                                                   or g["group"]))[0]),
                                    g["group"]))
        if not members:
            continue
        placed |= {g["group"] for g in members}
        parts += ["", f"### {section_title}", "", aggregate_table(members, ("main",)), ""]
        scores = aggregate_table(members, ("disentanglement",))
        if scores:
            blocks = [read_run_record(run).metrics.get("disentanglement")
                      for g in members for run in g["runs"]]
            n = sorted({b["disentanglement_samples"] for b in blocks if isinstance(b, dict)
                        and isinstance(b.get("disentanglement_samples"), int)})
            sizes = f" (training points: {', '.join(f'{k:,}' for k in n)})" if n else ""
            parts += [f"Disentanglement scores on the factor grid{sizes}:", "", scores, ""]
        per_transformation = per_transformation_table(members)
        if per_transformation:
            parts += ["Per transformation (the test sequences of each transformation):", "",
                      per_transformation, ""]
        parts += [experiment_details(g) + "\n" for g in members]
        claims = _CLAIMS.get(presets)
        if claims is not None:
            claims_title, decide, table, paper_title = claims
            variants = sorted({base_preset(str(g.get("preset") or g["group"]))[1]
                               for g in members})
            for variant in variants:
                name = "the -cpu presets" if variant == "cpu" else "the full-protocol presets"
                parts += [f"**{claims_title} ({name})**, decided on the means:", "",
                          render_claims(decide(members, variant)), ""]
                parts += [f"{paper_title} ({name}):", "",
                          render_claims(paper_protocol_claims(members, table, variant)), ""]
    others = [g for g in groups if g["group"] not in placed]
    if others:
        parts += ["", "### Other experiments", "", aggregate_table(others), ""]
        parts += [experiment_details(g) + "\n" for g in others]
    return "\n".join(parts).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m topovae.report.results RUN... [--out FILE] [--title TEXT]``."""
    parser = argparse.ArgumentParser(prog="python -m topovae.report.results",
                                     description="Render the results section of run "
                                                 "directories (grouped by preset) as Markdown.")
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    parser.add_argument("--out", type=Path, help="write here instead of printing")
    parser.add_argument("--title", default="Results")
    args = parser.parse_args(argv)
    try:
        text = render_results(args.runs, title=args.title)
    except ValueError as err:
        print(f"topovae results: error: {err}", file=sys.stderr)
        return 2
    if args.out is not None:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
