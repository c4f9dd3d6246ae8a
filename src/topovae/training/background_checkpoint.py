"""Checkpoint writes off the training loop's critical path.

Serialising a checkpoint of the paper's MNIST model (118 MB of weights, Adam moments and loop
state, plus the 39 MB safetensors copy of the weights) and fsyncing it takes about half a
second; copying its tensors takes a few tens of milliseconds. :class:`BackgroundCheckpointIO`
therefore takes a copy of every tensor of the checkpoint on the training thread, at the moment
Lightning asks for the save (so the file holds exactly the state of that step, whatever the
optimiser does next), and hands the copy to one writer thread, which writes it exactly as
:class:`~topovae.training.checkpoint.AtomicCheckpointIO` does (temporary file, fsync, rename,
``previous.ckpt`` kept, CRC-checked on reading). Hence:

* the files are the same, byte for byte, as a synchronous write of the same state;
* at most one write is in flight: a save waits for the previous write to end first;
* a failed write (disk full, any ``OSError``) surfaces as its
  :class:`~topovae.training.checkpoint.CheckpointWriteError` on the training thread: at the end
  of the next training batch (:class:`CheckpointWriteWatch`), at the next save, or when training
  ends (Lightning's teardown waits for the last write);
* a process killed while a write is in flight leaves the previous checkpoint, exactly as a kill
  during a synchronous write does.
"""

from __future__ import annotations

import threading
from typing import Any

import lightning as L
import torch
from lightning_utilities.core.apply_func import apply_to_collection

from topovae.training.checkpoint import AtomicCheckpointIO

__all__ = ["BackgroundCheckpointIO", "CheckpointWriteWatch", "snapshot_checkpoint",
           "wait_for_checkpoint_writes"]


def snapshot_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``checkpoint`` that shares no tensor and no container with it."""
    return apply_to_collection(checkpoint, torch.Tensor, lambda t: t.detach().clone())


class BackgroundCheckpointIO(AtomicCheckpointIO):
    """:class:`AtomicCheckpointIO` whose writes run in a background thread (module docstring).

    ``fault`` is passed on (the checkpoint-write drills act in the writer thread).
    """

    def __init__(self, fault: str | None = None) -> None:
        super().__init__(fault)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("BackgroundCheckpointIO does not take storage_options")
        self.wait()  # at most one write in flight; raises the previous write's failure
        snapshot = snapshot_checkpoint(checkpoint)
        self._thread = threading.Thread(target=self._write, args=(snapshot, path),
                                        name="topovae-checkpoint-writer")
        self._thread.start()

    def _write(self, snapshot: dict[str, Any], path: Any) -> None:
        try:
            AtomicCheckpointIO.save_checkpoint(self, snapshot, path)
        except BaseException as err:  # noqa: BLE001 - re-raised on the training thread
            self._error = err

    @property
    def writing(self) -> bool:
        """Whether a write is in flight."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error if it failed (once)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """Raise the error of a finished write that failed (once); never waits."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def teardown(self) -> None:
        self.wait()
        super().teardown()


def wait_for_checkpoint_writes(trainer: L.Trainer) -> None:
    """Wait until the checkpoint write in flight (if the trainer writes in the background) ends."""
    checkpoint_io = trainer.strategy.checkpoint_io
    if isinstance(checkpoint_io, BackgroundCheckpointIO):
        checkpoint_io.wait()


class CheckpointWriteWatch(L.Callback):
    """Raises, at the end of the first training batch after it, the error of a background
    checkpoint write that failed (rather than at the next save, many steps later)."""

    def __init__(self, checkpoint_io: BackgroundCheckpointIO) -> None:
        self.checkpoint_io = checkpoint_io

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.checkpoint_io.writing:
            self.checkpoint_io.raise_if_failed()
