"""The disentanglement baselines end to end from the command line.

Each baseline preset (beta-VAE, beta-TCVAE, FactorVAE on the rendered dSprites grid with the
10-latent conv encoder/decoder) trains for a few dozen steps through ``topovae train`` and its
logged loss falls; FactorVAE's discriminator is trained by its own optimiser; ``topovae evaluate
--metrics`` writes the five disentanglement scores for a baseline and for a TVAE run (whose
code is its flattened capsule code ``t``).

Runs are tiny (batch 16, 40 steps, 20 disentanglement points) so the file stays fast on a
shared 2-core machine; torch runs single-threaded here because these small convolutions are
many times slower with threads competing for busy cores.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from topovae.cli.main import main

BASELINES = {"beta-vae-dsprites-cpu": "beta_vae", "beta-tcvae-dsprites-cpu": "beta_tcvae",
             "factor-vae-dsprites-cpu": "factor_vae"}
STEPS = 40
ALL_METRICS = "mig,sap,dci,factor_vae,beta_vae"
TINY_EVAL = ["--n-sequences", "4", "--n-is-samples", "2", "--disentanglement-samples", "20"]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def runs() -> dict[str, Path]:
    """Cache of trained runs: each test trains a preset only if no earlier test did."""
    return {}


def train(runs: dict[str, Path], root: Path, preset: str, *extra: str) -> Path:
    if preset not in runs:
        out = root / preset
        code = main(["train", "--preset", preset, "--out", str(out), "--no-progress",
                     "--seed", "0", "train.log_every_n_steps=1",
                     "train.checkpoint_every_n_steps=1000", *extra])
        assert code == 0
        runs[preset] = out
    return runs[preset]


def train_baseline(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                   preset: str) -> Path:
    return train(runs, tmp_path_factory.mktemp("runs"), preset, "--max-steps", str(STEPS),
                 "data.batch_size=16")


def logged_rows(run: Path) -> list[dict[str, str]]:
    files = sorted(run.glob("logs/csv/**/metrics.csv"))
    assert files, f"no CSV log under {run / 'logs'}"
    with files[0].open() as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(row[name]) for row in rows if row.get(name)]


@pytest.mark.parametrize("preset", sorted(BASELINES))
def test_baseline_trains_from_the_cli_and_its_loss_falls(
        preset: str, runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    run = train_baseline(runs, tmp_path_factory, preset)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["name"] == BASELINES[preset]
    assert config["model"]["config"]["architecture"] == "conv"
    assert config["model"]["config"]["latent_dim"] == 10
    assert (run / "model.safetensors").is_file()

    losses = column(logged_rows(run), "loss")
    assert len(losses) == STEPS  # one logged value per training batch
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # observed: about 3250 -> 820 (beta-VAE, FactorVAE) and 3860 -> 1450 (beta-TCVAE)
    assert last < 0.8 * first, (preset, first, last)


def test_factor_vae_discriminator_has_its_own_optimiser(
        runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    from topovae.models.baselines import FactorVAE, FactorVAEConfig

    run = train_baseline(runs, tmp_path_factory, "factor-vae-dsprites-cpu")
    rows = logged_rows(run)
    disc = column(rows, "train/discriminator_loss")
    assert len(disc) == STEPS and all(math.isfinite(v) and v > 0 for v in disc)
    assert len(column(rows, "train/tc_estimate")) == STEPS

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    main_state, disc_state = checkpoint["optimizer_states"]
    model = FactorVAE(FactorVAEConfig())
    n_disc = len(model.auxiliary_parameters())
    assert len(disc_state["param_groups"][0]["params"]) == n_disc
    assert len(main_state["param_groups"][0]["params"]) == len(model.main_parameters())
    for state in (main_state, disc_state):  # both optimisers stepped once per batch
        assert len(state["state"]) == len(state["param_groups"][0]["params"])
        assert all(int(s["step"]) == STEPS for s in state["state"].values())


def disentanglement_of(run: Path) -> dict:
    code = main(["evaluate", str(run), "--metrics", ALL_METRICS, *TINY_EVAL])
    assert code == 0
    result = json.loads((run / "metrics.json").read_text())
    scores = result["disentanglement"]
    assert scores["disentanglement_samples"] == 20
    # factors come from the grid the runs train on: the protocol's 3x5x15x15x15 sub-grid
    assert scores["factor_sizes"] == [3, 5, 15, 15, 15]
    assert set(ALL_METRICS.split(",")) <= set(scores)
    # every score records its estimator; DCI's default is disentanglement_lib's
    assert set(scores["estimators"]) == set(ALL_METRICS.split(","))
    assert scores["dci"]["estimator"] == "gradient_boosting"
    assert scores["estimators"]["dci"].startswith("GradientBoostingClassifier")
    values = [scores["mig"]["mig"], scores["sap"], scores["dci"]["disentanglement"],
              scores["dci"]["completeness"], scores["factor_vae"]["eval_accuracy"],
              scores["beta_vae"]["eval_accuracy"]]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values), values
    return result


def test_evaluate_metrics_on_a_baseline(runs: dict[str, Path],
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    run = train_baseline(runs, tmp_path_factory, "beta-tcvae-dsprites-cpu")
    result = disentanglement_of(run)
    assert result["model"] == "beta_tcvae"
    assert result["log_likelihood_nats_per_image"] is None  # the baselines define none
    # the scored code is the 10-dimensional posterior mean
    assert len(result["disentanglement"]["dci"]["importance_matrix"]) == 10


def test_evaluate_metrics_on_a_tvae_run(tmp_path: Path) -> None:
    run = train({}, tmp_path, "tvae-Lshort-dsprites-cpu", "--max-steps", "5",
                "data.batch_size=2", "train.val_batches=0")
    result = disentanglement_of(run)
    assert result["model"] == "tvae"
    assert math.isfinite(result["log_likelihood_nats_per_image"])
    assert result["equivariance_ratio"] is not None
    # the scored code is the flattened capsule code t: 15 capsules x 15 units
    assert len(result["disentanglement"]["dci"]["importance_matrix"]) == 15 * 15
    assert len(result["disentanglement"]["mig"]["mutual_information"]) == 15 * 15


def test_evaluate_rejects_a_non_positive_sample_size(
        runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
        capsys: pytest.CaptureFixture) -> None:
    run = train_baseline(runs, tmp_path_factory, "beta-vae-dsprites-cpu")
    (run / "metrics.json").unlink(missing_ok=True)
    code = main(["evaluate", str(run), "--metrics", "mig", "--disentanglement-samples", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "disentanglement_samples" in err
    assert not (run / "metrics.json").exists()


def test_evaluation_grid_is_the_sub_grid_of_the_test_split() -> None:
    import numpy as np

    from topovae.data.dsprites import SUBGRID
    from topovae.data.ground_truth import evaluation_grid as _evaluation_grid
    from topovae.data.sources import build_source

    source = build_source("dsprites_rendered", split="test")
    grid = _evaluation_grid(source, source.ground_truth)
    assert grid.factor_sizes == [3, 5, 15, 15, 15]
    factors = grid.sample_factors(6, np.random.default_rng(0))
    assert all(0 <= factors[:, i].max() < size for i, size in enumerate(grid.factor_sizes))
    full = np.stack([SUBGRID[name][factors[:, i]] for i, name in enumerate(grid.factor_names)],
                    axis=1)  # the same images, indexed on the full grid
    assert torch.equal(grid.observations_from_factors(factors),
                       source.ground_truth.observations_from_factors(full))
    # a source covering the full grid keeps the dataset as it is
    full_source = build_source("dsprites_rendered", split="full")
    assert _evaluation_grid(full_source, full_source.ground_truth) is full_source.ground_truth



def test_encoded_grid_gives_the_scores_of_rendering_every_image() -> None:
    import numpy as np

    from topovae.data.dsprites import RenderedDSprites
    from topovae.data.ground_truth import EncodedGrid as _EncodedGrid
    from topovae.data.ground_truth import FactorSubgrid as _FactorSubgrid
    from topovae.measure.disentanglement import identity as _identity
    from topovae.metrics import disentanglement as dis

    grid = _FactorSubgrid(RenderedDSprites(), [np.array([0, 2]), np.array([1, 4]),
                                              np.array([0, 9]), np.array([3, 7, 20]),
                                              np.array([5, 30])])  # 48 images
    calls = []

    def represent(images: torch.Tensor) -> torch.Tensor:
        # a deterministic per-image code: the mass in each quadrant and the centre of mass
        calls.append(len(images))
        x = images[:, 0]
        quads = x.unfold(1, 32, 32).unfold(2, 32, 32).sum(dim=(-1, -2)).reshape(len(x), 4)
        grid_xy = torch.arange(64, dtype=torch.float32)
        mass = x.sum(dim=(1, 2)).clamp_min(1)
        cx = (x.sum(dim=1) * grid_xy).sum(dim=1) / mass
        cy = (x.sum(dim=2) * grid_xy).sum(dim=1) / mass
        return torch.cat([quads, cx[:, None], cy[:, None]], dim=1)

    encoded = _EncodedGrid(grid, represent)
    assert sum(calls) == 48 and encoded.codes.shape == (48, 6)
    factors = grid.sample_factors(50, np.random.default_rng(0))
    assert torch.equal(encoded.observations_from_factors(factors),
                       represent(grid.observations_from_factors(factors)))
    small = dict(batch_size=8, num_train=40, num_eval=20)
    assert dis.factor_vae_score(_identity, encoded, seed=3, num_variance_estimate=40,
                                **small) == dis.factor_vae_score(
        represent, grid, seed=3, num_variance_estimate=40, **small)
    assert dis.beta_vae_score(_identity, encoded, seed=3, **small) == dis.beta_vae_score(
        represent, grid, seed=3, **small)
