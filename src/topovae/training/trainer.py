"""Train an experiment into a run directory, or resume one exactly where it stopped.

:func:`fit` is the whole training pipeline: seed everything, build the model and the data, train
with Lightning (CPU or CUDA, one device or DDP), write an atomic checkpoint every
``train.checkpoint_every_n_steps`` steps and at the end, log to CSV and TensorBoard under
``RUN/logs`` and export the final weights (``RUN/model.json`` + ``RUN/model.safetensors``).

Exact resumption: the Lightning checkpoint holds the weights, the optimiser and loop state; the
module adds the position inside the epoch and the RNG states. Since every batch is a pure
function of (seed, epoch, batch index), a run killed after step ``k`` and resumed trains on the
same batches with the same noise as an uninterrupted run (on the same device and software).

Kept as one module (a little over 400 lines): the steps of :func:`fit` share the run's resume
point, loggers and callbacks, and reading it top to bottom is how exact resumption is checked.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import logging
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from topovae.data.loaders import build_data
from topovae.hardware import bf16_advice, cpu_name
from topovae.io import atomic_write_text
from topovae.memory import keep_freed_memory
from topovae.models.base import build_model
from topovae.rundir import CHECKPOINT_DIR, TRAIN_SUMMARY_FILE, RunDir, read_run_config
from topovae.training.background_checkpoint import BackgroundCheckpointIO, CheckpointWriteWatch
from topovae.training.checkpoint import (
    LAST_CHECKPOINT,
    PREVIOUS_CHECKPOINT,
    CheckpointError,
    FaultInjection,
    PeriodicCheckpoint,
    choose_resume_checkpoint,
    remove_stale_temporaries,
)
from topovae.training.distributed import (
    DistributedRun,
    check_resume_world_size,
    is_global_zero_process,
)
from topovae.training.experiment import ExperimentConfig
from topovae.training.module import EpochBatches, NonFiniteLossError, TopoVAEModule

__all__ = ["FitResult", "TrainingDivergedError", "fit", "resume", "TRAIN_SUMMARY_FILE",
           "machine_description"]

#: Written at the end of every training session: wall time (summed over resumed sessions),
#: steps and the machine, read by ``topovae compare`` and the results page.


class TrainingDivergedError(RuntimeError):
    """Training stopped on a non-finite loss; the last good checkpoint is kept."""


@dataclasses.dataclass
class FitResult:
    """Summary of a finished (or time-limited) training run."""

    run_dir: Path
    steps: int
    epochs_completed: int
    last_loss: float | None
    checkpoint: Path


class _ProgressBar(TQDMProgressBar):
    """Lightning's bar (speed in it/s, the logged loss) without the logger's version number."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*dataloader is\\s+not resumable.*")
    warnings.filterwarnings("ignore", message=".*not resumable.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isn't a distributed sampler.*")


def _strategy(experiment: ExperimentConfig) -> Any:
    """Lightning strategy; ``"ddp_gloo"`` forces DDP over gloo (DDP on CPU uses gloo anyway)."""
    if experiment.train.strategy == "ddp_gloo":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo")
    return experiment.train.strategy


def _resume_checkpoint(run_dir: Path, cfg: Any, model: torch.nn.Module,
                       model_name: str) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a resumed run continues from (``last.ckpt``, or ``previous.ckpt`` when the
    last one is damaged), read safely and checked against the run's model."""
    directory = run_dir / CHECKPOINT_DIR
    main_rank = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if not any((directory / name).exists() for name in (LAST_CHECKPOINT, PREVIOUS_CHECKPOINT)):
        raise ValueError(
            f"{run_dir} has no checkpoint to resume from ({directory / LAST_CHECKPOINT} is "
            f"missing): it stopped before its first checkpoint (written every "
            f"{cfg.checkpoint_every_n_steps} steps); delete it and train it again")
    if main_rank:
        remove_stale_temporaries(directory)

    def warn(message: str) -> None:
        print(f"topovae: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)

    path, state = choose_resume_checkpoint(directory, rename_damaged=main_rank,
                                           warn=warn if main_rank else None)
    if state["topovae"].get("model_name", model_name) != model_name:
        raise CheckpointError(f"checkpoint {path} holds a {state['topovae'].get('model_name')!r} "
                              f"model but {run_dir}/config.yaml trains {model_name!r}")
    expected = {f"model.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state["state_dict"].items()
             if isinstance(v, torch.Tensor)}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found)) or sorted(
            k for k in expected if expected[k] != found[k])
        raise CheckpointError(f"checkpoint {path} does not fit the model of {run_dir}/config.yaml "
                              f"(tensors differ: {', '.join(wrong[:4])})")
    return path, state


class HistoryKeepingCSVLogger(CSVLogger):
    """A CSVLogger that keeps the rows of the earlier sessions of a resumed run.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so resuming a run
    would lose its training curves up to the checkpoint. With ``keep_until_step`` set (the
    logged step of the last batch the checkpoint holds), the rows logged up to that step are
    written back before the new session logs; later rows belong to steps the resumed session
    trains again and are dropped. ``pending_row`` is the checkpoint's own copy of its step's
    row, added when a kill came between the checkpoint and the writing of that row.
    """

    def __init__(self, *args: Any, keep_until_step: int | None = None,
                 pending_row: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_until_step = keep_until_step
        self._pending_row = pending_row

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        if rank_zero_only.rank != 0:  # Lightning asks every rank; only rank 0 writes the log
            return super().experiment
        path = Path(self.log_dir) / "metrics.csv"
        header: list[str] = []
        rows: list[dict[str, str]] = []
        if self._keep_until_step is not None and path.is_file():
            with path.open(newline="") as file:
                reader = csv.DictReader(file)
                header = list(reader.fieldnames or [])
                rows = [row for row in reader
                        if _as_step(row.get("step")) <= self._keep_until_step]
        pending = self._pending_row
        if pending is not None and not any(
                _as_step(row.get("step")) == pending["step"] and row.get("loss")
                for row in rows):
            row_values = {key: str(value) for key, value in pending.items()}
            header = sorted(set(header) | set(row_values))
            rows.append(row_values)
        with warnings.catch_warnings():
            # "Previous log files in this directory will be deleted": not the rows kept here
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment  # removes the old file
        if rows:
            header = sorted(header)  # the writer appends rows in sorted-key order
            text = io.StringIO(newline="")
            out = csv.DictWriter(text, fieldnames=header)
            out.writeheader()
            out.writerows(rows)
            atomic_write_text(path, text.getvalue())
            writer.metrics_keys = header
        return writer


def _as_step(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.inf
    except ValueError:
        return math.inf


def fit(experiment: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
        update_config: bool = False, callbacks: list[L.Callback] | None = None) -> FitResult:
    """Train ``experiment`` into ``run_dir`` (created beforehand with ``create_run_dir``).

    With ``resume=True`` training continues from ``run_dir/checkpoints/last.ckpt`` (or
    ``previous.ckpt`` if the last one is damaged), and ``update_config`` rewrites
    ``config.yaml`` with ``experiment`` once that checkpoint has been checked. ``callbacks``
    are added to the trainer's own (the loop benchmark times steps with one). Raises
    :class:`TrainingDivergedError` on a NaN/inf loss (naming the step and the kept checkpoint).
    """
    _quiet_lightning()
    run_dir = Path(run_dir)
    cfg = experiment.train
    checkpoint_path = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Subnormal floats (below 1.2e-38) build up in the weights' gradients and Adam's moments
    # after a few hundred steps; x86 CPUs compute with them through a slow path, and the demo's
    # step took 94 ms instead of 49 from step ~650 on. Flushing them to zero changes no number
    # that matters (they are 1e-38 of the values around them) and keeps the step at its speed.
    torch.set_flush_denormal(True)
    keep_freed_memory()  # no page faults for a step's tensors (topovae/memory.py)
    model = build_model(experiment.model.name, experiment.model.config)
    bundle = build_data(experiment.data, seed=cfg.seed)
    module = TopoVAEModule(model, cfg)
    resume_from, resumed_step, pending_row = None, None, None
    if resume:
        resume_from, resume_state = _resume_checkpoint(run_dir, cfg, model,
                                                       experiment.model.name)
        resumed_step = int(resume_state["topovae"].get("steps", resume_state["global_step"])) - 1
        pending_row = resume_state["topovae"].get("log_row")
        if pending_row is None or (resumed_step + 1) % cfg.log_every_n_steps != 0:
            pending_row = None  # Lightning logs every log_every_n_steps-th step only
        del resume_state
        # another world size is refused before config.yaml changes (on the checkpoint chosen
        # above, which may be previous.ckpt when last.ckpt is damaged)
        check_resume_world_size(resume_from, cfg.num_nodes * cfg.devices, cfg.num_nodes,
                                cfg.devices)
        if update_config and is_global_zero_process():
            RunDir(run_dir).write_config(experiment)

    trainer_holder: dict[str, L.Trainer] = {}

    def current_epoch() -> int:
        return int(trainer_holder["trainer"].current_epoch)

    def shard() -> tuple[int, int]:
        trainer = trainer_holder["trainer"]
        return int(trainer.global_rank), int(trainer.world_size)

    train_batches = EpochBatches(bundle.train, current_epoch, shard)
    module.train_batches = train_batches
    val_batches = None
    if bundle.val is not None and cfg.val_batches > 0 and len(bundle.val) > 0:
        val_batches = EpochBatches(bundle.val, current_epoch, shard, fixed_epoch=0)

    extra_callbacks = list(callbacks or [])
    steps_fn = module._optimizer_steps
    periodic = PeriodicCheckpoint(checkpoint_path, cfg.checkpoint_every_n_steps, steps_fn,
                                  max_steps=cfg.max_steps, max_time=cfg.max_time)
    callbacks: list[L.Callback] = [periodic]
    if cfg.progress_bar:
        callbacks.append(_ProgressBar(refresh_rate=max(1, min(20, cfg.log_every_n_steps))))
    distributed = DistributedRun(experiment.data.batch_size, experiment.data.seq_len,
                                 machine_description)
    callbacks.append(distributed)
    if cfg.eval_every_n_steps > 0:
        from topovae.training.periodic_eval import periodic_evaluation

        evaluation = periodic_evaluation(model, bundle, cfg.eval_every_n_steps,
                                         cfg.eval_sequences, steps_fn)
        if evaluation is not None:
            callbacks.append(evaluation)
    callbacks.extend(extra_callbacks)
    fault = os.environ.get("TOPOVAE_FAULT")
    # checkpoints are written by a background thread, from a copy taken at the step
    checkpoint_io = BackgroundCheckpointIO(fault)
    callbacks.append(CheckpointWriteWatch(checkpoint_io))
    if fault:
        callbacks.append(FaultInjection(fault, steps_fn))

    steps_per_batch = 2 if module.has_auxiliary else 1  # Lightning counts every optimiser
    loggers = [
        HistoryKeepingCSVLogger(save_dir=str(run_dir), name="logs", version="csv",
                                keep_until_step=resumed_step, pending_row=pending_row),
        TensorBoardLogger(save_dir=str(run_dir), name="logs", version="tensorboard",
                          default_hp_metric=False),
    ]
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(experiment),
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps * steps_per_batch if cfg.max_steps > 0 else -1,
        max_time=None,  # the time limit is PeriodicCheckpoint's: it saves the last step first
        logger=loggers,
        callbacks=callbacks,
        plugins=[checkpoint_io],
        enable_checkpointing=False,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=cfg.val_batches if val_batches is not None else 0,
        gradient_clip_val=None if module.has_auxiliary else cfg.grad_clip,
        log_every_n_steps=cfg.log_every_n_steps,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
    )
    trainer_holder["trainer"] = trainer
    if resume_from is not None:
        check_resume_world_size(resume_from, trainer.world_size, trainer.num_nodes,
                                trainer.num_devices)
    advice = bf16_advice(cfg.precision, cfg.accelerator)
    if advice is not None and trainer.is_global_zero:
        print(advice, file=sys.stderr, flush=True)
    if trainer.is_global_zero:
        loggers[0].log_hyperparams(experiment.resolved().to_dict())

    started = time.perf_counter()
    try:
        trainer.fit(module, train_dataloaders=train_batches, val_dataloaders=val_batches,
                    ckpt_path=str(resume_from) if resume_from is not None else None,
                    weights_only=True)
    except NonFiniteLossError as err:
        kept = (f"the last good checkpoint {checkpoint_path} is kept"
                if checkpoint_path.exists() else "no checkpoint had been written yet")
        raise TrainingDivergedError(
            f"training stopped: {err}; {kept} (lower train.lr, set train.grad_clip or "
            "train.kl_warmup_steps)") from err

    if steps_fn() > 0 and periodic.last_saved_step != steps_fn() and not (
            resume_from is not None and resumed_step + 1 == steps_fn()):
        trainer.save_checkpoint(checkpoint_path)  # stopped otherwise than by a limit
    checkpoint_io.wait()  # the last write is on disk (or its error raised) before fit returns
    digests = list(distributed.digests)  # every rank's, gathered at the end of training
    if trainer.is_global_zero:
        model.cpu().save(run_dir)
    metrics = trainer.callback_metrics
    last_loss = float(metrics["loss"]) if "loss" in metrics else None
    if trainer.is_global_zero:
        _write_train_summary(run_dir, trainer, time.perf_counter() - started, steps_fn(),
                             resume=resume, epochs=_epochs_completed(steps_fn(), train_batches),
                             digests=digests, processes=distributed.summary(trainer))
    return FitResult(run_dir=run_dir, steps=steps_fn(),
                     epochs_completed=_epochs_completed(steps_fn(), train_batches),
                     last_loss=last_loss, checkpoint=checkpoint_path)


def _epochs_completed(steps: int, batches: EpochBatches) -> int:
    """Whole epochs trained (Lightning counts an epoch stopped part-way by a limit as done)."""
    per_epoch = len(batches)
    return steps // per_epoch if per_epoch > 0 else 0


def machine_description(trainer: L.Trainer | None = None) -> dict[str, Any]:
    """Where a run was trained: OS, processor, CPU count, torch version and the device used."""
    accelerator = type(trainer.accelerator).__name__ if trainer is not None else None
    device = "cpu"
    if trainer is not None and isinstance(trainer.strategy.root_device, torch.device):
        root = trainer.strategy.root_device
        device = torch.cuda.get_device_name(root) if root.type == "cuda" else str(root.type)
    return {"platform": platform.platform(), "processor": cpu_name() or platform.processor()
            or platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "accelerator": accelerator, "device": device,
            "num_devices": int(trainer.num_devices) if trainer is not None else 1}


def _write_train_summary(run_dir: Path, trainer: L.Trainer, seconds: float, steps: int, *,
                         resume: bool, epochs: int, digests: list[str],
                         processes: dict[str, Any] | None = None) -> None:
    """Add this session to ``RUN/train_summary.json`` (``train_seconds`` sums the sessions).

    ``processes`` (from :class:`DistributedRun`) adds the world size, the per-device and global
    batch sizes, every node's machine and every rank's weight digest, to the session and the top.

    A session killed before it ends is not counted: only sessions that reach the end of
    :func:`fit` add their wall time.
    """
    run = RunDir(run_dir)
    sessions: list[dict[str, Any]] = []
    if resume and run.train_summary_path.is_file():
        try:
            sessions = list(run.train_summary().get("sessions", []))
        except (ValueError, AttributeError, TypeError):
            sessions = []
    machine = machine_description(trainer)
    sessions.append({"seconds": round(seconds, 2), "steps_end": int(steps), "resumed": resume,
                     "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     "machine": machine, **(processes or {})})
    run.write_train_summary({
        "train_seconds": round(sum(float(s.get("seconds", 0.0)) for s in sessions), 2),
        "steps": int(steps), "epochs_completed": int(epochs),
        # SHA-256 of the final weights held by each process: DDP ranks must all agree
        "rank_weights_sha256": digests,
        "sessions": sessions, "machine": machine, **(processes or {})})


def resume(run_dir: str | Path, **train_overrides: Any) -> FitResult:
    """Continue the run in ``run_dir`` from its last checkpoint.

    ``train_overrides`` (e.g. ``max_epochs=200``, ``max_time=600``) change the limits of the
    continued run; they are written back to ``config.yaml``.
    """
    run_dir = Path(run_dir)
    experiment = read_run_config(run_dir)
    if train_overrides:
        experiment = dataclasses.replace(experiment,
                                         train=experiment.train.replace(**train_overrides))
    return fit(experiment, run_dir, resume=True, update_config=bool(train_overrides))
