"""Learning-rate schedules and Adam betas of TrainConfig, and the CPU-seconds training budget."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import pytest
import torch

from topovae.training.cpu_budget import CPUBudget
from topovae.training.experiment import TrainConfig
from topovae.training.module import TopoVAEModule
from topovae.training.schedule import is_default_schedule, lr_factor


def test_default_schedule_is_the_constant_rate() -> None:
    train = TrainConfig()
    assert is_default_schedule(train)
    assert train.adam_betas == (0.9, 0.999)
    assert [lr_factor(k, train) for k in (0, 1, 10, 10**6)] == [1.0, 1.0, 1.0, 1.0]


def test_warmup_and_cosine_give_known_rates() -> None:
    warm = TrainConfig(lr_warmup_steps=4)
    assert [lr_factor(k, warm) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = TrainConfig(lr_schedule="cosine", lr_warmup_steps=2, lr_decay_steps=4,
                         lr_min_factor=0.1)
    expected = {0: 0.5, 1: 1.0, 2: 1.0, 3: 0.1 + 0.45 * (1 + math.cos(math.pi / 4)),
                4: 0.55, 5: 0.1 + 0.45 * (1 + math.cos(3 * math.pi / 4)), 6: 0.1, 99: 0.1}
    for step, factor in expected.items():
        assert lr_factor(step, cosine) == pytest.approx(factor), step


def test_bad_schedule_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="lr_decay_steps"):
        TrainConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        TrainConfig(lr_warmup_steps=-1)
    with pytest.raises(ValueError, match="lr_min_factor"):
        TrainConfig(lr_schedule="cosine", lr_decay_steps=5, lr_min_factor=1.5)
    with pytest.raises(ValueError, match="adam_betas"):
        TrainConfig(adam_betas=[0.9, 1.0])
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


class _Batches:
    """A single iterable of batches (Lightning reads a plain list as several loaders)."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:
        return iter(self.batches)


class _RecordRates(L.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []
        self.betas: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        group = trainer.optimizers[0].param_groups[0]
        self.rates.append(float(group["lr"]))
        self.betas.append(tuple(group["betas"]))


def _train_tiny(train: TrainConfig, steps: int) -> _RecordRates:
    tvae = pytest.importorskip("topovae.models.tvae")
    torch.manual_seed(0)
    model = tvae.TVAE(tvae.TVAEConfig(input_shape=[1, 8, 8], n_caps=2, cap_dim=3, seq_len=3,
                                      time_window=3, capsule_window=3))
    generator = torch.Generator().manual_seed(0)
    batches = _Batches([{"x": torch.rand(2, 3, 1, 8, 8, generator=generator).round()}
                        for _ in range(steps)])
    record = _RecordRates()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, callbacks=[record],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(TopoVAEModule(model, train), train_dataloaders=batches)
    return record


def test_trained_steps_use_the_scheduled_rates_and_betas() -> None:
    train = TrainConfig(lr=1e-2, lr_schedule="cosine", lr_warmup_steps=2, lr_decay_steps=3,
                        lr_min_factor=0.2, adam_betas=[0.5, 0.99])
    record = _train_tiny(train, 7)
    assert record.rates == pytest.approx([1e-2 * lr_factor(k, train) for k in range(7)])
    assert record.rates[-1] == pytest.approx(2e-3)  # the floor, after warm-up and decay
    assert set(record.betas) == {(0.5, 0.99)}


def test_default_training_keeps_the_rate() -> None:
    record = _train_tiny(TrainConfig(lr=3e-3), 4)
    assert record.rates == [3e-3] * 4
    assert set(record.betas) == {(0.9, 0.999)}


class _Counting(L.LightningModule):
    """Each training batch 'costs' one second of a fake CPU clock, each validation batch ten."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.clock = clock

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.clock[0] += 1.0
        return ((self.weight - batch) ** 2).mean()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.clock[0] += 10.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_cpu_budget_stops_once_spent_and_ignores_validation() -> None:
    clock = [0.0]
    marks: list[tuple[float, int]] = []
    module = _Counting(clock)
    budget = CPUBudget(5.0, marks=[0.5], clock=lambda: clock[0],
                       on_mark=lambda mark, m: marks.append((mark, int(m.global_step))))
    trainer = L.Trainer(max_steps=100, accelerator="cpu", logger=False, callbacks=[budget],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        val_check_interval=2, limit_val_batches=1)
    data = _Batches([torch.ones(1) for _ in range(50)])
    trainer.fit(module, train_dataloaders=data, val_dataloaders=data)
    # one fake second per batch: the budget of 5 is spent at the 5th batch, whatever the
    # validation runs in between cost; half of it (2.5) is passed at the 3rd
    assert trainer.global_step == 5
    assert clock[0] >= 5.0 + 20.0  # validation ran (after batches 2 and 4) and was not counted
    assert budget.steps == 5 and budget.spent == pytest.approx(5.0)
    assert budget.mark_steps == {0.5: 3}
    assert marks == [(0.5, 3)]


def test_cpu_budget_with_the_process_clock() -> None:
    budget = CPUBudget(0.3)
    trainer = L.Trainer(max_steps=10**6, max_epochs=10**6, accelerator="cpu", logger=False,
                        callbacks=[budget], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    started = time.process_time()
    trainer.fit(_Counting([0.0]), train_dataloaders=_Batches([torch.ones(1)] * 20))
    assert 0 < trainer.global_step < 10**6
    assert budget.spent >= 0.3
    assert time.process_time() - started >= budget.spent


def test_cpu_budget_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        CPUBudget(0)
    with pytest.raises(ValueError, match="fractions"):
        CPUBudget(10, marks=[1.5])
