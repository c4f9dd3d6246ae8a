"""The shift-operator autoencoder (Bouchacourt, Ibrahim & Deny 2021) and its measurements.

The operators invert (shift by k then -k, rotation likewise); an autoencoder whose encoder is
exactly shift-equivariant by construction gets E_eq = 0 and a perfect roll prediction through the
same instruments as the TVAE; the weak variant's inferred shift is the true one on exact rolls;
the supervised and weak presets train from the CLI with a falling loss and evaluate with the
operator prediction, which for the shift operator is the roll prediction.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from topovae.cli.main import main
from topovae.metrics.equivariance import equivariance_error, equivariance_ratio
from topovae.metrics.roll import roll_prediction
from topovae.models.base import build_model, load_model
from topovae.models.shift_operator import (
    LatentOperatorModel,
    ShiftOperatorAutoencoder,
    ShiftOperatorConfig,
    infer_shift,
    operator_prediction,
    roll_codes,
    rotate_codes,
    shift_scores,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# -- the operators ------------------------------------------------------------------------------
def test_roll_by_k_then_minus_k_is_the_identity_and_matches_torch_roll() -> None:
    torch.manual_seed(0)
    t = torch.randn(5, 7, 3, 9)
    k = torch.randint(-20, 20, (5, 7))
    assert torch.equal(roll_codes(roll_codes(t, k), -k), t)
    for b in range(5):
        for s in range(7):
            assert torch.equal(roll_codes(t, k)[b, s], torch.roll(t[b, s], int(k[b, s]), -1))
    assert torch.equal(roll_codes(t, 9), t)  # a full turn of a 9-unit capsule
    assert not torch.equal(roll_codes(t, 1), t)


def test_rotation_by_k_then_minus_k_is_the_identity_and_acts_on_two_units() -> None:
    torch.manual_seed(0)
    t = torch.randn(4, 3, 6, dtype=torch.float64)
    k = torch.tensor([0, 1, 5, 18])
    back = rotate_codes(rotate_codes(t, k, 18), -k, 18)
    assert torch.allclose(back, t, atol=1e-12)
    moved = rotate_codes(t, 1, 18).flatten(1)
    assert torch.equal(moved[:, 2:], t.flatten(1)[:, 2:])  # the rest of the latent is untouched
    assert torch.allclose(moved[:, :2].norm(dim=1), t.flatten(1)[:, :2].norm(dim=1))
    assert torch.allclose(rotate_codes(t, 18, 18), t, atol=1e-12)  # period 18


def test_operator_rejects_fractional_steps() -> None:
    with pytest.raises(ValueError, match="integer steps"):
        roll_codes(torch.zeros(2, 3, 4), torch.tensor([0.5, 1.0]))


# -- the weak variant's inference -----------------------------------------------------------------
def test_weak_inference_recovers_the_true_shift_of_exact_rolls() -> None:
    torch.manual_seed(0)
    t1 = torch.randn(64, 18, 18)
    k = torch.randint(0, 18, (64,))
    t2 = roll_codes(t1, k)
    assert torch.equal(infer_shift(t1, t2), k)
    scores = shift_scores(t1, t2)
    assert torch.allclose(scores[torch.arange(64), k], torch.ones(64), atol=1e-4)
    # noise of a tenth of the codes' scale does not move the peak
    noisy = t2 + 0.1 * torch.randn_like(t2)
    assert torch.equal(infer_shift(t1, noisy), k)
    # unrelated codes: the peak is no more often right than chance allows
    other = torch.randn(64, 18, 18)
    assert (infer_shift(t1, other) == k).float().mean() < 0.3


def test_weak_loss_gradient_reaches_the_shift_inference() -> None:
    torch.manual_seed(0)
    t1 = torch.randn(2, 3, 8, requires_grad=True)
    t2 = torch.randn(2, 3, 8, requires_grad=True)
    weights = torch.softmax(shift_scores(t1, t2) / 0.1, dim=-1)
    (weights[:, 3]).sum().backward()
    assert t1.grad is not None and float(t1.grad.abs().sum()) > 0
    assert t2.grad is not None and float(t2.grad.abs().sum()) > 0


# -- an encoder shift-equivariant by construction ----------------------------------------------
class _IdentityCodes(ShiftOperatorAutoencoder):
    """Images are ``(1, n_caps, cap_dim)`` binary grids; the code is the image itself and the
    decoder returns sharp logits of the code: a shift of the image's columns *is* a roll."""

    def __init__(self, config: ShiftOperatorConfig) -> None:
        super().__init__(config)
        self.encoder = nn.Flatten()
        self.decoder = nn.Sequential(nn.Unflatten(1, tuple(config.input_shape)))

    def _decode(self, t: torch.Tensor) -> torch.Tensor:
        lead = t.shape[:-2]
        return (40.0 * (t - 0.5)).reshape(*lead, *self.config.input_shape)


def _rolling_sequences(n: int, n_caps: int, cap_dim: int) -> torch.Tensor:
    first = (torch.rand(n, 1, n_caps, cap_dim) > 0.5).float()
    frames = [torch.roll(first, s, dims=-1) for s in range(cap_dim)]
    return torch.stack(frames, dim=1)  # (n, S, 1, n_caps, cap_dim)


def test_an_exactly_equivariant_encoder_scores_zero_error_and_perfect_roll_prediction() -> None:
    torch.manual_seed(0)
    config = ShiftOperatorConfig(input_shape=(1, 4, 6), n_caps=4, cap_dim=6)
    model = _IdentityCodes(config)
    assert isinstance(model, LatentOperatorModel)
    x = _rolling_sequences(16, 4, 6)
    codes = model.latent_codes(x)
    assert float(equivariance_error(codes)) < 1e-5
    assert float(equivariance_ratio(codes, seed=0)) < 1e-6
    roll = roll_prediction(model, x)
    assert roll.nll < 1e-4 and roll.nll_static > 10.0
    own = operator_prediction(model, x)
    assert own["operator_prediction_nll"] == pytest.approx(roll.nll, abs=1e-6)
    assert own["reconstruction_nll"] < 1e-4
    from topovae.measure.roll import operator_prediction_means as _operator_prediction

    measured = _operator_prediction(model, x, codes, batch_size=5)
    assert measured["step_roll"] == 1 and measured["step_roll_fraction"] == 1.0
    assert measured["operator_prediction_nll"] == pytest.approx(roll.nll, abs=1e-6)
    # the disentangled operator on the same codes predicts the later frames badly
    rotating = _IdentityCodes(config.replace(operator="rotation"))
    assert operator_prediction(rotating, x)["operator_prediction_nll"] > 10.0


# -- the model ------------------------------------------------------------------------------------
def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="needs operator 'shift'"):
        ShiftOperatorConfig(operator="rotation", supervision="weak")
    with pytest.raises(ValueError, match="temperature"):
        ShiftOperatorConfig(temperature=0.0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        ShiftOperatorAutoencoder(ShiftOperatorConfig())(torch.rand(2, 1, 3, 28, 28))


@pytest.mark.parametrize("overrides", [{}, {"supervision": "weak"}, {"operator": "rotation"},
                                       {"likelihood": "gaussian"}])
def test_forward_backward_and_save_load(overrides: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("shift_operator", {"n_caps": 4, "cap_dim": 5, **overrides})
    x = torch.rand(3, 5, 3, 28, 28)
    out = model(x)
    assert out.codes.shape == (3, 5, 4, 5) and out.logits.shape == x.shape
    assert torch.allclose(out.loss, out.terms["recon_nll"] + out.terms["transformed_nll"])
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.save(tmp_path)
    again = load_model(tmp_path)
    assert torch.equal(again.latent_codes(x), model.latent_codes(x))
    assert model.representation(x[:, 0]).shape == (3, 20)


def test_supervised_training_on_a_tiny_problem_learns_the_roll() -> None:
    """On binary grids whose frames are column shifts, a few hundred steps of the supervised
    loss make rolling the code predict the later frames far better than no change."""
    torch.manual_seed(0)
    config = ShiftOperatorConfig(input_shape=(1, 4, 6), n_caps=4, cap_dim=6)
    model = ShiftOperatorAutoencoder(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_test = _rolling_sequences(32, 4, 6)
    before = roll_prediction(model, x_test)
    for _ in range(300):
        out = model(_rolling_sequences(16, 4, 6))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    after = roll_prediction(model, x_test)
    assert after.nll < 0.5 * before.nll
    assert after.nll < 0.5 * after.nll_static


# -- from the command line ------------------------------------------------------------------------
def _losses(run: Path) -> list[float]:
    files = sorted(run.glob("logs/csv/**/metrics.csv"))
    assert files, f"no CSV log under {run / 'logs'}"
    with files[0].open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row.get("loss")]


@pytest.mark.parametrize("preset", ["shift-operator-mnist-cpu", "shift-operator-weak-mnist-cpu"])
def test_preset_trains_from_the_cli_loss_falls_and_evaluates(preset: str, tmp_path: Path,
                                                             mnist_dir: Path) -> None:
    out = tmp_path / "run"
    code = main(["train", "--preset", preset, "--out", str(out), "--no-progress", "--seed", "0",
                 "--max-steps", "40", "--data-dir", str(mnist_dir), "data.source=mnist",
                 "data.split=train-5k", "data.n_train=64", "data.n_test=16",
                 "train.log_every_n_steps=1", "train.checkpoint_every_n_steps=1000"])
    assert code == 0
    losses = _losses(out)
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # observed: about 2710 -> 880 (supervised), 2650 -> 930 (weak)
    assert last < 0.8 * first, (first, last)

    assert main(["evaluate", str(out), "--n-sequences", "8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "shift_operator"
    assert metrics["log_likelihood_nats_per_image"] is None
    for key in ("equivariance_ratio", "roll_prediction_nll", "roll_prediction_nll_static",
                "reconstruction_nll"):
        assert math.isfinite(metrics[key])
    # each frame is encoded alone, and the shift operator is the roll the measurement applies
    assert metrics["operator_prediction_nll"] == pytest.approx(metrics["roll_prediction_nll"],
                                                               rel=1e-5)
    assert metrics["roll_prediction_nll_sequence_context"] == pytest.approx(
        metrics["roll_prediction_nll"], rel=1e-5)


# -- presets --------------------------------------------------------------------------------------
SHIFT_PRESETS = {
    "shift-operator-mnist": ("shift", "supervised", "single_factor"),
    "shift-operator-weak-mnist": ("shift", "weak", "single_factor"),
    "rotation-operator-mnist": ("rotation", "supervised", "single_factor"),
    "shift-operator-mnist-rotcolor": ("shift", "supervised", "rotation_hue"),
    "shift-operator-dsprites": ("shift", "supervised", "dsprites"),
    "shift-operator-weak-dsprites": ("shift", "weak", "dsprites"),
    "shift-operator-consistent-mnist": ("shift", "supervised", "single_factor"),
}


@pytest.mark.parametrize("name", sorted(SHIFT_PRESETS))
def test_presets_match_the_tvae_protocol_and_cpu_budget(name: str) -> None:
    from topovae.presets import load_preset, load_preset_dict

    operator, supervision, sequences = SHIFT_PRESETS[name]
    full, cpu = load_preset(name), load_preset(name + "-cpu")
    tvae = load_preset("tvae-Lpartial-mnist" if "mnist" in name else "tvae-Lhalf-dsprites")
    tvae_cpu = load_preset(("tvae-Lpartial-mnist" if "mnist" in name else "tvae-Lhalf-dsprites")
                           + "-cpu")
    cfg = full.model.config
    assert full.model.name == "shift_operator"
    assert (cfg["operator"], cfg["supervision"], full.data.sequences) == (
        operator, supervision, sequences)
    # the same latent, network, sequences and batches as the TVAE it is the reference for
    for key in ("input_shape", "architecture", "n_caps", "cap_dim"):
        assert cfg[key] == tvae.model.config[key], key
    for key in ("source", "seq_len", "batch_size", "val_fraction"):
        assert getattr(full.data, key) == getattr(tvae.data, key), key
    assert (full.train.optimizer, full.train.lr) == ("adam", 1e-3)  # the authors' setting
    # the -cpu variant: the TVAE's -cpu budget, the same model
    assert load_preset_dict(name + "-cpu")["model"] == load_preset_dict(name)["model"]
    assert cpu.train.max_time == tvae_cpu.train.max_time
    assert cpu.data.source == tvae_cpu.data.source
    assert cpu.evaluate.n_eval_sequences == tvae_cpu.evaluate.n_eval_sequences


def test_step_roll_names_the_roll_one_frame_step_has_become() -> None:
    from topovae.models.shift_operator import step_roll

    torch.manual_seed(0)
    first = torch.randn(6, 1, 3, 18)
    forward = torch.cat([roll_codes(first, s) for s in range(18)], dim=1)
    backward = torch.cat([roll_codes(first, -5 * s) for s in range(18)], dim=1)
    assert step_roll(forward) == {"step_roll": 1, "step_roll_fraction": 1.0}
    assert step_roll(backward) == {"step_roll": 13, "step_roll_fraction": 1.0}  # -5 mod 18
    assert step_roll(torch.randn(6, 18, 3, 18))["step_roll_fraction"] < 0.3


def test_code_consistency_term_is_zero_for_exact_rolls_and_enters_the_loss() -> None:
    from topovae.models.shift_operator import code_distance

    torch.manual_seed(0)
    t = torch.randn(4, 3, 6)
    assert torch.allclose(code_distance(roll_codes(t, 2), roll_codes(t, 2) * 3.0),
                          torch.zeros(4), atol=1e-10)  # blind to scale
    assert bool((code_distance(t, roll_codes(t, 1)) > 0.1).all())
    model = build_model("shift_operator", {"n_caps": 4, "cap_dim": 5, "code_weight": 10.0})
    out = model(torch.rand(3, 5, 3, 28, 28))
    expected = (out.terms["recon_nll"] + out.terms["transformed_nll"]
                + 10.0 * out.terms["code_distance"])
    assert torch.allclose(out.loss, expected)
    with pytest.raises(ValueError, match="code_weight needs"):
        ShiftOperatorConfig(code_weight=1.0, supervision="weak")
