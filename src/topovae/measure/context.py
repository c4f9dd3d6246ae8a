"""The evaluation context: what every measurement of one run shares, computed once.

:class:`EvaluationContext` holds the model, the experiment, the data bundle and the test
sequences, and computes on first use (then caches) the capsule codes, the codes sampled from the
posterior and the untrained twin (the same architecture randomly initialised with the run's
``train.seed``). Measurements take it as their only argument.

Reproducibility: the evaluation seeds the RNG once (``evaluate.seed``); the twin is built the
first time under ``torch.manual_seed(train.seed)`` and every later request restores the RNG
state that building it left, so a measurement sees the same random numbers as if it had built
its own twin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from topovae.data.sequences import SequenceTraits, sequence_traits
from topovae.models.capabilities import CapsuleCodes
from topovae.training.experiment import ExperimentConfig

__all__ = ["EvaluationContext", "collect_test_sequences"]


def collect_test_sequences(bundle: Any, n_sequences: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """The first ``n_sequences`` (0 = all) test sequences ``(N, S, C, H, W)`` and their factors."""
    loader = bundle.test
    loader.set_epoch(0)
    xs: list[torch.Tensor] = []
    factors: dict[str, list[torch.Tensor]] = {}
    total = 0
    for batch in loader:
        x = batch["x"]
        xs.append(x)
        for name, value in (batch.get("factors") or {}).items():
            if isinstance(value, torch.Tensor):
                factors.setdefault(name, []).append(value)
        total += x.shape[0]
        if n_sequences and total >= n_sequences:
            break
    if not xs:
        raise ValueError("the test split yielded no sequences; check data.n_test")
    x_all = torch.cat(xs)
    limit = n_sequences or len(x_all)
    joined = {name: torch.cat(values)[:limit] for name, values in factors.items()}
    return x_all[:limit], joined


@dataclasses.dataclass
class EvaluationContext:
    """Model, experiment, data and test sequences of one evaluation (see the module)."""

    model: torch.nn.Module
    experiment: ExperimentConfig
    bundle: Any
    x: torch.Tensor
    factors: dict[str, torch.Tensor]
    metrics: tuple[str, ...] = ()
    #: the values written so far (a measurement may depend on an earlier one's)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def settings(self) -> Any:
        """The run's ``evaluate`` block."""
        return self.experiment.evaluate

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def x_ll(self) -> torch.Tensor:
        """The sequences the likelihood is estimated on (the first ``n_ll_sequences``)."""
        return self.x[: self.settings.n_ll_sequences or len(self.x)]

    @property
    def builder(self) -> str:
        data = self.experiment.data
        return data.test_sequences or data.sequences

    @property
    def traits(self) -> SequenceTraits:
        """What the test sequences' builder declares (per-transformation split, steps, grid)."""
        return sequence_traits(self.builder)

    def cached(self, key: str, compute: Any) -> Any:
        """``compute()`` the first time ``key`` is asked for, the same value afterwards."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def cached_value(self, key: str) -> Any:
        """What :meth:`cached` computed under ``key`` (``None`` if nothing was)."""
        return self._cache.get(key)

    def codes(self) -> torch.Tensor | None:
        """Capsule codes ``(N, S, n_caps, cap_dim)`` of the test sequences; ``None`` for a model
        without capsule codes or single frames."""
        return self.cached("codes", lambda: (capsule_codes(self.model, self.x, self.batch_size)
                                             if self.x.shape[1] > 1 else None))

    def sampled_codes(self) -> torch.Tensor:
        """Codes ``t`` sampled from ``q(z|x) q(u|x)`` (a forward pass), ``(N, S, n_caps,
        cap_dim)``."""
        def sample() -> torch.Tensor:
            x, b = self.x, self.batch_size
            return torch.cat([self.model(x[i:i + b]).codes for i in range(0, len(x), b)])
        return self.cached("sampled_codes", sample)

    def untrained_sampled_codes(self) -> torch.Tensor:
        """Codes sampled from the untrained twin, ``(N, S, n_caps, cap_dim)``: what the
        architecture's own sampling gives before any learning. Drawn from generators of their
        own (seeded with the evaluation seed), so the measurements after it see the global
        generators as if it had not run."""
        def sample() -> torch.Tensor:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                twin = self.untrained()
                torch.manual_seed(self.seed)
                x, b = self.x, self.batch_size
                return torch.cat([twin(x[i:i + b]).codes for i in range(0, len(x), b)])
        return self.cached("untrained_sampled_codes", sample)

    def untrained(self) -> torch.nn.Module:
        """The untrained twin, on the test device, in eval mode (see the module for the RNG)."""
        from topovae.models.base import build_model

        if "untrained" not in self._cache:
            torch.manual_seed(self.experiment.train.seed)
            twin = build_model(self.model.registry_name, self.model.config)
            self._cache["untrained_rng"] = torch.get_rng_state()
            self._cache["untrained"] = twin.to(self.device).eval()
        else:  # the generators as building it left them (CUDA's untouched by a CPU build)
            torch.manual_seed(self.experiment.train.seed)
            torch.set_rng_state(self._cache["untrained_rng"])
        return self._cache["untrained"]


def capsule_codes(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    """``model.latent_codes`` of ``x`` in batches; ``None`` unless they are capsule codes."""
    if not isinstance(model, CapsuleCodes):
        return None
    codes = [model.latent_codes(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    out = torch.cat(codes)
    return out if out.dim() == 4 else None
