"""The experiment: one typed config holding the model, the data, the optimisation and evaluation.

An :class:`ExperimentConfig` is what a preset describes, what ``topovae train`` writes to
``RUN/config.yaml`` and what ``topovae evaluate`` reads back. Overrides from the command line use
dotted paths (``train.lr=1e-3``, ``model.config.time_window=5``, ``data.n_train=1000``) whose
values are parsed as YAML scalars; every path is checked against the keys that really exist (the
typed config's fields, OmegaConf's struct mode) so a typo is an error, never a silently ignored
setting.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from topovae.config import Config, unknown_key_message
from topovae.data.loaders import DataConfig
from topovae.models.base import MODELS

__all__ = ["FORMAT_VERSION", "ModelSpec", "TrainConfig", "EvaluateConfig", "ExperimentConfig",
           "parse_overrides", "apply_overrides", "ensure_models_registered", "check_model_size",
           "MAX_PARAMETERS"]

#: Version of the run-directory / ``config.yaml`` layout. A run written with another version is
#: refused by :func:`topovae.rundir.load_run` instead of being misread.
from topovae.format import FORMAT_VERSION  # noqa: E402  (one version for every run file)

_MODEL_MODULES = ("topovae.models.tvae", "topovae.models.baselines",
                  "topovae.models.shift_operator")


def ensure_models_registered() -> None:
    """Import the modules that register models, so that every model name resolves."""
    for module in _MODEL_MODULES:
        importlib.import_module(module)


@dataclasses.dataclass
class ModelSpec(Config):
    """A registered model name and a dict of overrides of that model's config defaults."""

    name: str = "tvae"
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        ensure_models_registered()
        cls = MODELS.get(self.name)  # raises ValueError listing the known names
        try:
            cls.config_class.from_dict(self.config)
        except ValueError as err:
            raise ValueError(f"model.config: {err}") from None

    def build_config(self) -> Config:
        """The model's typed config (defaults overridden by :attr:`config`)."""
        return MODELS.get(self.name).config_class.from_dict(self.config)

    def resolved(self) -> ModelSpec:
        """The same spec with every field of the model config written out."""
        return self.evolve(config=self.build_config().to_dict())


@dataclasses.dataclass
class TrainConfig(Config):
    """Optimisation and run-time settings.

    ``kl_warmup_steps`` ramps the weight of everything but the reconstruction term linearly from 0
    to 1 over that many optimiser steps (``loss = recon + w * (loss - recon)``); 0 disables it.
    ``max_steps = -1`` and ``max_time = None`` mean no limit. ``checkpoint_every_n_steps`` writes
    ``checkpoints/last.ckpt`` (atomically) every that many steps, and always at the end.
    ``devices`` per machine and ``num_nodes`` machines train data-parallel on
    ``devices x num_nodes`` processes, each on its own ``data.batch_size`` sequences of every
    global batch (``docs/scaling.md``).
    ``eval_every_n_steps > 0`` measures the equivariance ratio and the roll-prediction gain every
    that many steps on ``eval_sequences`` fixed held-out sequences (capsule models; see
    :mod:`topovae.training.periodic_eval`); 0, the default, turns it off.
    """

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_epochs: int = 100
    max_steps: int = -1
    max_time: float | None = None
    seed: int = 0
    devices: int = 1
    num_nodes: int = 1
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    kl_warmup_steps: int = 0
    grad_clip: float | None = None
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 500
    val_batches: int = 20
    progress_bar: bool = True
    eval_every_n_steps: int = 0
    eval_sequences: int = 16
    # learning-rate schedule (topovae.training.schedule): constant or cosine, after a linear
    # warm-up; the defaults keep train.lr at every step. adam_betas: Adam's (beta1, beta2).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_warmup_steps: int = 0
    lr_decay_steps: int = 0
    lr_min_factor: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def validate(self) -> None:
        self._validate_schedule()
        if self.lr <= 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if self.max_epochs < 1:
            raise ValueError(f"train.max_epochs must be >= 1, got {self.max_epochs}")
        if self.max_steps < -1 or self.max_steps == 0:
            raise ValueError(f"train.max_steps must be -1 (no limit) or >= 1, got {self.max_steps}")
        if self.max_time is not None and self.max_time <= 0:
            raise ValueError(f"train.max_time must be positive seconds, got {self.max_time}")
        if self.devices < 1:
            raise ValueError(f"train.devices must be >= 1, got {self.devices}")
        if self.num_nodes < 1:
            raise ValueError(f"train.num_nodes must be >= 1, got {self.num_nodes}")
        if self.kl_warmup_steps < 0:
            raise ValueError(f"train.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"train.grad_clip must be positive, got {self.grad_clip}")
        for name in ("log_every_n_steps", "checkpoint_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every_n_steps < 0:
            raise ValueError("train.eval_every_n_steps must be >= 0 (0: off), got "
                             f"{self.eval_every_n_steps}")
        if self.eval_sequences < 2:
            raise ValueError(f"train.eval_sequences must be >= 2, got {self.eval_sequences}")
        if self.val_batches < 0:
            raise ValueError(f"train.val_batches must be >= 0, got {self.val_batches}")
        if self.precision not in ("32-true", "32", "16-mixed", "bf16-mixed", "64-true"):
            raise ValueError(f"train.precision {self.precision!r} is not one of "
                             "32-true, 16-mixed, bf16-mixed, 64-true")

    def _validate_schedule(self) -> None:
        if self.lr_warmup_steps < 0:
            raise ValueError(f"train.lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        if self.lr_schedule == "cosine" and self.lr_decay_steps < 1:
            raise ValueError("train.lr_schedule cosine needs train.lr_decay_steps >= 1, got "
                             f"{self.lr_decay_steps}")
        if not 0.0 <= self.lr_min_factor <= 1.0:
            raise ValueError(f"train.lr_min_factor must be in [0, 1], got {self.lr_min_factor}")
        if not all(0.0 <= beta < 1.0 for beta in self.adam_betas):
            raise ValueError(f"train.adam_betas must be in [0, 1), got {list(self.adam_betas)}")


@dataclasses.dataclass
class EvaluateConfig(Config):
    """Settings of ``topovae evaluate`` (always on the test split, always seeded).

    ``n_eval_sequences`` caps the test sequences used by every sequence measurement (0 = all),
    ``n_ll_sequences`` those of the (expensive) importance-sampled likelihood, and
    ``disentanglement_samples`` the number of training points of the disentanglement metrics,
    and ``n_map_images`` the test images of the topographic-map score (torus models; 0 = all).
    """

    n_is_samples: int = 10
    n_eval_sequences: int = 1000
    n_ll_sequences: int = 200
    batch_size: int = 16
    seed: int = 0
    metrics: list[str] = dataclasses.field(default_factory=list)
    disentanglement_samples: int = 10000
    n_map_images: int = 10000
    # DCI's classifier: "gradient_boosting" (disentanglement_lib's protocol) or "random_forest"
    dci_estimator: str = "gradient_boosting"

    def validate(self) -> None:
        for name in ("n_is_samples", "batch_size", "disentanglement_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"evaluate.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_eval_sequences", "n_ll_sequences", "n_map_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"evaluate.{name} must be >= 0 (0 = all), got "
                                 f"{getattr(self, name)}")
        if self.dci_estimator not in ("gradient_boosting", "random_forest"):
            raise ValueError(f"evaluate.dci_estimator must be 'gradient_boosting' or "
                             f"'random_forest', got {self.dci_estimator!r}")
        unknown = sorted(set(self.metrics) - set(DISENTANGLEMENT_METRICS))
        if unknown:
            raise ValueError(f"evaluate.metrics: unknown {unknown}; choose from "
                             f"{list(DISENTANGLEMENT_METRICS)}")


#: Optional disentanglement metrics (``--metrics``) evaluated on a ground-truth dataset.
DISENTANGLEMENT_METRICS = ("mig", "sap", "dci", "factor_vae", "beta_vae")


@dataclasses.dataclass
class ExperimentConfig(Config):
    """Everything needed to reproduce one training run and its evaluation.

    ``preset`` names the preset the run was trained from (empty for a ``--config`` file); it is
    what ``topovae compare --by preset`` groups the seeds of one experiment by.
    """

    preset: str = ""
    description: str = ""
    notes: str = ""
    format_version: int = FORMAT_VERSION
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)

    def validate(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} is not supported (this topovae reads "
                f"{FORMAT_VERSION}); retrain with this version or use a matching topovae"
            )

    def resolved(self) -> ExperimentConfig:
        """A copy whose model config lists every field (what ``config.yaml`` stores)."""
        return self.evolve(model=self.model.resolved())

    def with_overrides(self, overrides: Mapping[str, Any]) -> ExperimentConfig:
        """Apply dotted-path overrides (already parsed values); unknown paths raise."""
        base = self.resolved().to_dict()
        new_name = overrides.get("model.name", self.model.name)
        if new_name != self.model.name:  # another model: its own defaults, not this one's fields
            base["model"] = ModelSpec.from_dict({"name": new_name}).resolved().to_dict()
        return ExperimentConfig.from_dict(apply_overrides(base, overrides))


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key.sub=value`` strings; values are YAML scalars (``1e-3``, ``true``, ``[1, 2]``),
    read as OmegaConf reads a dotted list; text that is not YAML stays text."""
    out: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        if not key.strip():
            raise ValueError(f"override {item!r} has an empty key")
        try:
            value = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))["value"]
        except (yaml.YAMLError, OmegaConfBaseException):
            value = text
        out[key.strip()] = "" if not text.strip() else value
    return out


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of the dict ``config`` with dotted-path ``overrides`` set.

    Every segment of a path must name an existing key (OmegaConf's struct mode); otherwise
    ``ValueError`` names the key and lists the valid ones.
    """
    tree = OmegaConf.create(dict(config), flags={"struct": True})
    for dotted, value in overrides.items():
        try:
            OmegaConf.update(tree, dotted, value, merge=False)
        except (ConfigKeyError, ConfigAttributeError) as err:
            raise ValueError(unknown_key_message(err, "top level")) from None
    return OmegaConf.to_container(tree)  # type: ignore[return-value]


def check_data(experiment: ExperimentConfig) -> Any:
    """Build the experiment's data and check that its batches fit the model; return the bundle.

    Run before anything is written, so that missing data files or a model whose ``input_shape``
    or ``seq_len`` does not match the frames of the data fail early with a message naming the key.
    """
    from topovae.data.loaders import build_data

    check_model_size(experiment)
    model_config = experiment.model.build_config()
    expected_shape = getattr(model_config, "input_shape", None)
    expected_len = getattr(model_config, "seq_len", None)
    data = experiment.data
    if expected_len is not None and data.seq_len != expected_len:  # before building any batch
        raise ValueError(f"data.seq_len is {data.seq_len} but model.config.seq_len is "
                         f"{expected_len}; make data.seq_len and model.config.seq_len agree")
    if expected_shape is not None:
        batch_bytes = 4 * data.batch_size * data.seq_len * math.prod(expected_shape)
        if batch_bytes > MAX_BATCH_BYTES:
            raise ValueError(f"one batch of data.batch_size={data.batch_size} sequences of "
                             f"{data.seq_len} frames would take {batch_bytes / 2**30:,.0f} GiB; "
                             "lower data.batch_size or data.seq_len")
    bundle = build_data(experiment.data, seed=experiment.train.seed)
    if len(bundle.train) == 0:
        raise ValueError(f"data.batch_size={data.batch_size} is larger than the training set "
                         "(not one batch per epoch); lower data.batch_size")
    for split, loader in (("train", bundle.train), ("test", bundle.test)):
        x = loader.batch(0, 0)["x"]
        if expected_shape is not None and tuple(x.shape[2:]) != tuple(expected_shape):
            raise ValueError(
                f"the {split} frames are shaped {tuple(x.shape[2:])} but model.config.input_shape "
                f"is {tuple(expected_shape)}; set model.config.input_shape="
                f"[{', '.join(map(str, x.shape[2:]))}]"
            )
        if expected_len is not None and x.shape[1] != expected_len:
            raise ValueError(
                f"the {split} sequences have {x.shape[1]} frames but model.config.seq_len is "
                f"{expected_len}; make data.seq_len and model.config.seq_len agree"
            )
    return bundle


def capsule_rule(seq_len: int) -> dict[str, int]:
    """The capsule settings of ``docs/your-data.md`` for sequences of ``seq_len`` frames, scaled
    from the figures model (S = 18: 18 capsules of 18 units, time window 13, capsule window 3):
    ``cap_dim = S`` (a sequence that steps once per frame rolls each capsule once around over
    S frames, as in the paper: 18 for MNIST, 15 for dSprites), ``n_caps = 18``,
    ``time_window = round(13 S / 18)`` (at least 1) and ``capsule_window = 3`` (1 when
    ``cap_dim < 3``)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    return {"n_caps": 18, "cap_dim": seq_len, "time_window": max(1, round(13 * seq_len / 18)),
            "capsule_window": 3 if seq_len >= 3 else 1}


def adapt_to_data(experiment: ExperimentConfig) -> ExperimentConfig:
    """For your own data (``data.source`` ``images`` or ``sequences``): the experiment with the
    model's ``input_shape`` and ``seq_len`` taken from the frames of the data (what
    ``topovae train`` writes to ``RUN/config.yaml``); other sources are returned unchanged.

    A time window longer than the sequences is an error naming the data and the fix.
    """
    from topovae.data.loaders import build_data
    from topovae.data.own import OWN_SOURCES

    data = experiment.data
    if data.source not in OWN_SOURCES:
        return experiment
    x = build_data(data, seed=experiment.train.seed).train.batch(0, 0)["x"]
    shape, n_frames = [int(s) for s in x.shape[2:]], int(x.shape[1])
    fields = MODELS.get(experiment.model.name).config_class.field_names()
    overrides: dict[str, Any] = {}
    if "input_shape" in fields:
        overrides["model.config.input_shape"] = shape
    if "seq_len" in fields:
        overrides["model.config.seq_len"] = n_frames
    overrides["data.seq_len"] = n_frames  # the files' sequence length, not a setting
    window = experiment.model.build_config().to_dict().get("time_window")
    if isinstance(window, int) and window > n_frames:
        what = (f"{data.path}: the sequences have" if data.source == "sequences"
                else f"data.seq_len={n_frames}: the sequences of {data.path} have")
        rule = capsule_rule(n_frames)
        raise ValueError(f"{what} {n_frames} frames, fewer than the model's time window "
                         f"model.config.time_window={window}; set model.config.time_window="
                         f"{rule['time_window']} (the rule of docs/your-data.md for S={n_frames}: "
                         f"cap_dim={rule['cap_dim']}, time_window={rule['time_window']})")
    return experiment.with_overrides(overrides)
#: More parameters than this (8 GiB of float32 weights) is taken for a mistyped size.
MAX_PARAMETERS = 2**31
#: A batch of more bytes than this (8 GiB of float32 frames) is taken for a mistyped size.
MAX_BATCH_BYTES = 2**33


def check_model_size(experiment: ExperimentConfig) -> int:
    """Build the model on the ``meta`` device (no memory) and return its parameter count.

    A model that cannot be built, or with more than :data:`MAX_PARAMETERS` parameters (a size
    typed with too many digits), is a ``ValueError`` naming ``model.config``.
    """
    import torch

    from topovae.models.base import build_model

    try:
        with torch.device("meta"):
            model = build_model(experiment.model.name, experiment.model.config)
    except (RuntimeError, TypeError, OverflowError, MemoryError, ZeroDivisionError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"model.config of {experiment.model.name!r} gives a model that cannot "
                         f"be built ({first})") from None
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"model.config of {experiment.model.name!r} gives {count:,} parameters "
                         f"(more than {MAX_PARAMETERS:,}); check the sizes in model.config")
    return count
