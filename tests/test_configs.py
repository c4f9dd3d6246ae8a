"""Typed configs on OmegaConf: typing, one-line errors naming the key, YAML, extends, overrides."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from topovae.cli.main import main
from topovae.config import read_yaml
from topovae.models.tvae import TVAEConfig
from topovae.presets import load_preset_dict, merge_extends
from topovae.training.experiment import ExperimentConfig, TrainConfig, parse_overrides


def test_values_are_typed_and_converted_where_lossless() -> None:
    config = TVAEConfig(input_shape=[1, 12, 12], n_caps=2, cap_dim=4, seq_len=4, time_window=1,
                        capsule_window=1, mu_init=3)
    assert config.input_shape == (1, 12, 12) and isinstance(config.input_shape, tuple)
    assert isinstance(config.mu_init, float) and config.mu_init == 3.0
    train = TrainConfig.from_dict({"lr": "1e-3", "max_time": 60})
    assert train.lr == 1e-3 and train.max_time == 60.0


@pytest.mark.parametrize("data, words", [
    ({"train": {"lr": "fast"}}, ["train.lr='fast'"]),
    ({"train": {"max_epochs": 1.5}}, ["train.max_epochs=1.5"]),
    ({"train": {"optimizer": "lbfgs"}}, ["train.optimizer='lbfgs'", "sgd"]),
    ({"train": {"lr": math.nan}}, ["lr=nan", "finite"]),
    ({"train": {"max_time": -math.inf}}, ["max_time=-inf", "finite"]),
    ({"data": {"transforms": "rotation"}}, ["data.transforms='rotation'"]),
    ({"train": 3}, ["train=3"]),
    ({"train": {"lrr": 1}}, ["'train.lrr'", "valid keys:", "lr,"]),
    ({"model": {"name": "tvae", "config": {"time_windw": 5}}}, ["model.config", "'time_windw'",
                                                               "time_window"]),
    ({"model": {"name": "tvae", "config": {"input_shape": [1, 28]}}}, ["input_shape"]),
    ({"description": "${nowhere}"}, ["nowhere"]),
])
def test_bad_values_are_one_line_errors_naming_the_key(data: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        ExperimentConfig.from_dict(data)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_round_trip_through_yaml_and_json_keeps_strings_that_look_like_numbers(
        tmp_path: Path) -> None:
    experiment = ExperimentConfig.from_dict({"notes": "1e-3", "description": "true",
                                             "train": {"strategy": "1e5"}}).resolved()
    assert ExperimentConfig.from_yaml(experiment.to_yaml()) == experiment
    assert ExperimentConfig.from_json(experiment.to_json()) == experiment
    for name in ("run.yaml", "run.json"):
        experiment.save(tmp_path / name)
        assert ExperimentConfig.load(tmp_path / name) == experiment
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.yaml"]  # no temp files


def test_yaml_is_read_safely_with_floats_in_exponent_notation() -> None:
    assert read_yaml("train:\n  lr: 1e-3\n", "x") == {"train": {"lr": 1e-3}}
    with pytest.raises(ValueError, match="x is not valid YAML"):
        read_yaml("a: !!python/object/apply:os.system ['true']\n", "x")
    with pytest.raises(ValueError, match="x is not a mapping"):
        read_yaml("- 1\n- 2\n", "x")
    with pytest.raises(ValueError, match="x is not valid YAML"):
        read_yaml("{[: x\n\t- ]]", "x")


def test_interpolations_resolve_when_the_config_is_built() -> None:
    experiment = ExperimentConfig.from_dict({"preset": "p", "description": "run of ${preset}"})
    assert experiment.description == "run of p"


def test_extends_merges_sections_key_by_key_and_replaces_lists() -> None:
    parent = load_preset_dict("tvae-Lpartial-mnist-cpu")
    merged = merge_extends({"extends": "tvae-Lpartial-mnist-cpu",
                            "data": {"transforms": ["rotation"]}, "train": {"lr": 5e-4}})
    assert merged["data"]["transforms"] == ["rotation"]
    assert merged["train"]["lr"] == 5e-4 and merged["train"]["max_time"] == parent["train"][
        "max_time"]
    assert {k: v for k, v in merged["data"].items() if k != "transforms"} == {
        k: v for k, v in parent["data"].items() if k != "transforms"}
    assert "extends" not in merged
    with pytest.raises(ValueError, match="extends must name a preset"):
        merge_extends({"extends": {"tvae-demo": 1}})
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        merge_extends({"extends": ["tvae-demo", "nope"]})


def test_overrides_values_and_paths() -> None:
    assert parse_overrides(["a.b=1e-3", "a.c=", "a.d=[1, 2]", "a.e={[", "a.f=x=y"]) == {
        "a.b": 1e-3, "a.c": "", "a.d": [1, 2], "a.e": "{[", "a.f": "x=y"}
    with pytest.raises(ValueError, match="must look like key.sub=value"):
        parse_overrides(["train.lr"])
    base = ExperimentConfig()
    other = base.with_overrides({"model.name": "beta_vae", "model.config.latent_dim": 4})
    assert other.model.name == "beta_vae" and other.model.config["latent_dim"] == 4
    with pytest.raises(ValueError, match="'train.lr' is a value, not a section"):
        base.with_overrides({"train.lr.x": 1})
    with pytest.raises(ValueError, match="'trian' is not a key of top level"):
        base.with_overrides({"trian.lr": 1})


def test_config_file_extends_a_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text("extends: tvae-demo\ntrain:\n  lr: 2e-3\n  optimizer: nope\n")
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.optimizer='nope'" in err[0]
    assert not (tmp_path / "run").exists()
