"""The disentanglement scores (``--metrics``): MIG, SAP, DCI, FactorVAE and beta-VAE of
``model.representation``, under ``metrics["disentanglement"]``.

The metrics themselves are pure functions in :mod:`topovae.metrics.disentanglement`; this is the
protocol glue: the ground-truth grid of the run's test split (for dSprites the protocol's
3x5x15x15x15 sub-grid, :func:`topovae.data.ground_truth.evaluation_grid`), the sample sizes of
``evaluate.disentanglement_samples = n`` (MIG, SAP and DCI train on ``n`` codes and test on
``n // 2``; FactorVAE ``n`` votes, ``n // 2`` for evaluation and ``n`` points for the global
variances; beta-VAE ``n`` training and ``n // 2`` evaluation points), a grid encoded once when
the metrics would render more images than it holds, and the estimators used. For your own
images or sequences the scores use the frames' factors (:mod:`topovae.evaluate_own`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from topovae.measure.base import Column, Measurement, register
from topovae.measure.context import EvaluationContext
from topovae.models.capabilities import Representation
from topovae.training.experiment import ExperimentConfig

__all__ = ["Disentanglement", "disentanglement_scores", "identity", "MAX_ENCODED_GRID"]

# Grids up to this many images are encoded whole when the metrics would render more than that.
MAX_ENCODED_GRID = 250_000


def identity(codes: torch.Tensor) -> torch.Tensor:
    return codes


def disentanglement_scores(model: torch.nn.Module, experiment: ExperimentConfig,
                           names: Sequence[str], seed: int, device: torch.device
                           ) -> dict[str, Any]:
    """The scores ``names`` of ``model.representation`` on the ground truth of the test split."""
    from topovae.data.ground_truth import EncodedGrid, evaluation_grid, images_requested
    from topovae.data.sources import build_source
    from topovae.metrics import disentanglement as dis

    cfg = experiment.data
    source = build_source(cfg.source, split=cfg.test_split, data_dir=cfg.data_dir,
                          download=cfg.download)
    dataset = source.ground_truth
    if dataset is None:
        raise ValueError(f"--metrics needs a ground-truth dataset; data.source {cfg.source!r} "
                         "has none (use a dSprites run)")
    dataset = evaluation_grid(source, dataset)

    def represent(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.representation(images.to(device)).cpu()

    n = experiment.evaluate.disentanglement_samples
    estimators = {name: dis.METRIC_ESTIMATORS[name] for name in names}
    if "dci" in names and experiment.evaluate.dci_estimator != "gradient_boosting":
        estimators["dci"] = (f"{experiment.evaluate.dci_estimator} (not disentanglement_lib's; "
                             "not comparable with published DCI scores)")
    out: dict[str, Any] = {"disentanglement_samples": n,
                           "factor_names": list(dataset.factor_names),
                           "factor_sizes": list(dataset.factor_sizes),
                           "estimators": estimators}
    grid_size = math.prod(dataset.factor_sizes)
    if grid_size <= MAX_ENCODED_GRID and images_requested(names, n) > grid_size:
        dataset = EncodedGrid(dataset, represent)
        represent = identity
    # in the fixed order of SCORES (SAP's SVMs draw from numpy's global generator); MIG, SAP
    # and DCI share one draw of training and test codes
    samples = dis.Samples(represent, dataset)
    options = {"dci": {"estimator": experiment.evaluate.dci_estimator}}
    for name, score in dis.SCORES.items():
        if name in names:
            result = score(represent, dataset, n=n, seed=seed, samples=samples,
                           **options.get(name, {}))
            out[name] = dis.stored(name, result)
    return out


_SCORE = "score (0 to 1)"
_ACCURACY = "accuracy (0 to 1)"


def _score(key: str, label: str, unit: str, meaning: str, short: str, name: str) -> Column:
    return Column(f"disentanglement.{key}", label, unit, 3, False, "disentanglement", meaning,
                  short=short, name=name, table="disentanglement")


@register
class Disentanglement(Measurement):
    name = "disentanglement"
    requires = Representation
    order = 80
    writes = ("disentanglement", "disentanglement.disentanglement_samples",
              "disentanglement.factor_names", "disentanglement.factor_sizes",
              "disentanglement.estimators", "disentanglement.n_frames",
              *(f"disentanglement.{name}_unavailable"
                for name in ("mig", "sap", "dci", "factor_vae", "beta_vae")))
    columns = (
        _score("mig.mig", "MIG", "bits / entropy (0 to 1)",
               "Mutual Information Gap: for each factor, the gap in normalised mutual "
               "information between its two most informative code units.", "MIG", "mig"),
        _score("sap", "SAP", _SCORE, "Separated Attribute Predictability: gap in "
               "predictability of each factor between its two best single code units.",
               "SAP", "sap"),
        _score("dci.disentanglement", "DCI disentanglement", _SCORE,
               "How much each code unit predicts a single factor (random-forest importances).",
               "DCI dis.", "dci_disentanglement"),
        _score("dci.completeness", "DCI completeness", _SCORE,
               "How much each factor is captured by a single code unit.", "DCI comp.",
               "dci_completeness"),
        _score("dci.informativeness_test", "DCI informativeness", "test accuracy (0 to 1)",
               "How well the whole code predicts the factors on held-out points.", "DCI inf.",
               "dci_informativeness"),
        _score("factor_vae.eval_accuracy", "FactorVAE score", _ACCURACY,
               "Majority-vote accuracy of guessing which factor was held fixed from the "
               "least-varying normalised unit.", "FactorVAE", "factor_vae"),
        _score("beta_vae.eval_accuracy", "beta-VAE score", _ACCURACY,
               "Linear-classifier accuracy of guessing which factor was held fixed from code "
               "differences.", "beta-VAE", "beta_vae"),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        return bool(ctx.metrics)

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        from topovae.data.own import OWN_SOURCES

        if ctx.experiment.data.source in OWN_SOURCES:
            from topovae.evaluate_own import own_disentanglement

            # the frames' factors, not "varied"
            factors = {k: v for k, v in ctx.factors.items() if k != "varied"}
            return {"disentanglement": own_disentanglement(ctx.model, ctx.x, factors,
                                                           ctx.metrics, ctx.seed)}
        return {"disentanglement": disentanglement_scores(ctx.model, ctx.experiment,
                                                          ctx.metrics, ctx.seed, ctx.device)}
