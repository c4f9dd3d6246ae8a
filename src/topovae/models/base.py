"""What every model in topovae is: a ``torch.nn.Module`` with a typed config.

The trainer, the evaluation code and the CLI rely only on this interface, so a model can be used
without the trainer (``model = TVAE(TVAEConfig(...)); out = model(x); out.loss.backward()``) and
new models plug in by registering themselves in :data:`MODELS`.

Shapes: every model takes a batch of *sequences* ``x`` shaped ``(B, S, C, H, W)`` with values in
[0, 1]; models that ignore time treat the ``B * S`` frames as independent images (``S`` may be 1).
Losses are per-image means: the sum over pixels of the Bernoulli negative log-likelihood plus the
KL terms (summed over latent units), averaged over all ``B * S`` images of the batch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from topovae.config import Config, Registry
from topovae.format import FORMAT_VERSION
from topovae.io import atomic_write_file, atomic_write_text

__all__ = ["ModelOutput", "GenerativeModel", "MODELS", "register_model", "build_model",
           "load_model", "check_sequences"]



@dataclasses.dataclass
class ModelOutput:
    """Result of a forward pass.

    ``loss`` is what the main optimiser minimises (per-image mean); ``terms`` holds its parts and
    other scalars worth logging (all per-image means, detached or not); ``logits`` are the decoder's
    Bernoulli logits shaped like the input; ``codes`` is the latent representation used by the
    measurements (for the TVAE ``t`` shaped ``(B, S, n_caps, cap_dim)``, otherwise ``(B, S, d)``).
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    logits: torch.Tensor
    codes: torch.Tensor
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_sequences(x: torch.Tensor, input_shape: tuple[int, int, int], name: str = "x") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``x`` is a finite ``(B, S, C, H, W)`` batch."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 5 or tuple(x.shape[2:]) != tuple(input_shape):
        raise ValueError(
            f"{name} must be shaped (B, S, {', '.join(map(str, input_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    # one pass: a NaN or infinity makes the sum non-finite; only a sum that overflows (or a
    # non-finite value) needs the element-wise check
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


class GenerativeModel(nn.Module):
    """Base class: config handling, (de)serialisation and the optional auxiliary optimiser hook.

    Subclasses set ``config_class`` and implement :meth:`forward` (returning :class:`ModelOutput`)
    and :meth:`representation`. Models that train a second network with its own optimiser (the
    FactorVAE discriminator) override :meth:`auxiliary_parameters` and :meth:`auxiliary_loss`; the
    trainer then alternates the two optimisers.
    """

    config_class: ClassVar[type[Config]]
    registry_name: ClassVar[str] = ""

    def __init__(self, config: Config) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    # -- the interface ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def representation(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Deterministic code ``(N, d)`` of single images ``(N, C, H, W)`` for the metrics."""
        raise NotImplementedError

    def main_parameters(self) -> list[nn.Parameter]:
        aux = {id(p) for p in self.auxiliary_parameters()}
        return [p for p in self.parameters() if id(p) not in aux]

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return []

    def auxiliary_loss(self, x: torch.Tensor, output: ModelOutput) -> torch.Tensor | None:
        return None

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``model.yaml`` (name, format version, config) and ``model.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.registry_name, "format_version": FORMAT_VERSION,
                "config": self.config.to_dict()}
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_file(directory / "model.safetensors",
                          lambda tmp: save_file(state, str(tmp)))
        atomic_write_text(directory / "model.json", json.dumps(meta, indent=2))


MODELS: Registry[type[GenerativeModel]] = Registry("model")


def register_model(name: str):
    """Class decorator: register a :class:`GenerativeModel` subclass under ``name``."""

    def decorator(cls: type[GenerativeModel]) -> type[GenerativeModel]:
        cls.registry_name = name
        MODELS.add(name, cls)
        return cls

    return decorator


def build_model(name: str, config: dict[str, Any] | Config | None = None) -> GenerativeModel:
    """Build a registered model from a config object or a dict of overrides of its defaults."""
    cls = MODELS.get(name)
    if config is None:
        config = cls.config_class()
    elif not isinstance(config, Config):
        config = cls.config_class.from_dict(config)
    return cls(config)


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a model saved with :meth:`GenerativeModel.save` (config + safetensors weights)."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.exists():
        raise ValueError(f"{directory} holds no saved model (model.json is missing)")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str) \
            or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{meta_path} is not a topovae model description (it needs a 'model' "
                         "name and a 'config' mapping)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{directory} was written by an incompatible topovae version (model format "
            f"{version}, this version reads {FORMAT_VERSION}); retrain or use a matching topovae"
        )
    try:
        model = build_model(meta["model"], meta["config"])
    except ValueError as err:
        raise ValueError(f"{meta_path}: {err}") from None
    weights_path = directory / "model.safetensors"
    if not weights_path.is_file():
        raise ValueError(f"{directory} has model.json but no model.safetensors")
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except Exception as err:  # safetensors raises its own error type for a damaged file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{weights_path} is not a readable safetensors file ({first})") from None
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra
                 else "", ", ".join(f"{k} is {found[k][1]} {list(found[k][0])} instead of "
                                    f"{expected[k][1]} {list(expected[k][0])}" for k in wrong[:2])]
        raise ValueError(f"{weights_path} does not fit the model of {meta_path} "
                         f"({'; '.join(p for p in parts if p)})")
    model.load_state_dict(state)
    return model
