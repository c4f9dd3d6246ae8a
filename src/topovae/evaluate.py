"""``topovae evaluate``: the measurements of a trained run, written to ``RUN/metrics.json``.

Everything is computed on the run's test split, with the RNG seeded from ``evaluate.seed`` so
that evaluating the same run twice gives the same numbers:

* ``log_likelihood_nats_per_image``: importance-sampled ``log p(x)`` with ``n_is_samples``
  samples, scored jointly over each sequence (on ``n_ll_sequences`` test sequences);
* ``equivariance_error``, its shuffled-frame ``equivariance_error_control`` and their
  ``equivariance_ratio`` (models with capsule codes), and ``equivariance_ratio_untrained``: the
  ratio of the same architecture, untrained, on the same sequences (the temporal coupling
  alone already makes codes partly roll-like; training must be judged against this level);
* ``roll_prediction_nll`` / ``roll_prediction_mse``: encode frame 0 alone, roll its capsules by
  ``k``, decode and compare with true frame ``k`` (NLL in nats per image, MSE per pixel, mean over
  ``k = 1 .. S-1``); ``roll_prediction_nll_static``: the same for the unrolled code (predicting
  that nothing changes), the control a roll prediction must beat; ``roll_prediction_nll_sequence
  _context``: frame 0's code taken from the whole sequence as in training, where the temporal
  coupling lets it see frames inside the time window;
* ``capsule_offset_correlation`` (dSprites runs);
* the original code's estimators, labelled ``_paper_protocol``, to set beside the paper's
  tables (ours stay the primary numbers): ``log_likelihood_paper_protocol_nats_per_image``
  (every frame scored on its own, no ``- log K``; :func:`topovae.metrics
  .log_likelihood_paper_protocol`) with ``log_likelihood_untrained_nats_per_image`` and
  ``log_likelihood_paper_protocol_untrained_nats_per_image`` of the same architecture untrained;
  on dSprites ``capsule_offset_correlation_paper_protocol`` per transformation (on codes sampled
  from ``q``; :func:`topovae.metrics.capsule_offset_correlation_paper_protocol`) with its
  ``_random`` control (Gaussian codes, same factors), the top-level value being the mean over the
  four transformations; the strict ``capsule_offset_correlation`` has its ``_random`` control
  too;
* ``operator_prediction_nll`` / ``_mse``, ``reconstruction_nll`` and ``step_roll`` /
  ``step_roll_fraction`` (models with a latent operator of their own,
  :class:`topovae.models.shift_operator.LatentOperatorModel`): frame ``k`` predicted from frame 0
  with that operator (a roll, or the disentangled 2-D rotation), every frame decoded from its
  own code, and the roll one frame step has become in the codes;
* ``per_transformation``: the equivariance error, control and ratio (and the capsule-offset
  correlation for dSprites) of the test sequences of each transformation, for the builders that
  vary one factor per sequence (``single_factor``, ``dsprites``: Table 2 of the paper);
* ``topographic_map`` (models on a torus, data with labels): the neighbour correlation of the
  units' class profiles against shuffled maps (:func:`topovae.metrics.topographic_score`) on
  ``n_map_images`` test images, each encoded alone (``model.representation``), and
  ``score_untrained``, the same for the architecture randomly initialised;
* optionally (``--metrics``) MIG, SAP, DCI, FactorVAE and beta-VAE scores of
  ``model.representation`` on the ground-truth dataset, under ``result["disentanglement"]``.
  Factors are drawn from the grid of the run's test split (for dSprites the protocol's
  3x5x15x15x15 sub-grid the runs are trained on, not the full 3x6x40x32x32 grid); the grid used
  is recorded as ``factor_names`` / ``factor_sizes``.

Which code the disentanglement metrics score: for the baselines (beta-VAE, beta-TCVAE,
FactorVAE) the posterior mean ``mu(x)`` of the 10 latents; for the TVAE the capsule code
``t = (E[z] + mu) / sqrt(W E[u**2] + eps)`` with posterior expectations (``E[u**2] = u_mean**2
+ exp(u_logvar)``; ``t = z_mean`` for the plain-VAE configuration), flattened to ``n_caps *
cap_dim`` units, each image encoded alone (a sequence of length 1: the within-frame part of
the coupling, no temporal pooling; see ``TVAE.representation``).

Every score is computed as disentanglement_lib does by default (DCI with scikit-learn's
``GradientBoostingClassifier``; ``evaluate.dci_estimator`` / ``--dci-estimator random_forest``
is a faster, non-comparable option) and ``result["disentanglement"]["estimators"]`` records,
per score, which estimator produced it.

Sample sizes (``evaluate.disentanglement_samples = n``, ``--disentanglement-samples``): MIG,
SAP and DCI train on ``n`` codes and test on ``n // 2``; the FactorVAE score uses ``n`` votes
for training, ``n // 2`` for evaluation and ``n`` points for the global variances; the beta-VAE
score ``n`` training and ``n // 2`` evaluation points (votes and points are batches of 64
images). The default ``n = 10000`` is disentanglement_lib's protocol (10,000 / 5,000).
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from topovae.training.experiment import DISENTANGLEMENT_METRICS, ExperimentConfig
from topovae.training.run import atomic_write_json, load_run

__all__ = ["evaluate_run", "evaluate_model", "collect_test_sequences"]


def collect_test_sequences(bundle: Any, n_sequences: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """The first ``n_sequences`` (0 = all) test sequences ``(N, S, C, H, W)`` and their factors."""
    loader = bundle.test
    if hasattr(loader, "set_epoch"):
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


def _per_transformation(codes: torch.Tensor, factors: dict[str, torch.Tensor],
                        experiment: ExperimentConfig, seed: int) -> dict[str, Any]:
    """E_eq, its control and ratio (and, for dSprites, the capsule-offset correlation) over the
    test sequences of each transformation, for builders that vary one factor per sequence
    (Table 2 of the paper reports dSprites this way)."""
    from topovae.data.sequences import FACTORS, DSpritesSequences
    from topovae.metrics.equivariance import (
        capsule_offset_correlation,
        equivariance_error,
        equivariance_error_control,
    )

    builder = experiment.data.test_sequences or experiment.data.sequences
    names = {"dsprites": DSpritesSequences.STEPPED, "single_factor": FACTORS}.get(builder)
    varied = factors.get("varied")
    if names is None or varied is None:
        return {}
    varied = varied[:, 0].to(codes.device)
    out: dict[str, Any] = {}
    for index, name in enumerate(names):
        rows = codes[varied == index]
        if len(rows) < 2:  # the control shuffles frames across sequences: needs two
            continue
        error = float(equivariance_error(rows))
        control = float(equivariance_error_control(rows, seed=seed))
        entry: dict[str, Any] = {"n_sequences": len(rows), "equivariance_error": error,
                                 "equivariance_error_control": control,
                                 "equivariance_ratio": error / control if control > 0 else None}
        if builder == "dsprites":
            corr = capsule_offset_correlation(rows)
            entry["capsule_offset_correlation"] = _finite(float(corr["correlation"]))
            entry["capsule_offset_accuracy"] = float(corr["accuracy"])
        out[name] = entry
    return out


def _topographic_map(model: torch.nn.Module, bundle: Any, n_images: int, seed: int
                     ) -> dict[str, Any] | None:
    """Topographic score of the torus of ``model`` on the first ``n_images`` test images."""
    from topovae.metrics.topographic_map import topographic_score

    loader = bundle.test
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    device = next(model.parameters()).device
    codes, labels, total = [], [], 0
    for batch in loader:
        frame_labels = batch.get("labels")
        if frame_labels is None or bool((frame_labels < 0).any()):
            return None  # unlabelled data: no class profiles
        x = batch["x"]
        codes.append(model.representation(x.flatten(0, 1).to(device)).cpu())
        labels.append(frame_labels.repeat_interleave(x.shape[1]))
        total += len(codes[-1])
        if n_images and total >= n_images:
            break
    if not codes:
        return None
    limit = n_images or total
    cfg = model.config
    score = topographic_score(torch.cat(codes)[:limit], torch.cat(labels)[:limit],
                              (cfg.n_caps, cfg.cap_dim), seed=seed)
    return {**score, "n_images": min(limit, total)}


def _capsule_codes(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    if not hasattr(model, "latent_codes"):
        return None
    codes = [model.latent_codes(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    out = torch.cat(codes)
    return out if out.dim() == 4 else None


def _untrained_ratio(model: torch.nn.Module, x: torch.Tensor, batch_size: int,
                     init_seed: int, seed: int) -> float | None:
    """Equivariance ratio of the same architecture, randomly initialised, on the same sequences.

    With temporal coupling the topography alone makes ``t`` partly roll-like (neighbouring frames
    pool overlapping, diagonally shifted windows of ``u``), so an untrained network already
    scores below 1; this is the level training must be compared with.
    """
    from topovae.metrics.equivariance import equivariance_ratio
    from topovae.models.base import build_model

    torch.manual_seed(init_seed)
    fresh = build_model(model.registry_name, model.config).to(x.device).eval()
    codes = _capsule_codes(fresh, x, batch_size)
    if codes is None:
        return None
    return _finite(float(equivariance_ratio(codes, seed=seed)))


def _likelihood(model: torch.nn.Module, x: torch.Tensor, n_samples: int,
                batch_size: int) -> dict[str, Any]:
    from topovae.metrics.likelihood import importance_sampled_log_likelihood

    total, images = 0.0, 0
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        result = importance_sampled_log_likelihood(model, chunk, n_samples)
        n_images = chunk.shape[0] * chunk.shape[1]
        total += float(result.nats_per_image) * n_images
        images += n_images
    return {"log_likelihood_nats_per_image": total / images, "n_is_samples": n_samples,
            "n_ll_sequences": len(x)}


def _likelihood_paper_protocol(model: torch.nn.Module, x: torch.Tensor, n_samples: int,
                               batch_size: int, init_seed: int) -> dict[str, Any]:
    """The original code's per-frame log-likelihood of ``x``, and both estimators for the same
    architecture untrained (the level training starts from)."""
    from topovae.metrics.likelihood import (
        FrameWeights,
        importance_sampled_log_likelihood,
        log_likelihood_paper_protocol,
    )
    from topovae.models.base import build_model

    keys = ("log_likelihood_paper_protocol_nats_per_image",
            "log_likelihood_untrained_nats_per_image",
            "log_likelihood_paper_protocol_untrained_nats_per_image")
    if not isinstance(model, FrameWeights):
        return dict.fromkeys(keys)
    torch.manual_seed(init_seed)
    fresh = build_model(model.registry_name, model.config).to(x.device).eval()
    paper = log_likelihood_paper_protocol(model, x, n_samples, batch_size=batch_size)
    untrained = importance_sampled_log_likelihood(fresh, x, n_samples, batch_size=batch_size)
    paper_untrained = log_likelihood_paper_protocol(fresh, x, n_samples, batch_size=batch_size)
    return dict(zip(keys, (paper.nats_per_image, untrained.nats_per_image,
                           paper_untrained.nats_per_image), strict=True))


def _sampled_codes(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Codes ``t`` sampled from ``q(z|x) q(u|x)`` (a forward pass), ``(B, S, n_caps, cap_dim)``."""
    return torch.cat([model(x[i:i + batch_size]).codes for i in range(0, len(x), batch_size)])


def _offsets_paper_protocol(sampled: torch.Tensor, factors: dict[str, torch.Tensor],
                            seed: int) -> dict[str, Any]:
    """The original code's capsule correlation per stepped dSprites factor, on codes sampled
    from ``q``, and on Gaussian codes of the same shape and factors (its chance level)."""
    from topovae.data.dsprites import SUBGRID
    from topovae.data.sequences import DSpritesSequences
    from topovae.metrics.equivariance import capsule_offset_correlation_paper_protocol

    varied = factors.get("varied")
    if varied is None:
        return {}
    generator = torch.Generator().manual_seed(seed)
    random_codes = torch.randn(sampled.shape, generator=generator, dtype=torch.float64)
    out: dict[str, Any] = {}
    for k, name in enumerate(DSpritesSequences.STEPPED):
        rows = (varied[:, 0] == k).cpu()
        if int(rows.sum()) < 2 or name not in factors:
            continue
        grid = SUBGRID[name]
        index = torch.from_numpy(np.searchsorted(grid, factors[name][rows].cpu().numpy()))
        trained = capsule_offset_correlation_paper_protocol(sampled[rows.to(sampled.device)],
                                                            index)
        chance = capsule_offset_correlation_paper_protocol(random_codes[rows], index)
        out[name] = {"capsule_offset_correlation_paper_protocol": _finite(trained["correlation"]),
                     "capsule_offset_correlation_paper_protocol_random":
                         _finite(chance["correlation"]),
                     "paper_protocol_n_sequences": trained["n_sequences"]}
    return out


def _offset_controls(model: torch.nn.Module, x: torch.Tensor, codes: torch.Tensor,
                     factors: dict[str, torch.Tensor], per: dict[str, Any], batch_size: int,
                     seed: int) -> dict[str, Any]:
    """The strict correlation's random-code control, and the original code's correlation (with
    its control) per transformation, merged into ``per``; returns the top-level values."""
    from topovae.metrics.equivariance import capsule_offset_correlation

    generator = torch.Generator().manual_seed(seed)
    random_codes = torch.randn(codes.shape, generator=generator, dtype=torch.float64)
    out: dict[str, Any] = {"capsule_offset_correlation_random": _finite(float(
        capsule_offset_correlation(random_codes)["correlation"]))}
    paper = _offsets_paper_protocol(_sampled_codes(model, x, batch_size), factors, seed)
    for name, entry in paper.items():
        per.setdefault(name, {}).update(entry)
    for key in ("capsule_offset_correlation_paper_protocol",
                "capsule_offset_correlation_paper_protocol_random"):
        values = [entry[key] for entry in paper.values() if entry[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _roll(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> dict[str, Any]:
    from topovae.metrics.roll import roll_prediction

    sums = {"nll": 0.0, "mse": 0.0, "nll_static": 0.0, "nll_sequence_context": 0.0}
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        strict = roll_prediction(model, chunk, n_keep=0, context="first_frame")
        informed = roll_prediction(model, chunk, n_keep=0, context="sequence")
        sums["nll"] += strict.nll * len(chunk)
        sums["mse"] += strict.mse * len(chunk)
        sums["nll_static"] += strict.nll_static * len(chunk)
        sums["nll_sequence_context"] += informed.nll * len(chunk)
    return {f"roll_prediction_{key}": value / len(x) for key, value in sums.items()}


def _operator_prediction(model: torch.nn.Module, x: torch.Tensor, codes: torch.Tensor,
                         batch_size: int) -> dict[str, Any]:
    """For models with a latent operator of their own (the shift-operator autoencoder): frame
    ``k`` predicted from frame 0 with that operator, the reconstruction NLL, and which roll one
    frame step has become in the codes (``step_roll``)."""
    from topovae.models.shift_operator import LatentOperatorModel, operator_prediction, step_roll

    if not isinstance(model, LatentOperatorModel):
        return {}
    sums: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        for key, value in operator_prediction(model, chunk).items():
            sums[key] = sums.get(key, 0.0) + value * len(chunk)
    return {**{key: value / len(x) for key, value in sums.items()}, **step_roll(codes)}


class _FactorSubgrid:
    """A ground-truth dataset restricted to a product sub-grid of its factor values.

    ``values[i]`` lists the values (indices of the full grid) that factor ``i`` takes; factor
    index ``k`` of this dataset is value ``values[i][k]`` of the wrapped one. Implements
    :class:`~topovae.data.ground_truth.GroundTruthData`.
    """

    def __init__(self, dataset: Any, values: Sequence[np.ndarray]) -> None:
        self.dataset = dataset
        self.values = [np.asarray(v, dtype=np.int64) for v in values]

    @property
    def factor_names(self) -> list[str]:
        return list(self.dataset.factor_names)

    @property
    def factor_sizes(self) -> list[int]:
        return [len(v) for v in self.values]

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.observation_shape)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, len(v), size=n) for v in self.values], axis=1)

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        factors = np.asarray(factors, dtype=np.int64)
        full = np.stack([v[factors[:, i]] for i, v in enumerate(self.values)], axis=1)
        return self.dataset.observations_from_factors(full)


class _EncodedGrid:
    """Every image of a small factor grid encoded once; serves codes in place of images.

    The FactorVAE and beta-VAE scores draw about 10**6 images (votes and points are batches of
    64) from a grid of about 5 * 10**4 (the protocol's dSprites sub-grid), so rendering and
    encoding each grid image once and indexing the codes gives the same scores in a fraction of
    the time. Valid because ``representation`` is deterministic, one image at a time. Used with
    the identity as the metrics' representation function.
    """

    def __init__(self, grid: Any, represent: Any, batch_size: int = 512) -> None:
        self.grid = grid
        sizes = list(grid.factor_sizes)
        every = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=1)
        self.codes = torch.cat([represent(grid.observations_from_factors(every[i:i + batch_size]))
                                for i in range(0, len(every), batch_size)])
        self.factor_names = list(grid.factor_names)
        self.factor_sizes = sizes
        self.observation_shape = tuple(self.codes.shape[1:])

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.grid.sample_factors(n, rng)

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        index = np.ravel_multi_index(tuple(np.asarray(factors, dtype=np.int64).T),
                                     self.factor_sizes)
        return self.codes[torch.as_tensor(index)]


def _images_requested(names: Sequence[str], n: int) -> int:
    """How many images the disentanglement metrics ``names`` render with ``n`` samples (the
    sample sizes of :func:`_disentanglement`: ``n`` training and ``n // 2`` test points; votes
    and points of the FactorVAE and beta-VAE scores are batches of 64 images, or pairs)."""
    points = n + max(1, n // 2)
    total = points if {"mig", "sap", "dci"} & set(names) else 0
    if "factor_vae" in names:
        total += points * 64 + n  # votes, and the points of the global variances
    if "beta_vae" in names:
        total += points * 2 * 64
    return total


def _evaluation_grid(source: Any, dataset: Any) -> Any:
    """The ground truth restricted to the factor grid of the images of ``source``.

    The dSprites runs train and test on the protocol's 3x5x15x15x15 sub-grid; scoring them on
    the full 3x6x40x32x32 grid would mostly show factor values never seen in training (and
    count 6 scales, 40 orientations, 32 positions the model never had to tell apart). When the
    source's factors form a product grid smaller than the dataset's, that grid is used.
    """
    factors = getattr(source, "factors", None)
    if factors is None:
        return dataset
    factors = np.asarray(factors.cpu().numpy() if isinstance(factors, torch.Tensor) else factors)
    values = [np.unique(factors[:, i]) for i in range(factors.shape[1])]
    sizes = [len(v) for v in values]
    is_product_grid = len(np.unique(factors, axis=0)) == math.prod(sizes)
    if not is_product_grid or sizes == list(dataset.factor_sizes):
        return dataset
    return _FactorSubgrid(dataset, values)


# Grids up to this many images are encoded whole when the metrics would render more than that.
MAX_ENCODED_GRID = 250_000


def _identity(codes: torch.Tensor) -> torch.Tensor:
    return codes


def _disentanglement(model: torch.nn.Module, experiment: ExperimentConfig, names: Sequence[str],
                     seed: int, device: torch.device) -> dict[str, Any]:
    from topovae.data.sources import build_source
    from topovae.metrics import disentanglement as dis

    cfg = experiment.data
    source = build_source(cfg.source, split=cfg.test_split, data_dir=cfg.data_dir,
                          download=cfg.download)
    dataset = getattr(source, "ground_truth", None)
    if dataset is None:
        raise ValueError(f"--metrics needs a ground-truth dataset; data.source {cfg.source!r} "
                         "has none (use a dSprites run)")
    dataset = _evaluation_grid(source, dataset)

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
    if grid_size <= MAX_ENCODED_GRID and _images_requested(names, n) > grid_size:
        dataset = _EncodedGrid(dataset, represent)
        represent = _identity
    if {"mig", "sap", "dci"} & set(names):
        codes_train, factors_train = dis.sample_codes_and_factors(represent, dataset, n, seed=seed)
        codes_test, factors_test = dis.sample_codes_and_factors(represent, dataset, max(1, n // 2),
                                                                seed=seed + 1)
        if "mig" in names:
            out["mig"] = dis.mig(codes_train, factors_train)
        if "sap" in names:
            out["sap"] = dis.sap(codes_train, factors_train, codes_test, factors_test)
        if "dci" in names:
            out["dci"] = dis.dci(codes_train, factors_train, codes_test, factors_test, seed=seed,
                                 estimator=experiment.evaluate.dci_estimator)
    if "factor_vae" in names:
        out["factor_vae"] = dis.factor_vae_score(represent, dataset, seed=seed, num_train=n,
                                                 num_eval=max(1, n // 2),
                                                 num_variance_estimate=n)
    if "beta_vae" in names:
        out["beta_vae"] = dis.beta_vae_score(represent, dataset, seed=seed, num_train=n,
                                             num_eval=max(1, n // 2))
    return out


def evaluate_model(model: torch.nn.Module, experiment: ExperimentConfig, *,
                   metrics: Sequence[str] = ()) -> dict[str, Any]:
    """All measurements of ``model`` on the test split of ``experiment`` (a JSON-able dict)."""
    from topovae.data.loaders import build_data
    from topovae.metrics.equivariance import (
        capsule_offset_correlation,
        equivariance_error,
        equivariance_error_control,
    )

    ev = experiment.evaluate
    started = time.perf_counter()
    torch.manual_seed(ev.seed)
    np.random.seed(ev.seed)
    model.eval()
    device = next(model.parameters()).device
    bundle = build_data(experiment.data, seed=ev.seed)
    x, factors = collect_test_sequences(bundle, ev.n_eval_sequences)
    x = x.to(device)
    info = bundle.info if isinstance(bundle.info, dict) else dict(vars(bundle.info))
    result: dict[str, Any] = {
        "model": getattr(model, "registry_name", type(model).__name__),
        "data": {"source": experiment.data.source, "test_split": experiment.data.test_split,
                 "sequence_builder": experiment.data.test_sequences or experiment.data.sequences,
                 "n_test_sequences": int(len(x)), "sequence_length": int(x.shape[1]),
                 **_jsonable(info)},
    }
    with torch.no_grad():
        if not hasattr(model, "log_likelihood"):
            # the disentanglement baselines define no importance-sampled likelihood
            ll = {"log_likelihood_nats_per_image": None, "n_is_samples": ev.n_is_samples,
                  "log_likelihood_unavailable": f"{type(model).__name__} has no "
                                                "log_likelihood method"}
        else:
            try:
                ll = _likelihood(model, x[: ev.n_ll_sequences or len(x)], ev.n_is_samples,
                                 ev.batch_size)
            except (ImportError, NotImplementedError, AttributeError) as err:
                ll = {"log_likelihood_nats_per_image": None, "n_is_samples": ev.n_is_samples,
                      "log_likelihood_unavailable": str(err)}
        result.update(ll)
        if ll.get("log_likelihood_nats_per_image") is not None:
            result.update(_likelihood_paper_protocol(
                model, x[: ev.n_ll_sequences or len(x)], ev.n_is_samples, ev.batch_size,
                experiment.train.seed))
        codes = _capsule_codes(model, x, ev.batch_size) if x.shape[1] > 1 else None
        if codes is not None:
            error = float(equivariance_error(codes))
            control = float(equivariance_error_control(codes, seed=ev.seed))
            result.update({"equivariance_error": error, "equivariance_error_control": control,
                           "equivariance_ratio": error / control if control > 0 else None})
            result["equivariance_ratio_untrained"] = _untrained_ratio(
                model, x, ev.batch_size, experiment.train.seed, ev.seed)
            result.update(_roll(model, x, ev.batch_size))
            if experiment.data.source.startswith("dsprites") or experiment.data.source == \
                    "sequences":  # own sequences: frames one step apart, as E_eq assumes
                corr = capsule_offset_correlation(codes)
                result["capsule_offset_correlation"] = _finite(float(corr["correlation"]))
                result["capsule_offset_accuracy"] = float(corr["accuracy"])
            per = _per_transformation(codes, factors, experiment, ev.seed)
            if experiment.data.source == "sequences":
                from topovae.evaluate_own import NO_FACTORS, per_factor

                per = per_factor(codes, factors, ev.seed)
                if not factors:
                    result["per_transformation_unavailable"] = NO_FACTORS
            if experiment.data.source.startswith("dsprites"):
                result.update(_offset_controls(model, x, codes, factors, per, ev.batch_size,
                                               ev.seed))
            if per:
                result["per_transformation"] = per
            result.update(_operator_prediction(model, x, codes, ev.batch_size))
        else:
            result.update({"equivariance_error": None, "equivariance_error_control": None,
                           "equivariance_ratio": None, "equivariance_ratio_untrained": None,
                           "roll_prediction_nll": None,
                           "roll_prediction_mse": None, "roll_prediction_nll_static": None,
                           "roll_prediction_nll_sequence_context": None,
                           "equivariance_unavailable": "the model has no capsule codes"})
        if getattr(getattr(model, "config", None), "topography", None) == "torus":
            result["topographic_map"] = _topographic_map(model, bundle, ev.n_map_images,
                                                         seed=ev.seed)
            if result["topographic_map"] is not None:
                # as for the equivariance ratio: the coupling alone (t of neighbouring units
                # divides by overlapping sums of u**2) makes an untrained map partly smooth
                from topovae.models.base import build_model

                torch.manual_seed(experiment.train.seed)
                fresh = build_model(model.registry_name, model.config).to(device).eval()
                untrained = _topographic_map(fresh, bundle, ev.n_map_images, seed=ev.seed)
                result["topographic_map"]["score_untrained"] = untrained["score"]
    if metrics and experiment.data.source in ("images", "sequences"):
        from topovae.evaluate_own import own_disentanglement

        result["disentanglement"] = own_disentanglement(  # the frames' factors, not "varied"
            model, x, {k: v for k, v in factors.items() if k != "varied"}, metrics, ev.seed)
    elif metrics:
        result["disentanglement"] = _disentanglement(model, experiment, metrics, ev.seed, device)
    result["seed"] = ev.seed
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["evaluated_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return _jsonable(result)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def evaluate_run(run_dir: str | Path, *, n_is_samples: int | None = None,
                 n_sequences: int | None = None, metrics: Sequence[str] | None = None,
                 data_dir: str | Path | None = None,
                 disentanglement_samples: int | None = None,
                 dci_estimator: str | None = None) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` and write ``run_dir/metrics.json`` (atomically).

    Arguments left as ``None`` take the run's ``evaluate`` settings (``disentanglement_samples``
    overrides ``evaluate.disentanglement_samples``). Unknown metric names or a non-positive
    sample size raise ``ValueError`` before anything is computed.
    """
    run = load_run(run_dir)
    experiment = run.config
    ev_overrides: dict[str, Any] = {}
    if n_is_samples is not None:
        ev_overrides["n_is_samples"] = n_is_samples
    if n_sequences is not None:
        ev_overrides["n_eval_sequences"] = n_sequences
    if disentanglement_samples is not None:
        ev_overrides["disentanglement_samples"] = disentanglement_samples
    if dci_estimator is not None:
        ev_overrides["dci_estimator"] = dci_estimator
    if metrics is not None:
        unknown = sorted(set(metrics) - set(DISENTANGLEMENT_METRICS))
        if unknown:
            raise ValueError(f"--metrics: unknown {unknown}; choose from "
                             f"{','.join(DISENTANGLEMENT_METRICS)}")
        ev_overrides["metrics"] = list(metrics)
    evaluate_cfg = experiment.evaluate.replace(**ev_overrides)
    data_cfg = experiment.data
    if data_dir is not None:
        data_cfg = data_cfg.replace(data_dir=str(data_dir))
    experiment = ExperimentConfig.from_dict({**experiment.to_dict(),
                                             "evaluate": evaluate_cfg.to_dict(),
                                             "data": data_cfg.to_dict()})
    assert run.model is not None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = run.model.to(device)
    result = evaluate_model(model, experiment, metrics=evaluate_cfg.metrics)
    atomic_write_json(Path(run_dir) / "metrics.json", result)
    return result
