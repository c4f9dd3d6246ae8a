"""Reparameterisation noise that does not depend on how a global batch is split across devices.

A model draws the noise of its reparameterised samples with :func:`standard_normal_like` instead
of ``torch.randn_like``. In one process the two are the same call. When a global batch is split
over ``W`` processes (data-parallel training, see ``docs/scaling.md``) the trainer declares the
split with :func:`noise_shard`: every process then draws the noise of the *whole* global batch
from its RNG (all processes share the seed, so they draw the same numbers and their RNG states
stay equal) and keeps the rows of its own part. Hence the noise of global row ``i`` is the same
on ``N`` nodes x ``D`` devices as in one process that trains on the global batch, and a
data-parallel step computes the same gradient as that process (up to the order of the sums).

Each process draws ``W`` times its own share of noise; the noise is the size of the latent codes,
which for the models here is small next to the networks' activations.

The rows of the tensor passed in must be ordered like the global batch (sequence-major, as the
models flatten ``(B, S)`` into ``B * S`` rows), and every process must hold the same number of
rows, which the trainer guarantees (equal per-device batches).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["standard_normal_like", "noise_shard", "current_noise_shard", "set_noise_shard"]

_SHARD: tuple[int, int] = (0, 1)  # (this process's part, number of parts)


def set_noise_shard(rank: int, world_size: int) -> None:
    """Declare that this process holds part ``rank`` of ``world_size`` equal parts of each batch."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"noise shard {rank} of {world_size} is not a valid part")
    global _SHARD
    _SHARD = (int(rank), int(world_size))


def current_noise_shard() -> tuple[int, int]:
    """``(rank, world_size)`` set by :func:`set_noise_shard` (``(0, 1)`` by default)."""
    return _SHARD


@contextmanager
def noise_shard(rank: int, world_size: int) -> Iterator[None]:
    """Context manager form of :func:`set_noise_shard`; restores the previous split on exit."""
    previous = _SHARD
    set_noise_shard(rank, world_size)
    try:
        yield
    finally:
        set_noise_shard(*previous)


def standard_normal_like(like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` (rows = this process's part of the batch)."""
    rank, world_size = _SHARD
    if world_size == 1:
        return torch.randn_like(like)
    rows = like.shape[0]
    full = torch.randn((world_size * rows, *like.shape[1:]), dtype=like.dtype, device=like.device)
    return full[rank * rows:(rank + 1) * rows]
