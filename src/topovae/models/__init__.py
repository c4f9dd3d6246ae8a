"""Models: the Topographic VAE family and the disentanglement baselines, all in one registry."""

from topovae.models import baselines as _baselines  # noqa: F401
from topovae.models import shift_operator as _shift_operator  # noqa: F401
from topovae.models import tvae as _tvae  # noqa: F401  (registers "tvae")
from topovae.models.base import (
    MODELS,
    GenerativeModel,
    ModelOutput,
    build_model,
    load_model,
    register_model,
)

__all__ = ["MODELS", "GenerativeModel", "ModelOutput", "build_model", "load_model",
           "register_model"]
