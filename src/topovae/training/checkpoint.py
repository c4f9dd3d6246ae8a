"""Checkpoints that are never half-written, never run code, and survive a damaged last file.

Writing. Every checkpoint is written to a temporary file in the same directory, flushed and
fsynced, and only then renamed over ``last.ckpt`` with :func:`os.replace` (atomic on POSIX and
Windows). The checkpoint it replaces is kept as ``previous.ckpt`` (a hard link made before the
rename, so that ``last.ckpt`` exists at every moment). Beside each ``.ckpt`` (weights, optimiser,
loop position and RNG state, as Lightning writes them) the model's weights are also written in the
safetensors format (``last.safetensors``, same atomic rename). A write that fails (disk full, any
``OSError``) removes its temporary file, leaves both kept checkpoints untouched and raises
:class:`CheckpointWriteError` saying so.

Reading. :func:`load_checkpoint` is the only way topovae reads a ``.ckpt`` (Lightning's resume
goes through :class:`AtomicCheckpointIO`, which calls it). It first checks the CRC-32 of every
record of the archive (``torch.save`` writes one; ``torch.load`` does not check them), so a
truncated or bit-flipped file is reported as damaged instead of being loaded with altered
numbers; then it unpickles with ``torch.load(weights_only=True)``, which builds only tensors and
plain containers and numbers and refuses any other object, so a planted payload never runs.
Everything topovae and Lightning put in a checkpoint is of those types (the RNG states are
stored as tensors and lists, see :mod:`topovae.training.module`).

Kept as one module (about 460 lines) so that the atomicity argument (writing, reading, the
fallback to previous.ckpt) and the failure drills that test it are read in one place.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import signal
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import save_file

from topovae.io import atomic_write, atomic_write_file
from topovae.io import fsync_dir as _fsync_dir

__all__ = ["AtomicCheckpointIO", "PeriodicCheckpoint", "FaultInjection", "atomic_torch_save",
           "atomic_save_weights", "LAST_CHECKPOINT", "PREVIOUS_CHECKPOINT", "CheckpointError",
           "DamagedCheckpointError", "UnsafeCheckpointError", "CheckpointWriteError",
           "load_checkpoint", "choose_resume_checkpoint", "remove_stale_temporaries"]

#: Name of the checkpoint under ``RUN/checkpoints`` that ``--resume`` continues from.
LAST_CHECKPOINT = "last.ckpt"
#: The checkpoint before it, kept so that a damaged ``last.ckpt`` costs one checkpoint interval.
PREVIOUS_CHECKPOINT = "previous.ckpt"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


class DamagedCheckpointError(CheckpointError):
    """The file is truncated, altered or not a checkpoint archive at all."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects other than tensors and plain values: refused unread."""


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (e.g. the disk is full); the kept checkpoints are intact."""


# -- reading ---------------------------------------------------------------------------------------
def _check_archive(path: Path) -> None:
    """Raise :class:`DamagedCheckpointError` unless every record of the zip archive at ``path``
    reads back with the CRC-32 stored for it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as err:
        raise DamagedCheckpointError(
            f"checkpoint {path} is damaged (truncated, or not a checkpoint archive: {err})"
        ) from None
    except OSError as err:
        raise DamagedCheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})"
                                     ) from None
    if bad is not None:
        raise DamagedCheckpointError(
            f"checkpoint {path} is damaged: its record {bad!r} fails its CRC-32 check (the file "
            "was altered or corrupted after it was written)")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a topovae checkpoint safely: CRC check, then ``torch.load(weights_only=True)``.

    Raises :class:`DamagedCheckpointError` (truncated, altered, unreadable, not a topovae
    checkpoint) or :class:`UnsafeCheckpointError` (pickled objects other than tensors and plain
    values: nothing of the file is executed). Both messages name ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise DamagedCheckpointError(f"checkpoint {path} does not exist")
    _check_archive(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        detail = f"it asks for {found.group(1)}" if found else "an object that is not data"
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds pickled objects other than tensors and plain values "
            f"({detail}); refusing to load it: topovae never runs code from a file. Use a "
            "checkpoint written by topovae, or the weights in a .safetensors file"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DamagedCheckpointError(f"checkpoint {path} cannot be loaded ({first})") from None
    if (not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict)
            or not isinstance(state.get("global_step"), int)
            or not isinstance(state.get("topovae"), dict)):
        raise DamagedCheckpointError(
            f"checkpoint {path} is not a topovae training checkpoint (it lacks the state_dict, "
            "global_step or topovae entries)")
    return state


def choose_resume_checkpoint(checkpoint_dir: str | Path, *, rename_damaged: bool = True,
                             warn: Callable[[str], None] | None = None,
                             ) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a resumed run continues from, and its content.

    ``last.ckpt`` if it loads; if it is damaged (truncated, bit-flipped), ``previous.ckpt``, after
    ``warn`` is told why and (with ``rename_damaged``) the damaged file is moved aside as
    ``damaged-last.ckpt`` so that the next checkpoint does not rotate it into ``previous.ckpt``.
    An :class:`UnsafeCheckpointError` is never passed over: a planted payload stops the resume.
    Raises :class:`CheckpointError` when no usable checkpoint is left.
    """
    directory = Path(checkpoint_dir)
    last, previous = directory / LAST_CHECKPOINT, directory / PREVIOUS_CHECKPOINT
    problems: list[str] = []
    for candidate in (last, previous):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
        except UnsafeCheckpointError:
            raise
        except DamagedCheckpointError as err:
            problems.append(str(err))
            continue
        if candidate == previous and problems:
            if warn is not None:
                warn(f"{problems[0]}; resuming from {previous} (step "
                     f"{_steps_of(state)}) instead")
            if rename_damaged and last.exists():
                os.replace(last, directory / f"damaged-{LAST_CHECKPOINT}")
        return candidate, state
    if problems:
        raise DamagedCheckpointError("; ".join(problems) + " (no usable checkpoint is left: "
                                     "train the run again)")
    raise CheckpointError(f"{directory} holds no checkpoint to resume from")


def _steps_of(state: dict[str, Any]) -> int:
    info = state.get("topovae", {})
    return int(info.get("steps", state.get("global_step", 0)))


def remove_stale_temporaries(checkpoint_dir: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed process left behind."""
    removed = []
    directory = Path(checkpoint_dir)
    if directory.is_dir():
        for path in directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# -- writing ---------------------------------------------------------------------------------------
def _write_fsynced(path: Path, write: Callable[[IO[bytes]], None],
                   wrap: Callable[[IO[bytes]], IO[bytes]] | None = None) -> None:
    with open(path, "wb") as raw:
        handle = wrap(raw) if wrap is not None else raw
        write(handle)
        handle.flush()
        os.fsync(raw.fileno())


def atomic_torch_save(obj: Any, path: str | Path,
                      wrap: Callable[[IO[bytes]], IO[bytes]] | None = None) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    atomic_write(path, lambda handle: torch.save(obj, handle), wrap)


def _weights(state_dict: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value.detach().contiguous().cpu()
            for key, value in state_dict.items()
            if key.startswith(prefix) and isinstance(value, torch.Tensor)}


def atomic_save_weights(state_dict: dict[str, Any], path: str | Path,
                        prefix: str = "model.") -> None:
    """Write the tensors of ``state_dict`` whose keys start with ``prefix`` (prefix removed) to a
    safetensors file, atomically."""
    atomic_write_file(path, lambda tmp: save_file(_weights(state_dict, prefix), str(tmp)))


def _keep_as_previous(path: Path, previous: Path) -> None:
    """Make ``previous`` the file now at ``path`` (hard link: ``path`` never disappears)."""
    if not path.exists():
        return
    link = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous)
    except OSError:  # no hard links here: rename (last.ckpt is briefly absent)
        link.unlink(missing_ok=True)
        os.replace(path, previous)
    # when ``previous`` already was ``path`` (a kill came between the link and the rename of
    # the new file) the rename is a no-op that leaves the link behind
    link.unlink(missing_ok=True)


class _FaultyWriter:
    """A file wrapper that fails after ``limit`` bytes: SIGKILL, or ``OSError(ENOSPC)``."""

    def __init__(self, handle: IO[bytes], limit: int, kill: bool) -> None:
        self._handle, self._left, self._kill = handle, limit, kill

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size > self._left:
            self._handle.write(memoryview(data).cast("B")[: self._left])
            self._handle.flush()
            if self._kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= size
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _os_error_in(err: BaseException | None) -> OSError | None:
    """The ``OSError`` behind ``err`` (torch's zip writer reports a failed write as a
    ``RuntimeError`` raised while handling it)."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
        seen += 1
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: atomic saves keeping the previous checkpoint, safe loads.

    ``fault`` (from ``$TOPOVAE_FAULT``, drills only): ``enospc_at_step=K`` makes the write of the
    checkpoint of step ``K`` fail half-way with "No space left on device";
    ``kill_in_checkpoint=K`` kills the process with SIGKILL half-way through that write.
    """

    def __init__(self, fault: str | None = None) -> None:
        super().__init__()
        self._fault_kind, self._fault_step = None, -1
        if fault:
            name, _, value = fault.partition("=")
            if name in ("enospc_at_step", "kill_in_checkpoint") and value.isdigit():
                self._fault_kind, self._fault_step = name, int(value)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        path = Path(path)
        wrap = None
        if self._fault_kind is not None and _steps_of(checkpoint) == self._fault_step:
            kill = self._fault_kind == "kill_in_checkpoint"
            wrap = lambda handle: _FaultyWriter(handle, 4096, kill)  # noqa: E731
        weights_path = path.with_suffix(".safetensors")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp_weights = weights_path.with_name(f".{weights_path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_fsynced(tmp, lambda handle: torch.save(checkpoint, handle), wrap)
            if isinstance(checkpoint.get("state_dict"), dict):
                save_file(_weights(checkpoint["state_dict"]), str(tmp_weights))
            if path.name == LAST_CHECKPOINT:
                _keep_as_previous(path, path.with_name(PREVIOUS_CHECKPOINT))
                _keep_as_previous(weights_path,
                                  path.with_name(PREVIOUS_CHECKPOINT).with_suffix(".safetensors"))
            os.replace(tmp, path)
            if tmp_weights.exists():
                os.replace(tmp_weights, weights_path)
            _fsync_dir(path.parent)
        except (OSError, RuntimeError) as err:
            cause = _os_error_in(err)
            if cause is None:
                raise
            kept = (f"the previous checkpoint {path} is intact" if path.exists()
                    else "no earlier checkpoint existed")
            raise CheckpointWriteError(
                f"could not write the checkpoint {path} ({cause.strerror or cause}); {kept}; "
                "free some space (or fix the file system) and continue with topovae train "
                "--resume") from None
        finally:
            for leftover in (tmp, tmp_weights):
                leftover.unlink(missing_ok=True)

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # always the safe reader, whatever Lightning asks for
        return load_checkpoint(path, map_location="cpu")


def _stop_now(trainer: L.Trainer) -> None:
    """Stop after this step exactly as a step limit would (``trainer.should_stop`` would also
    run a validation pass that a run stopped by ``max_steps`` does not)."""
    trainer.fit_loop.epoch_loop.max_steps = int(trainer.global_step)


class PeriodicCheckpoint(L.Callback):
    """Save ``path`` every ``every_n_steps`` optimiser steps of the main optimiser and after the
    last step of the run, from inside the training loop.

    The last step is the one that reaches ``max_steps``, ends the last epoch (``max_epochs``) or
    uses up ``max_time`` seconds of training (summed over the sessions of a resumed run; this
    callback is the run's timer and stops the trainer after that step as a step limit would).
    Writing the final checkpoint at the end of its batch, exactly like a periodic one, is what
    makes extending a finished run
    (``--resume RUN --max-steps`` larger) continue with the very batches an uninterrupted run
    would see: a checkpoint written after ``fit`` returns records the epoch as finished.

    ``steps_fn`` returns the number of main-optimiser steps taken (Lightning's ``global_step``
    counts the steps of every optimiser).
    """

    def __init__(self, path: str | Path, every_n_steps: int, steps_fn: Callable[[], int],
                 max_steps: int = -1, max_time: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.steps_fn = steps_fn
        self.max_steps = max_steps
        self.max_time = max_time
        self.clock = clock or time.monotonic
        self.last_saved_step: int | None = None
        self.seconds_before = 0.0  # training time of the earlier sessions (from the checkpoint)
        self._started: float | None = None
        self._flush_pending = False

    # -- time limit -------------------------------------------------------------------------
    def train_seconds(self) -> float:
        """Training time of the run so far, earlier sessions included."""
        now = self.clock() if self._started is not None else 0.0
        return self.seconds_before + (now - self._started if self._started is not None else 0.0)

    def _time_is_up(self, trainer: L.Trainer) -> bool:
        if self.max_time is None:
            return False
        decision = self.train_seconds() >= self.max_time
        return bool(trainer.strategy.broadcast(decision, src=0))  # every rank stops together

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": float(self.train_seconds())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_before = float(state_dict.get("train_seconds", 0.0))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self.clock()
        if self._time_is_up(trainer):  # a resumed run whose time is already used up
            _stop_now(trainer)

    # -- saving -----------------------------------------------------------------------------
    def _is_last_step(self, trainer: L.Trainer, batch_idx: int, step: int) -> bool:
        if self.max_steps > 0 and step >= self.max_steps:
            return True
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        last_batch = batch_idx + 1 >= int(trainer.num_training_batches)
        if max_epochs > 0 and last_batch and trainer.current_epoch + 1 >= max_epochs:
            return True
        if self._time_is_up(trainer):
            _stop_now(trainer)
            return True
        return False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = int(self.steps_fn())
        last = self._is_last_step(trainer, batch_idx, step)  # always asked: it runs the timer
        due = step > 0 and step % self.every_n_steps == 0
        if (due or last) and step != self.last_saved_step:
            trainer.save_checkpoint(self.path)
            self.last_saved_step = step
            self._flush_pending = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the validation row of an epoch whose last batch was checkpointed: on disk at once
        if self._flush_pending:
            for logger in trainer.loggers:
                logger.save()

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
    weights are set to NaN before step ``K`` so that its loss is not finite. The checkpoint-write
    drills (``enospc_at_step=K``, ``kill_in_checkpoint=K``) act in :class:`AtomicCheckpointIO`.
    """

    KINDS = ("kill_after_step", "nan_at_step", "enospc_at_step", "kill_in_checkpoint")

    def __init__(self, spec: str, steps_fn: Callable[[], int]) -> None:
        name, _, value = spec.partition("=")
        if name not in self.KINDS or not value.isdigit():
            raise ValueError(f"TOPOVAE_FAULT={spec!r}: expected one of "
                             f"{', '.join(k + '=K' for k in self.KINDS)}")
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
            from topovae.training.background_checkpoint import wait_for_checkpoint_writes

            wait_for_checkpoint_writes(trainer)  # the step's checkpoint, if one was due, on disk
            os.kill(os.getpid(), signal.SIGKILL)


def iter_checkpoints(checkpoint_dir: str | Path) -> Iterator[Path]:
    """The kept checkpoints of a run, newest first."""
    for name in (LAST_CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = Path(checkpoint_dir) / name
        if path.exists():
            yield path
