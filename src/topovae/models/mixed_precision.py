"""Linear layers that keep a bfloat16 copy of their weight for ``bf16-mixed`` training.

Under ``torch.autocast(dtype=torch.bfloat16)`` every forward pass casts each float32 weight to a
freshly allocated bfloat16 tensor (9.8 M weights for the paper's MNIST model); on a CPU the new
memory is page-faulted in at every step, and the casts cost about as much as the bfloat16
matrix multiplies save. :class:`Linear` is ``torch.nn.Linear`` (same parameters, same
``state_dict``) whose weight, under bfloat16 autocast, comes from a persistent bfloat16 copy:
the copy is refreshed in place (one ``copy_``, no allocation) at the first use after any
optimiser step (a global ``torch.optim`` step hook counts them: the fused Adam update does not
move the weights' version counters) or any other in-place change of the float32 master weight
(``load_state_dict``, ``param.mul_``: their version counter moves), and the gradient flows to the
float32 master
weight exactly as through autocast's own cast (the bfloat16 gradient converted to float32).
The numbers are those of plain autocast, bit for bit: the same round-to-nearest conversion, the
same bfloat16 matrix multiply, the same float32 gradient. Outside bfloat16 autocast the layer is
``nn.Linear``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["Linear"]


class _UseCopy(torch.autograd.Function):
    """``weight -> copy`` (a bfloat16 copy of it) whose gradient goes back to ``weight``."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        ctx.dtype = weight.dtype
        return copy.view_as(copy)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.to(ctx.dtype), None


_optimiser_steps = 0  # optimiser steps taken in this process, by any torch optimiser


def _count_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    global _optimiser_steps
    _optimiser_steps += 1


register_optimizer_step_post_hook(_count_step)


def _autocast_bf16(device_type: str) -> bool:
    return (torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == torch.bfloat16)


class Linear(nn.Linear):
    """``nn.Linear`` with a persistent bfloat16 weight copy under bfloat16 autocast."""

    _bf16_weight: torch.Tensor | None = None
    _bf16_version: tuple[int, int] = (-1, -1)  # (weight version, optimiser steps) at refresh

    def bf16_weight(self) -> torch.Tensor:
        """The bfloat16 copy of ``weight``, refreshed first if the weight changed since."""
        weight = self.weight
        copy = self._bf16_weight
        if copy is None or copy.shape != weight.shape or copy.device != weight.device:
            copy = self._bf16_weight = torch.empty_like(weight, dtype=torch.bfloat16,
                                                        requires_grad=False)
            self._bf16_version = (-1, -1)
        version = (weight._version, _optimiser_steps)
        if self._bf16_version != version:
            with torch.no_grad():
                copy.copy_(weight)
            self._bf16_version = version
        return copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _autocast_bf16(x.device.type) or self.weight.dtype != torch.float32:
            return super().forward(x)
        return F.linear(x, _UseCopy.apply(self.weight, self.bf16_weight()), self.bias)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)  # the copy is a cache: never pickled or deep-copied
        state.pop("_bf16_weight", None)
        state.pop("_bf16_version", None)
        return state
