"""Disentanglement metrics following disentanglement_lib's protocol (Locatello et al., 2019).

Five scores of a representation ``r(x) -> R^d`` of images generated from known discrete factors:

- :func:`mig` Mutual Information Gap (Chen et al., 2018);
- :func:`sap` Separated Attribute Predictability (Kumar et al., 2018);
- :func:`dci` Disentanglement, Completeness, Informativeness (Eastwood & Williams, 2018);
- :func:`factor_vae_score` (Kim & Mnih, 2018) and :func:`beta_vae_score` (Higgins et al., 2017),
  which sample batches of observations with one factor held fixed.

Defaults are disentanglement_lib's: MIG with 20 equal-width histogram bins on 10,000 points, SAP
with a linear SVM (C = 0.01, balanced classes) on 10,000 training / 5,000 test points, DCI on
10,000 / 5,000 points with scikit-learn's ``GradientBoostingClassifier`` (defaults), the
FactorVAE score with batches of 64, 10,000 training and 5,000 evaluation votes, 10,000 points for
the global variances and pruning of dimensions whose standard deviation is below 0.05, the
beta-VAE score with batches of 64 and 10,000 / 5,000 points and a logistic regression.

Layout: codes are ``(N, d)`` and factors ``(N, K)`` (points first; disentanglement_lib stores
them transposed). Factors are discrete labels of any integer or float values.

Differences from disentanglement_lib, all deliberate:

- FactorVAE score: disentanglement_lib records the vote of the *index among active dimensions*
  in a matrix indexed by *all* dimensions, which mislabels votes as soon as a dimension before an
  active one is pruned; here votes are recorded for the true dimension index.
- Random numbers come from one ``numpy.random.Generator`` and the votes of many batches are
  computed together, so scores match disentanglement_lib's in distribution, not bit for bit.
- MIG of a factor with a single value (zero entropy) is NaN and left out of the mean.
- DCI fits the factors' classifiers in parallel (threads; the result does not depend on it).
  A faster estimator, ``estimator="random_forest"``, is a named option; its scores are not
  comparable with the protocol's (on identical inputs disentanglement 0.15 against 0.27 and
  0.10 against 0.16 in two cases), so every DCI result records its ``estimator``.

``METRIC_ESTIMATORS`` names, for every score, the estimator and sample sizes it uses by default;
``topovae evaluate`` writes it beside the scores.

One file per metric (:mod:`.mig`, :mod:`.sap`, :mod:`.dci`, :mod:`.factor_vae`,
:mod:`.beta_vae`), each with the function on codes (or on a representation and a dataset) and a
``score(representation_fn, dataset, *, n=10000, seed=0, samples=None)`` of the uniform
signature, with the protocol's sample sizes derived from ``n``; every result is a dict.
:data:`SCORES` maps the names of ``--metrics`` to those functions, :mod:`.sampling` holds the
sampling they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from topovae.metrics.disentanglement import beta_vae, dci, factor_vae, mig, sap
from topovae.metrics.disentanglement._common import RepresentationFn
from topovae.metrics.disentanglement.beta_vae import beta_vae_score
from topovae.metrics.disentanglement.dci import DCI_ESTIMATORS
from topovae.metrics.disentanglement.dci import dci as dci_function
from topovae.metrics.disentanglement.factor_vae import factor_vae_score
from topovae.metrics.disentanglement.mig import discrete_mutual_information, histogram_discretize
from topovae.metrics.disentanglement.mig import mig as mig_function
from topovae.metrics.disentanglement.sampling import Samples, sample_codes_and_factors
from topovae.metrics.disentanglement.sap import sap as sap_function

__all__ = [
    "RepresentationFn",
    "histogram_discretize",
    "discrete_mutual_information",
    "mig",
    "sap",
    "dci",
    "DCI_ESTIMATORS",
    "METRIC_ESTIMATORS",
    "SCORES",
    "Samples",
    "sample_codes_and_factors",
    "factor_vae_score",
    "beta_vae_score",
    "stored",
]

_MODULES = {"mig": mig, "sap": sap, "dci": dci, "factor_vae": factor_vae, "beta_vae": beta_vae}

#: The uniform entry of every score, in the order ``topovae evaluate`` computes them:
#: ``SCORES[name](representation_fn, dataset, *, n, seed, samples=None, **options) -> dict``.
SCORES: dict[str, Callable[..., dict[str, Any]]] = {name: module.score
                                                    for name, module in _MODULES.items()}

#: How each score is computed by default (recorded next to the scores by ``topovae evaluate``).
METRIC_ESTIMATORS: dict[str, str] = {name: module.ESTIMATOR for name, module in _MODULES.items()}

# the functions on codes keep their names at the package level
mig = mig_function  # noqa: F811
sap = sap_function  # noqa: F811
dci = dci_function  # noqa: F811


def stored(name: str, result: Mapping[str, Any]) -> Any:
    """What ``metrics.json`` keeps of the result of score ``name``: the result, or the number
    itself when the result is only that number under the score's name (SAP)."""
    if set(result) == {name}:
        return result[name]
    return dict(result)
