"""Training on several processes and machines: who writes, what is recorded, what is checked.

The processes are started by the launcher (Lightning's own for ``--devices D`` on one machine,
``torchrun`` or SLURM's ``srun`` across machines) and Lightning reads the cluster environment
from it; nothing here starts processes. This module adds what topovae needs on top:

* :func:`is_global_zero_process`: before Lightning has set up the processes, whether this one
  is global rank 0, the only one that creates and writes the run directory;
* :class:`DistributedRun`: a callback that declares each process's part of the batch to the
  reparameterisation noise (:mod:`topovae.models.noise`), logs the per-device and the global
  batch size, records the world size, every node's machine and every rank's weight digest for
  ``train_summary.json``, and stores the world size in the checkpoint;
* :func:`check_resume_world_size`: a run resumes only on as many processes as it was trained on.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import (
    LSFEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning.fabric.utilities.seed import reset_seed

from topovae.models.noise import set_noise_shard

__all__ = ["is_global_zero_process", "DistributedRun", "check_resume_world_size",
           "weights_digest", "CHECKPOINT_KEY"]

#: Key of the layout record in the Lightning checkpoint.
CHECKPOINT_KEY = "topovae_world"


def is_global_zero_process() -> bool:
    """True unless the launcher's environment says this process is not global rank 0.

    Mirrors the order in which Lightning picks a cluster environment: torchrun / TorchElastic
    (``RANK``), then SLURM (``SLURM_PROCID``, when the job was started with ``srun``), then LSF;
    otherwise Lightning's own launcher, whose processes for local ranks > 0 have ``LOCAL_RANK``
    and whose machines other than the first have ``NODE_RANK`` set.
    """
    for env_type in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment):
        try:
            detected = env_type.detect()
        except RuntimeError as err:  # e.g. Lightning refusing SLURM's --ntasks without per-node
            raise ValueError(str(err)) from None
        if detected:
            return int(env_type().global_rank()) == 0
    return all(int(os.environ.get(key, "0") or 0) == 0 for key in ("LOCAL_RANK", "NODE_RANK"))


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors of ``state`` (names sorted): equal digests mean equal weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _all_gather(value: Any, trainer: L.Trainer) -> list[Any]:
    """``value`` of every rank, in rank order (a collective: every rank must call it)."""
    if trainer.world_size > 1 and torch.distributed.is_available() \
            and torch.distributed.is_initialized():
        out: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(out, value)
        return out
    return [value]


class DistributedRun(L.Callback):
    """Per-process bookkeeping of a (possibly multi-node) training run; see the module docstring.

    ``batch_size`` is the per-device batch (``data.batch_size`` sequences); ``describe`` returns
    the machine description of this process (called on every rank).
    """

    def __init__(self, batch_size: int, seq_len: int,
                 describe: Callable[[L.Trainer], dict[str, Any]]) -> None:
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.describe = describe
        self.ranks: list[dict[str, Any]] = []
        self.digests: list[str] = []

    def layout(self, trainer: L.Trainer) -> dict[str, int]:
        """World size, nodes, devices per node and the per-device / global batch sizes."""
        world = int(trainer.world_size)
        return {"world_size": world, "num_nodes": int(trainer.num_nodes),
                "devices_per_node": int(trainer.num_devices),
                "batch_size_per_device": self.batch_size,
                "global_batch_size": world * self.batch_size,
                "global_batch_images": world * self.batch_size * self.seq_len}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning's DDP re-seeds every process from ``seed_everything``'s seed when it sets up
        # the processes (after the model was built); doing the same in one process makes the
        # RNG state at the first step the same however many processes train. A resumed run
        # restores its RNG state from the checkpoint after this hook.
        reset_seed()
        set_noise_shard(int(trainer.global_rank), int(trainer.world_size))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        set_noise_shard(0, 1)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        mine = {"global_rank": int(trainer.global_rank), "node_rank": int(trainer.node_rank),
                "local_rank": int(trainer.local_rank), "hostname": socket.gethostname(),
                "machine": self.describe(trainer)}
        self.ranks = _all_gather(mine, trainer)
        layout = self.layout(trainer)
        for logger in trainer.loggers:  # rank zero only (Lightning's loggers)
            logger.log_hyperparams(layout)
        if trainer.is_global_zero and layout["world_size"] > 1:
            print(f"topovae: {layout['world_size']} processes ({layout['num_nodes']} nodes x "
                  f"{layout['devices_per_node']} devices): {self.batch_size} sequences per "
                  f"device, global batch {layout['global_batch_size']} sequences "
                  f"({layout['global_batch_images']} images)", file=sys.stderr, flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = getattr(pl_module, "model", pl_module)
        self.digests = _all_gather(weights_digest(model.state_dict()), trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.layout(trainer)

    def summary(self, trainer: L.Trainer) -> dict[str, Any]:
        """What ``train_summary.json`` records about the processes of this session."""
        nodes: dict[int, dict[str, Any]] = {}
        for info in sorted(self.ranks, key=lambda r: r["global_rank"]):
            node = nodes.setdefault(info["node_rank"], {
                "node_rank": info["node_rank"], "hostname": info["hostname"], "ranks": [],
                "machine": info["machine"]})
            node["ranks"].append(info["global_rank"])
        ranks = [{"global_rank": r["global_rank"], "node_rank": r["node_rank"],
                  "local_rank": r["local_rank"], "hostname": r["hostname"],
                  "device": r["machine"].get("device"),
                  "weights_sha256": self.digests[r["global_rank"]]
                  if r["global_rank"] < len(self.digests) else None}
                 for r in sorted(self.ranks, key=lambda r: r["global_rank"])]
        return {**self.layout(trainer),
                "weights_identical_across_ranks": len(set(self.digests)) == 1
                if self.digests else None,
                "nodes": [nodes[k] for k in sorted(nodes)], "ranks": ranks}


def check_resume_world_size(checkpoint_path: Path, world_size: int, num_nodes: int,
                            devices: int) -> None:
    """Refuse (``ValueError``, one line) to resume on another number of processes.

    The global batch is ``world_size x data.batch_size`` sequences and the position in the epoch
    counts global batches, so the same world size (on any number of nodes) continues exactly;
    another would train on other batches than the interrupted run.
    """
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"{checkpoint_path} is not a readable checkpoint ({err})") from None
    layout = state.get(CHECKPOINT_KEY) if isinstance(state, dict) else None
    if not isinstance(layout, dict) or "world_size" not in layout:
        return  # written before the layout was recorded: nothing to compare
    trained = int(layout["world_size"])
    if trained != int(world_size):
        raise ValueError(
            f"{checkpoint_path.parent.parent} was trained on {trained} processes "
            f"({layout.get('num_nodes')} nodes x {layout.get('devices_per_node')} devices, global "
            f"batch {layout.get('global_batch_size')} sequences) and cannot resume exactly on "
            f"{world_size} ({num_nodes} nodes x {devices} devices): resume with nodes x devices "
            f"= {trained}, e.g. --num-nodes {layout.get('num_nodes')} --devices "
            f"{layout.get('devices_per_node')}")
