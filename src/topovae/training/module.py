"""The Lightning module that trains any :class:`~topovae.models.base.GenerativeModel`.

It adds to the model only what training needs: the optimisers, the KL warm-up weight, logging,
a check that stops on the first non-finite loss, and the extra state a checkpoint must carry to
resume *exactly* (the position in the epoch's batches and the torch / numpy / python RNG states
that drive the reparameterisation noise). Models with :meth:`auxiliary_parameters` (FactorVAE's
discriminator) are trained with manual optimisation and two optimisers: the main one on
``loss``, the auxiliary one on ``auxiliary_loss``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch

from topovae.models.base import GenerativeModel, ModelOutput
from topovae.training.experiment import TrainConfig
from topovae.training.optim import make_optimizer
from topovae.training.schedule import is_default_schedule, make_scheduler

__all__ = ["NonFiniteLossError", "TopoVAEModule", "EpochBatches", "capture_rng_state",
           "restore_rng_state"]


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss is NaN or infinite; ``step`` is the 1-based optimiser step."""

    def __init__(self, step: int, value: float, term_values: dict[str, float]) -> None:
        terms = ", ".join(f"{k}={v:.4g}" for k, v in term_values.items())
        super().__init__(f"loss is {value} at step {step}" + (f" ({terms})" if terms else ""))
        self.step = step
        self.value = value


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and python RNG states, for the checkpoint."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # plain tensors, ints and lists only: the checkpoint loads with torch.load(weights_only=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu() if isinstance(state["torch"], torch.Tensor)
                        else torch.as_tensor(state["torch"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys.numpy(), dtype=np.uint32), int(pos),
                         int(has_gauss), float(cached)))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value


class EpochBatches:
    """Iterable over one epoch of a seeded loader, able to start part-way through an epoch.

    Lightning calls ``iter()`` once per epoch; each call sets the loader's epoch (taken from
    ``epoch_fn``, the trainer's current epoch) and, when a resume position for that epoch is
    pending, skips the batches already trained on. Every batch of the loaders is a pure function
    of (seed, epoch, batch index), so the resumed run sees exactly the batches it would have seen.
    With ``world_size > 1`` rank ``r`` takes batches ``r, r + W, r + 2W, ...`` (the global batch
    is ``W`` loader batches) and every rank gets the same number of batches.

    The class deliberately has no ``state_dict``: the position is saved by the module (which
    knows how many batches were *trained on*; the iterator runs one batch ahead).
    """

    def __init__(self, loader: Any, epoch_fn: Callable[[], int],
                 shard_fn: Callable[[], tuple[int, int]] = lambda: (0, 1),
                 fixed_epoch: int | None = None) -> None:
        self.loader = loader
        self.epoch_fn = epoch_fn
        self.shard_fn = shard_fn  # () -> (rank, world size), read when the strategy is set up
        self.fixed_epoch = fixed_epoch
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches already trained)

    def __len__(self) -> int:
        return len(self.loader) // self.shard_fn()[1]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.fixed_epoch if self.fixed_epoch is not None else int(self.epoch_fn())
        skip = 0
        if self.resume_position is not None and self.fixed_epoch is None:
            resume_epoch, done = self.resume_position
            if done >= len(self):  # saved after the last batch of its epoch: the next one starts
                resume_epoch, done = resume_epoch + 1, 0
            # Lightning creates the first iterator before its loops have restored the epoch
            # counter: the pending resume position, not epoch_fn(), says which epoch comes next
            epoch, skip = resume_epoch, done
            # kept until a batch is trained (Lightning may call iter() more than once on resume)
        if hasattr(self.loader, "batch"):
            return self._direct_batches(epoch, skip)
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)
        return self._batches(skip)

    def _direct_batches(self, epoch: int, skip: int) -> Iterator[dict[str, Any]]:
        # loaders with batch(epoch, index) (SequenceLoader) build exactly the batches needed
        rank, world_size = self.shard_fn()
        for local in range(skip, len(self)):
            yield self.loader.batch(epoch, local * world_size + rank)

    def _batches(self, skip: int) -> Iterator[dict[str, Any]]:
        # generic iterables: iterate and keep this rank's batches after the skipped ones
        rank, world_size = self.shard_fn()
        n = len(self)
        local = 0
        for index, batch in enumerate(_iterate(self.loader)):
            if local >= n:
                break
            if index % world_size != rank:
                continue
            if local >= skip:
                yield batch
            local += 1


def _iterate(loader: Iterable[Any]) -> Iterator[Any]:
    yield from loader


class TopoVAEModule(L.LightningModule):
    """Trains ``model`` with the optimiser settings of ``train``.

    Logged scalars: ``loss`` (on the progress bar), ``train/<term>`` for every term of the
    model's output, ``train/reg_weight`` (KL warm-up) and ``val/loss`` on the validation batches.
    """

    def __init__(self, model: GenerativeModel, train: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.train_config = train
        self.has_auxiliary = len(model.auxiliary_parameters()) > 0
        self.automatic_optimization = not self.has_auxiliary
        self.train_batches: EpochBatches | None = None
        self.batches_done_in_epoch = 0  # batches trained on in the current epoch
        self._step_values: dict[str, torch.Tensor | float] = {}  # logged by the last step

    # -- optimisation -------------------------------------------------------------------------
    def _optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        cfg = self.train_config
        return make_optimizer(cfg.optimizer, params, lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay, betas=cfg.adam_betas)

    def configure_optimizers(self) -> Any:
        main = self._optimizer(self.model.main_parameters())
        if self.has_auxiliary:
            if not is_default_schedule(self.train_config):
                raise ValueError("train.lr_schedule and train.lr_warmup_steps need a model "
                                 "without an auxiliary optimiser")
            return [main, self._optimizer(self.model.auxiliary_parameters())]
        if not is_default_schedule(self.train_config):
            # train.lr_schedule / lr_warmup_steps: the rate of every step, stepped per batch
            return {"optimizer": main, "lr_scheduler": {
                "scheduler": make_scheduler(main, self.train_config), "interval": "step"}}
        return main

    def regularisation_weight(self) -> float:
        """KL warm-up weight at the current step: linear from 0 to 1 over ``kl_warmup_steps``."""
        steps = self.train_config.kl_warmup_steps
        if steps <= 0:
            return 1.0
        return min(1.0, self._optimizer_steps() / steps)

    def _optimizer_steps(self) -> int:
        # with two optimisers Lightning counts both in global_step; count main-optimiser steps
        step = int(self.global_step)
        return step // 2 if self.has_auxiliary else step

    def weighted_loss(self, out: ModelOutput) -> torch.Tensor:
        """``recon + w * (loss - recon)``: the loss with its regulariser scaled by the warm-up."""
        weight = self.regularisation_weight()
        if weight >= 1.0 or "recon_nll" not in out.terms:
            return out.loss
        recon = out.terms["recon_nll"]
        return recon + weight * (out.loss - recon)

    # -- steps --------------------------------------------------------------------------------
    def _check_finite(self, loss: torch.Tensor, out: ModelOutput) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            terms = {k: float(v.detach().float().mean()) for k, v in out.terms.items()
                     if isinstance(v, torch.Tensor)}
            raise NonFiniteLossError(self._optimizer_steps() + 1, float(loss.detach()), terms)

    def _log_step(self, name: str, value: torch.Tensor | float, **kwargs: Any) -> None:
        """``self.log``, remembering the value: a checkpoint carries its own step's log row."""
        self.log(name, value, **kwargs)
        # a copy: a term may be a view of a parameter that the optimiser step changes next
        self._step_values[name] = (value.detach().clone() if isinstance(value, torch.Tensor)
                                   else value)

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this training step's logged values to the loggers (every
        ``log_every_n_steps``-th step). Values logged on the other steps would only be thrown
        away, after Lightning's bookkeeping of each ``self.log`` call; ``loss`` is logged at
        every step all the same, for the progress bar and the run's last loss."""
        trainer = self._trainer
        if trainer is None:
            return True
        return bool(trainer._logger_connector.should_update_logs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self._step_values = {}
        x = batch["x"]
        out = self.model(x)
        loss = self.weighted_loss(out)
        self._check_finite(loss, out)
        batch_size = x.shape[0]
        if self.has_auxiliary:
            main_opt, aux_opt = self.optimizers()
            main_opt.zero_grad()
            self.manual_backward(loss)
            if self.train_config.grad_clip is not None:
                self.clip_gradients(main_opt, gradient_clip_val=self.train_config.grad_clip)
            main_opt.step()
            aux_loss = self.model.auxiliary_loss(x, out)
            if aux_loss is not None:
                self._check_finite(aux_loss, out)
                aux_opt.zero_grad()
                self.manual_backward(aux_loss)
                aux_opt.step()
                self._log_step("train/aux_loss", aux_loss.detach(), batch_size=batch_size)
        self._log_step("loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        if self._logs_this_step():  # the other scalars only on the steps the loggers write
            for name, value in out.terms.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    self._log_step(f"train/{name}", value.detach().float(),
                                   batch_size=batch_size)
            if self.train_config.kl_warmup_steps > 0:
                self._log_step("train/reg_weight", self.regularisation_weight(),
                               batch_size=batch_size)
        self.batches_done_in_epoch = batch_idx + 1
        if self.train_batches is not None:
            self.train_batches.resume_position = None
        return None if self.has_auxiliary else loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["x"]
        # the validation noise has its own seed: validating neither draws from nor depends on
        # the training RNG, so a resumed run trains with the same noise whether or not the
        # validation of the epoch it resumed in had run before the interruption
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.train_config.seed * 100_003 + batch_idx)
            out = self.model(x)
        self.log("val/loss", out.loss.detach(), prog_bar=True, batch_size=x.shape[0],
                 sync_dist=True)

    # -- checkpoint state ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["topovae"] = {
            "epoch": int(self.current_epoch),
            "steps": int(self._optimizer_steps()),
            "batches_done_in_epoch": int(self.batches_done_in_epoch),
            "rng": capture_rng_state(),
            # the CSV row of this step as Lightning logs it, after the batch-end hooks that write
            # checkpoints: a run killed in between gets the row back from the checkpoint
            "log_row": {"epoch": int(self.current_epoch), "step": int(self._optimizer_steps()) - 1,
                        **{name: float(torch.as_tensor(value, dtype=torch.float32))
                           for name, value in self._step_values.items()}},
            "model_name": self.model.registry_name,
            "model_config": self.model.config.to_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("topovae")
        if state is None:
            return
        self.batches_done_in_epoch = state["batches_done_in_epoch"]
        if self.train_batches is not None:
            self.train_batches.resume_position = (state["epoch"], state["batches_done_in_epoch"])
        restore_rng_state(state["rng"])
