"""Checkpoints that are never half-written, written every N steps and at the end of training.

A run killed while writing a checkpoint must still have a usable ``last.ckpt``: every checkpoint
is written to a temporary file in the same directory, flushed to disk, and then renamed over the
old one with :func:`os.replace` (atomic on POSIX and Windows). Beside each ``.ckpt`` (weights,
optimiser, loop position and RNG state, as Lightning writes them) the model's weights are also
written in the safetensors format (``last.safetensors``, same atomic rename), loadable without
unpickling: ``model.load_state_dict(safetensors.torch.load_file(path))``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import save_file

__all__ = ["AtomicCheckpointIO", "PeriodicCheckpoint", "FaultInjection", "atomic_torch_save",
           "atomic_save_weights", "LAST_CHECKPOINT"]

#: Name of the checkpoint under ``RUN/checkpoints`` that ``--resume`` continues from.
LAST_CHECKPOINT = "last.ckpt"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save_weights(state_dict: dict[str, Any], path: str | Path,
                        prefix: str = "model.") -> None:
    """Write the tensors of ``state_dict`` whose keys start with ``prefix`` (prefix removed) to a
    safetensors file, atomically."""
    path = Path(path)
    tensors = {key[len(prefix):]: value.detach().contiguous().cpu()
               for key, value in state_dict.items()
               if key.startswith(prefix) and isinstance(value, torch.Tensor)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO plugin whose saves are atomic (see :func:`atomic_torch_save`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        if isinstance(checkpoint.get("state_dict"), dict):
            atomic_save_weights(checkpoint["state_dict"], Path(path).with_suffix(".safetensors"))
        atomic_torch_save(checkpoint, path)


class PeriodicCheckpoint(L.Callback):
    """Save ``path`` after every ``every_n_steps`` optimiser steps of the main optimiser.

    ``steps_fn`` returns the number of main-optimiser steps taken (Lightning's ``global_step``
    counts the steps of every optimiser). The final checkpoint is written by the trainer.
    """

    def __init__(self, path: str | Path, every_n_steps: int, steps_fn: Any) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.steps_fn = steps_fn
        self.last_saved_step: int | None = None
        self._flush_pending = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = int(self.steps_fn())
        if step > 0 and step % self.every_n_steps == 0 and step != self.last_saved_step:
            trainer.save_checkpoint(self.path)
            self.last_saved_step = step
            self._flush_pending = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        # Flush the loggers' buffered rows after a checkpoint, so that a run killed later has
        # its training curves on disk up to the checkpoint (the CSV logger buffers 100 steps).
        # Done here rather than right after saving: Lightning logs a step's metrics after the
        # batch-end hooks, so only now is the checkpointed step's own row in the buffer.
        if self._flush_pending:
            for logger in trainer.loggers:
                logger.save()
            self._flush_pending = False


class FaultInjection(L.Callback):
    """Failure drills for the recovery paths, enabled only by ``$TOPOVAE_FAULT``.

    ``kill_after_step=K``: the process kills itself with SIGKILL right after step ``K`` (its
    periodic checkpoint, if one was due, and the log flush that follows it: at the start of the
    next batch) - as if the machine had died; ``nan_at_step=K``: the
    weights are set to NaN before step ``K`` so that its loss is not finite.
    """

    def __init__(self, spec: str, steps_fn: Any) -> None:
        name, _, value = spec.partition("=")
        if name not in ("kill_after_step", "nan_at_step") or not value.isdigit():
            raise ValueError(f"TOPOVAE_FAULT={spec!r}: expected kill_after_step=K or nan_at_step=K")
        self.kind = name
        self.step = int(value)
        self.steps_fn = steps_fn

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self.kind == "nan_at_step" and int(self.steps_fn()) + 1 == self.step:
            with torch.no_grad():
                for param in pl_module.parameters():
                    param.fill_(float("nan"))

        if self.kind == "kill_after_step" and int(self.steps_fn()) == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
