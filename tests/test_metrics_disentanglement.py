"""Disentanglement metrics: known values, hand-worked cases and slow reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn import ensemble, svm
from sklearn.metrics import mutual_info_score

from topovae.data.ground_truth import GroundTruthData
from topovae.metrics.disentanglement import (
    beta_vae_score,
    dci,
    discrete_mutual_information,
    factor_vae_score,
    histogram_discretize,
    mig,
    sample_codes_and_factors,
    sap,
)


class IdentityData:
    """Ground-truth data whose observation is the factor vector itself, shaped (K, 1, 1)."""

    def __init__(self, factor_sizes: list[int]) -> None:
        self._sizes = list(factor_sizes)

    @property
    def factor_names(self) -> list[str]:
        return [f"factor_{i}" for i in range(len(self._sizes))]

    @property
    def factor_sizes(self) -> list[int]:
        return self._sizes

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (len(self._sizes), 1, 1)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(size, size=n) for size in self._sizes], axis=1)

    def observations_from_factors(self, factors: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(factors, dtype=torch.float32)[:, :, None, None]


SIZES = [4, 6, 3, 5, 7]


def identity(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1)


def constant(images: torch.Tensor) -> torch.Tensor:
    return torch.zeros(images.shape[0], 5)


def duplicated(images: torch.Tensor) -> torch.Tensor:
    codes = images.flatten(1)
    return torch.cat([codes, codes], dim=1)


def random_factors(n: int, seed: int, sizes: list[int] = SIZES) -> np.ndarray:
    return IdentityData(sizes).sample_factors(n, np.random.default_rng(seed))


# -- slow references (explicit loops, disentanglement_lib transcribed) --------------------------
def slow_mig(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> float:
    discrete = np.zeros_like(codes)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], n_bins)[1][:-1]
        discrete[:, i] = np.digitize(codes[:, i], edges)
    information = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            information[i, j] = mutual_info_score(factors[:, j], discrete[:, i])
    entropy = np.array([mutual_info_score(factors[:, j], factors[:, j])
                        for j in range(factors.shape[1])])
    gaps = []
    for j in range(factors.shape[1]):
        column = sorted(information[:, j], reverse=True)
        gaps.append((column[0] - column[1]) / entropy[j])
    return float(np.mean(gaps))


def slow_sap(codes_train, factors_train, codes_test, factors_test, continuous: bool) -> float:
    scores = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for i in range(codes_train.shape[1]):
        for j in range(factors_train.shape[1]):
            if continuous:
                cov = np.cov(codes_train[:, i], factors_train[:, j], ddof=1)
                scores[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0
            else:
                classifier = svm.LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(codes_train[:, i : i + 1], factors_train[:, j])
                predicted = classifier.predict(codes_test[:, i : i + 1])
                scores[i, j] = np.mean(predicted == factors_test[:, j])
    gaps = []
    for j in range(scores.shape[1]):
        column = sorted(scores[:, j], reverse=True)
        gaps.append(column[0] - column[1])
    return float(np.mean(gaps))


def slow_dci(codes_train, factors_train, codes_test, factors_test) -> dict[str, float]:
    n_codes, n_factors = codes_train.shape[1], factors_train.shape[1]
    importance = np.zeros((n_codes, n_factors))
    train_acc, test_acc = [], []
    for j in range(n_factors):
        model = ensemble.GradientBoostingClassifier(random_state=0)
        model.fit(codes_train, factors_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(codes_train) == factors_train[:, j]))
        test_acc.append(np.mean(model.predict(codes_test) == factors_test[:, j]))
    per_code = [1 - scipy.stats.entropy(importance[i] + 1e-11, base=n_factors)
                for i in range(n_codes)]
    per_factor = [1 - scipy.stats.entropy(importance[:, j] + 1e-11, base=n_codes)
                  for j in range(n_factors)]
    code_weight = importance.sum(axis=1) / importance.sum()
    factor_weight = importance.sum(axis=0) / importance.sum()
    return {"disentanglement": float(np.dot(per_code, code_weight)),
            "completeness": float(np.dot(per_factor, factor_weight)),
            "informativeness_train": float(np.mean(train_acc)),
            "informativeness_test": float(np.mean(test_acc))}


def entangled_codes(factors: np.ndarray, seed: int, width: int = 6) -> np.ndarray:
    """Noisy random linear mixture of the factors: a middling representation."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(factors.shape[1], width)) * (rng.random((factors.shape[1], width))
                                                            < 0.5)
    return factors @ mixing + 0.5 * rng.normal(size=(factors.shape[0], width))


# -- MIG ----------------------------------------------------------------------------------------
def test_histogram_discretize_matches_numpy_per_column():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(size=(500, 3)), np.full((500, 1), 2.5),
                            rng.integers(0, 4, size=(500, 1))], axis=1)
    for n_bins in (2, 7, 20):
        expected = np.stack([np.digitize(c, np.histogram(c, n_bins)[1][:-1]) for c in codes.T], 1)
        np.testing.assert_array_equal(histogram_discretize(codes, n_bins), expected)


def test_mutual_information_matches_sklearn():
    rng = np.random.default_rng(1)
    first = rng.integers(0, 5, size=(300, 3))
    second = np.stack([first[:, 0] + rng.integers(0, 2, 300), rng.integers(0, 3, 300) * 10], 1)
    expected = np.array([[mutual_info_score(second[:, j], first[:, i]) for j in range(2)]
                         for i in range(3)])
    np.testing.assert_allclose(discrete_mutual_information(first, second), expected, atol=1e-12)


def test_mig_hand_computed():
    # f = [0,0,1,1], g = [0,1,0,1]; with 2 bins code a -> [1,1,1,2], code b -> [1,2,1,2].
    # Code b equals g (so I(b; g) = ln 2, I(b; f) = 0); code a is partly informative of both:
    #   I(a; f) = H(a) - H(a|f) = (-(3/4) ln(3/4) - (1/4) ln(1/4)) - (1/2) ln 2 = 0.215762,
    #   and the joint table of (a, g) has the same numbers, so I(a; g) = 0.215762.
    # MIG_f = (0.215762 - 0) / ln 2 = 0.311278; MIG_g = (ln 2 - 0.215762) / ln 2 = 0.688722;
    # MIG = (0.311278 + 0.688722) / 2 = 0.5.
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    codes = np.array([[0.1, -1.0], [0.2, 5.0], [0.3, -0.5], [0.9, 4.0]])
    result = mig(codes, factors, n_bins=2)
    information_a = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - 0.5 * math.log(2)
    assert information_a == pytest.approx(0.215762, abs=1e-6)
    np.testing.assert_allclose(result["mutual_information"],
                               [[information_a, information_a], [0.0, math.log(2)]], atol=1e-12)
    np.testing.assert_allclose(result["mig_per_factor"], [0.311278, 0.688722], atol=1e-6)
    assert result["mig"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mig_matches_slow_reference(seed):
    factors = random_factors(2000, seed)
    codes = entangled_codes(factors, seed)
    assert mig(codes, factors)["mig"] == pytest.approx(slow_mig(codes, factors), abs=1e-10)
    assert mig(codes, factors, n_bins=7)["mig"] == pytest.approx(slow_mig(codes, factors, 7),
                                                                 abs=1e-10)


def test_mig_identity_constant_duplicated():
    factors = random_factors(5000, 3)
    codes = factors.astype(float)
    assert mig(codes, factors)["mig"] > 0.95
    assert mig(np.zeros((5000, 5)), factors)["mig"] == pytest.approx(0.0, abs=1e-12)
    assert mig(np.concatenate([codes, codes], 1), factors)["mig"] == pytest.approx(0.0, abs=1e-12)
    assert mig(torch.as_tensor(codes), torch.as_tensor(factors))["mig"] > 0.95


def test_mig_bad_input():
    with pytest.raises(ValueError, match="codes"):
        mig(np.zeros((10, 1)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="same number of points"):
        mig(np.zeros((10, 3)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="factors"):
        mig(np.zeros((10, 3)), np.zeros(10))


# -- SAP ----------------------------------------------------------------------------------------
def test_sap_continuous_hand_computed():
    # f = [0,1,2,3], g = [0,0,1,1]; code a = f, code b = [1,0,0,1].
    # r^2(a, f) = 1; r^2(b, f) = 0 (centred b . centred f = -.75 + .25 - .25 + .75 = 0);
    # r^2(a, g) = (2)^2 / (5 * 1) = 0.8 (centred a . centred g = .75+.25+.25+.75 = 2,
    # sum of squares 5 and 1); r^2(b, g) = 0. Gaps: f 1 - 0 = 1, g 0.8 - 0 = 0.8 -> SAP 0.9.
    factors = np.array([[0, 0], [1, 0], [2, 1], [3, 1]])
    codes = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    assert sap(codes, factors, codes, factors, continuous_factors=True)["sap"] == pytest.approx(0.9)


def test_sap_discrete_hand_computed():
    # Dimension 0 separates the two balanced classes by its sign (accuracy 1); dimension 1 is
    # constant, so its classifier predicts one class for everything (accuracy 1/2 on a balanced
    # test set). One factor: SAP = 1 - 1/2 = 0.5.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    codes = np.stack([np.where(labels == 1, 5.0, -5.0) + rng.normal(0, 0.5, 400),
                      np.zeros(400)], axis=1)
    factors = labels[:, None]
    assert sap(codes[::2], factors[::2], codes[1::2], factors[1::2])["sap"] == pytest.approx(0.5)


@pytest.mark.parametrize("continuous", [True, False])
def test_sap_matches_slow_reference(continuous):
    factors = random_factors(600, 4, sizes=[3, 4, 5])
    codes = entangled_codes(factors, 4, width=4)
    args = (codes[:400], factors[:400], codes[400:], factors[400:])
    assert sap(*args, continuous_factors=continuous)["sap"] == pytest.approx(
        slow_sap(*args, continuous), abs=1e-12)


def test_sap_identity_and_constant():
    factors = random_factors(1500, 5, sizes=[2, 3, 4])
    codes = factors.astype(float) * 3.0
    train, test = slice(0, 1000), slice(1000, None)
    assert sap(codes[train], factors[train], codes[test], factors[test],
               continuous_factors=True)["sap"] > 0.95
    # A linear one-dimensional classifier recovers a few ordered classes well, not perfectly.
    assert sap(codes[train], factors[train], codes[test], factors[test])["sap"] > 0.5
    zeros = np.zeros((1500, 3))
    assert sap(zeros[train], factors[train], zeros[test], factors[test])["sap"] == \
        pytest.approx(0.0)


# -- DCI ----------------------------------------------------------------------------------------
def test_dci_matches_slow_reference():
    factors = random_factors(400, 6, sizes=[2, 3, 4])
    codes = entangled_codes(factors, 6, width=4)
    args = (codes[:300], factors[:300], codes[300:], factors[300:])
    fast = dci(*args, estimator="gradient_boosting")
    slow = slow_dci(*args)
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, abs=1e-10), key


@pytest.mark.parametrize("estimator", ["gradient_boosting", "random_forest"])
def test_dci_identity_and_constant(estimator):
    factors = random_factors(600, 7, sizes=[2, 3, 4])
    codes = factors.astype(float)
    train, test = slice(0, 400), slice(400, None)
    good = dci(codes[train], factors[train], codes[test], factors[test], estimator=estimator)
    assert good["disentanglement"] > 0.9
    assert good["completeness"] > 0.9
    assert good["informativeness_test"] > 0.99
    zeros = np.zeros((600, 3))
    bad = dci(zeros[train], factors[train], zeros[test], factors[test], estimator=estimator)
    assert bad["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert bad["completeness"] == pytest.approx(0.0, abs=1e-6)


def test_dci_bad_estimator():
    factors = random_factors(50, 0, sizes=[2, 3])
    with pytest.raises(ValueError, match="estimator"):
        dci(factors, factors, factors, factors, estimator="lasso")
    with pytest.raises(ValueError, match="n_jobs"):
        dci(factors, factors, factors, factors, n_jobs=0)


def ranking_representations(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Factors (1200, 3) and four codes of them whose DCI order is known: ``identity`` (each
    factor in its own dimension, slightly noisy), ``duplicated`` (identity twice: D as high, C
    lower), ``rotated`` (a random rotation of the standardised identity: informative but
    entangled) and ``noise`` (independent of the factors)."""
    rng = np.random.default_rng(seed)
    factors = random_factors(1200, seed, sizes=[3, 4, 5])
    identity_codes = factors + 0.05 * rng.normal(size=factors.shape)
    duplicated_codes = np.concatenate(
        [identity_codes, factors + 0.05 * rng.normal(size=factors.shape)], axis=1)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    standardised = (identity_codes - identity_codes.mean(0)) / identity_codes.std(0)
    codes = {"identity": identity_codes, "duplicated": duplicated_codes,
             "rotated": standardised @ rotation, "noise": rng.normal(size=factors.shape)}
    return factors, codes


def dci_table(estimator) -> np.ndarray:
    """(representation, [D, C, I_test]) for the representations of ranking_representations."""
    factors, codes = ranking_representations()
    train, test = slice(0, 800), slice(800, None)
    rows = []
    for code in codes.values():
        result = dci(code[train], factors[train], code[test], factors[test], estimator=estimator)
        rows.append([result["disentanglement"], result["completeness"],
                     result["informativeness_test"]])
    return np.array(rows)


def same_ranking(reference: np.ndarray, other: np.ndarray, gap: float = 0.1,
                 tie: float = 0.02) -> bool:
    """Every pair of representations that ``reference`` separates by more than ``gap`` is
    ordered the same way by ``other``, and every pair it scores within ``tie`` of each other
    ``other`` also scores within ``gap``; column by column (D, C, I)."""
    for column in range(reference.shape[1]):
        for a in range(reference.shape[0]):
            for b in range(reference.shape[0]):
                ref_diff = reference[a, column] - reference[b, column]
                other_diff = other[a, column] - other[b, column]
                if ref_diff > gap and not other_diff > 0:
                    return False
                if abs(ref_diff) < tie and not abs(other_diff) < gap:
                    return False
    return True


def test_dci_estimators_rank_representations_alike():
    boosting = dci_table("gradient_boosting")
    # The known order under disentanglement_lib's estimator: identity and duplicated tie on D and
    # lead, duplicated loses completeness, rotation keeps information but loses D and C, noise
    # has nothing.
    identity, duplicated, rotated, noise = boosting
    assert identity[0] > 0.95 and duplicated[0] > 0.95 and identity[1] > 0.95
    assert 0.4 < duplicated[1] < 0.8
    assert rotated[0] < 0.5 and rotated[1] < 0.5 and rotated[2] > 0.9
    assert noise[0] < 0.1 and noise[1] < 0.1 and noise[2] < 0.5
    forest = dci_table("random_forest")
    assert same_ranking(boosting, forest)
    assert dci_table("random_forest") == pytest.approx(forest)  # deterministic given the seed
    # The reason the default forest searches every dimension at each split: with scikit-learn's
    # classifier default (sqrt(d) dimensions) importance leaks onto uninformative dimensions and
    # the identity code ranks below the duplicated one on D.
    sqrt_forest = dci_table(lambda: ensemble.RandomForestClassifier(
        n_estimators=20, max_depth=8, random_state=0))
    assert not same_ranking(boosting, sqrt_forest)
    assert sqrt_forest[0, 0] < sqrt_forest[1, 0]


def test_dci_default_estimator_and_n_jobs():
    factors = random_factors(500, 8, sizes=[2, 3, 4])
    codes = entangled_codes(factors, 8, width=5)
    args = (codes[:350], factors[:350], codes[350:], factors[350:])
    default = dci(*args)  # disentanglement_lib's protocol, factors fitted in parallel
    assert default["estimator"] == "gradient_boosting"
    explicit = dci(*args, estimator="gradient_boosting", n_jobs=1)
    parallel = dci(*args, n_jobs=3)
    for key in ("disentanglement", "completeness", "informativeness_train",
                "informativeness_test"):
        assert default[key] == explicit[key] == parallel[key], key
    np.testing.assert_array_equal(default["importance_matrix"], parallel["importance_matrix"])
    # the default is the reference computation of disentanglement_lib (slow_dci)
    for key, value in slow_dci(*args).items():
        assert default[key] == pytest.approx(value, abs=1e-10), key
    # the faster estimator is a named option, recorded as such, and gives other values
    forest = dci(*args, estimator="random_forest")
    assert forest["estimator"] == "random_forest"
    assert forest["disentanglement"] != pytest.approx(default["disentanglement"], abs=1e-6)
    with pytest.raises(ValueError, match="n_jobs"):
        dci(*args, n_jobs=0)
    custom = dci(*args, estimator=lambda: ensemble.RandomForestClassifier(n_estimators=5))
    assert custom["estimator"] == "custom"


# -- sampling and the factor-held-fixed scores ---------------------------------------------------
def test_identity_data_satisfies_protocol():
    assert isinstance(IdentityData(SIZES), GroundTruthData)


def test_sample_codes_and_factors():
    data = IdentityData(SIZES)
    codes, factors = sample_codes_and_factors(identity, data, 150, seed=3, batch_size=64)
    assert codes.shape == (150, 5) and factors.shape == (150, 5)
    np.testing.assert_array_equal(codes, factors)
    again, _ = sample_codes_and_factors(identity, data, 150, seed=3, batch_size=7)
    np.testing.assert_array_equal(codes, again)
    with pytest.raises(ValueError, match="dataset"):
        sample_codes_and_factors(identity, object(), 10)


SMALL = dict(batch_size=32, num_train=300, num_eval=200)


def test_factor_vae_score_identity_constant_and_pruned():
    data = IdentityData(SIZES)
    good = factor_vae_score(identity, data, num_variance_estimate=500, **SMALL)
    assert good["train_accuracy"] == 1.0 and good["eval_accuracy"] == 1.0
    assert good["num_active_dims"] == 5
    bad = factor_vae_score(constant, data, num_variance_estimate=500, **SMALL)
    assert bad == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    # A pruned (constant) dimension in front must not shift the votes to the wrong dimension.
    def with_dead_dimension(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros(images.shape[0], 1), images.flatten(1)], dim=1)

    pruned = factor_vae_score(with_dead_dimension, data, num_variance_estimate=500, **SMALL)
    assert pruned["eval_accuracy"] == 1.0 and pruned["num_active_dims"] == 5


def test_factor_vae_score_low_for_duplicated_noise():
    data = IdentityData(SIZES)
    generator = torch.Generator().manual_seed(0)

    def noise(images: torch.Tensor) -> torch.Tensor:
        return torch.randn(images.shape[0], 5, generator=generator)

    result = factor_vae_score(noise, data, num_variance_estimate=500, **SMALL)
    assert result["eval_accuracy"] < 0.45  # chance is 1/5; the majority vote overfits a little


def first_three(images: torch.Tensor) -> torch.Tensor:
    """Represents factors 0-2 only: batches with factor 3 or 4 fixed vote at random."""
    return images.flatten(1)[:, :3]


def test_factor_vae_partial_representation_and_chunking():
    data = IdentityData(SIZES)
    first = factor_vae_score(first_three, data, seed=4, num_variance_estimate=100,
                             chunk_images=64, **SMALL)
    second = factor_vae_score(first_three, data, seed=4, num_variance_estimate=100,
                              chunk_images=4096, **SMALL)
    assert first == second
    # 3 of 5 factors are always classified right; the 2 others at best by majority: ~3/5.
    assert 0.5 < first["eval_accuracy"] < 0.75


def test_beta_vae_chunking_does_not_change_result():
    data = IdentityData(SIZES)
    assert beta_vae_score(first_three, data, seed=2, chunk_images=64, **SMALL) == beta_vae_score(
        first_three, data, seed=2, chunk_images=4096, **SMALL)


def test_beta_vae_score_identity_and_constant():
    data = IdentityData(SIZES)
    good = beta_vae_score(identity, data, **SMALL)
    assert good["train_accuracy"] > 0.95 and good["eval_accuracy"] > 0.95
    bad = beta_vae_score(constant, data, **SMALL)
    assert bad["eval_accuracy"] < 0.35  # chance: 1 / 5 factors


def test_scores_are_reproducible_from_seed():
    data = IdentityData(SIZES)
    assert beta_vae_score(duplicated, data, seed=9, **SMALL) == beta_vae_score(
        duplicated, data, seed=9, **SMALL)


def test_fixed_factor_scores_bad_arguments():
    data = IdentityData(SIZES)
    with pytest.raises(ValueError, match="batch_size"):
        factor_vae_score(identity, data, batch_size=1)
    with pytest.raises(ValueError, match="num_train"):
        beta_vae_score(identity, data, num_train=0)
    with pytest.raises(ValueError, match="dataset"):
        beta_vae_score(identity, [1, 2, 3])
