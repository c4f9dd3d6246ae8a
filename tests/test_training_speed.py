"""What makes the loop fast keeps its results: checkpoints written in the background are the
files a synchronous write makes, one write at a time, with its failure raised; the scalars logged
only on the steps the loggers write are the same rows."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from test_training import train_args
from topovae.cli.main import main
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.training.background_checkpoint import BackgroundCheckpointIO, CheckpointWriteWatch
from topovae.training.checkpoint import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    load_checkpoint,
)
from topovae.training.module import capture_rng_state
from topovae.training.optim import make_optimizer


def _checkpoint(step: int) -> tuple[dict[str, Any], TVAE, torch.optim.Optimizer]:
    """A checkpoint dict shaped like Lightning's, holding the live tensors of a trained model."""
    torch.manual_seed(0)
    model = TVAE(TVAEConfig(input_shape=(1, 8, 8), n_caps=2, cap_dim=4, seq_len=4,
                            time_window=3))
    optimiser = make_optimizer("adam", model.parameters(), lr=1e-3)
    model(torch.rand(2, 4, 1, 8, 8)).loss.backward()
    optimiser.step()
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                  "optimizer_states": [optimiser.state_dict()], "global_step": step,
                  "topovae": {"steps": step, "rng": capture_rng_state()}}
    return checkpoint, model, optimiser


def test_background_write_gives_the_files_of_a_synchronous_one_bit_for_bit(
        tmp_path: Path) -> None:
    checkpoint, model, _ = _checkpoint(5)
    inline, background = tmp_path / "inline", tmp_path / "background"
    AtomicCheckpointIO().save_checkpoint(checkpoint, inline / "last.ckpt")
    io = BackgroundCheckpointIO()
    io.save_checkpoint(checkpoint, background / "last.ckpt")
    with torch.no_grad():  # the training goes on while the file is written: not in the file
        for p in model.parameters():
            p.add_(1.0)
    io.wait()
    for name in ("last.ckpt", "last.safetensors"):
        assert (inline / name).read_bytes() == (background / name).read_bytes(), name
    # the second write rotates the first into previous.ckpt, as the synchronous one does
    AtomicCheckpointIO().save_checkpoint(checkpoint, inline / "last.ckpt")
    io.save_checkpoint(checkpoint, background / "last.ckpt")
    io.teardown()
    for name in ("last.ckpt", "previous.ckpt", "previous.safetensors"):
        assert (inline / name).read_bytes() == (background / name).read_bytes(), name
    state = load_checkpoint(background / "previous.ckpt")  # CRC-checked, weights only
    assert not torch.equal(state["state_dict"]["model.mu"], model.mu.detach())


def test_at_most_one_write_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    active, most, order = [0], [0], []
    lock = threading.Lock()

    def slow_save(self: AtomicCheckpointIO, checkpoint: dict[str, Any], path: Any,
                  storage_options: Any = None) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        order.append(checkpoint["global_step"])
        with lock:
            active[0] -= 1

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", slow_save)
    io = BackgroundCheckpointIO()
    for step in range(4):
        io.save_checkpoint({"global_step": step}, tmp_path / "last.ckpt")
    io.wait()
    assert most[0] == 1 and order == [0, 1, 2, 3]
    assert not io.writing


def test_a_failed_background_write_is_raised_on_the_training_thread(tmp_path: Path) -> None:
    checkpoint, _, _ = _checkpoint(3)
    path = tmp_path / "last.ckpt"
    io = BackgroundCheckpointIO(fault="enospc_at_step=6")
    io.save_checkpoint(checkpoint, path)
    io.wait()
    checkpoint["global_step"] = checkpoint["topovae"]["steps"] = 6
    io.save_checkpoint(checkpoint, path)  # returns at once: the write fails in the background
    watch = CheckpointWriteWatch(io)
    while io.writing:
        time.sleep(0.01)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*is intact"):
        watch.on_train_batch_end(None, None, None, None, 0)  # type: ignore[arg-type]
    io.wait()  # raised once, not again
    assert load_checkpoint(path)["global_step"] == 3  # the kept checkpoint is untouched
    assert not list(tmp_path.glob(".*.tmp"))
    io.save_checkpoint(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointWriteError):
        io.teardown()  # the end of training waits for the last write and raises its failure


def test_scalars_are_logged_on_the_steps_the_loggers_write(mnist_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(train_args(mnist_dir, out, "train.max_steps=7",
                           "train.log_every_n_steps=3")) == 0
    with (out / "logs" / "csv" / "metrics.csv").open() as file:
        rows = [r for r in csv.DictReader(file) if r.get("loss")]
    assert [int(r["step"]) for r in rows] == [2, 5]
    for row in rows:
        for name in ("train/recon_nll", "train/kl_z", "train/kl_u", "train/mu", "train/elbo"):
            assert row[name] != "", (row["step"], name)
