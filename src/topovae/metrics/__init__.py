"""Measurements: equivariance error and its control, capsule-roll prediction, capsule-offset
correlation, importance-sampled likelihood and the disentanglement metrics (MIG, SAP, DCI,
FactorVAE score, beta-VAE score) and the topographic score of a 2-D map."""

from topovae.metrics.disentanglement import (
    beta_vae_score,
    dci,
    factor_vae_score,
    mig,
    sample_codes_and_factors,
    sap,
)
from topovae.metrics.equivariance import (
    capsule_offset_correlation,
    capsule_offset_correlation_paper_protocol,
    equivariance_error,
    equivariance_error_control,
    equivariance_error_per_sequence,
    equivariance_ratio,
    normalize_capsules,
)
from topovae.metrics.likelihood import (
    LogLikelihood,
    importance_sampled_log_likelihood,
    log_likelihood_paper_protocol,
)
from topovae.metrics.roll import RollPrediction, roll_prediction
from topovae.metrics.topographic_map import class_profiles, topographic_score

__all__ = [
    "capsule_offset_correlation",
    "capsule_offset_correlation_paper_protocol",
    "equivariance_error",
    "equivariance_error_control",
    "equivariance_error_per_sequence",
    "equivariance_ratio",
    "normalize_capsules",
    "RollPrediction",
    "roll_prediction",
    "mig",
    "sap",
    "dci",
    "factor_vae_score",
    "beta_vae_score",
    "sample_codes_and_factors",
    "LogLikelihood",
    "importance_sampled_log_likelihood",
    "log_likelihood_paper_protocol",
    "class_profiles",
    "topographic_score",
]
