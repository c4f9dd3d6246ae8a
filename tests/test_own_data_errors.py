"""Bad data of your own: one-line errors naming the file and the problem, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from topovae.data.files import DataFileError, open_sequences, read_images
from topovae.data.loaders import DataConfig, build_data

GOOD = np.zeros((4, 6, 6), np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def one_line(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("array, words", [
    (np.zeros((4, 6), np.uint8), ["(N, H, W) or (N, C, H, W)", "(4, 6)"]),
    (np.zeros((4, 2, 6, 6), np.uint8), ["1 or 3 channels", "(4, 2, 6, 6)"]),
    (np.zeros((4, 6, 6, 3), np.uint8), ["channels-last"]),
    (np.zeros((0, 6, 6), np.uint8), ["no images"]),
    (np.full((4, 6, 6), np.nan, np.float32), ["NaN or infinite", "image 0"]),
    (np.where(np.arange(4)[:, None, None] == 2, np.inf, 0.0) * np.ones((4, 6, 6)),
     ["NaN or infinite", "image 2"]),
    (np.full((4, 6, 6), 1.5, np.float32), ["[0, 1]", "1.5"]),
    (np.full((4, 6, 6), -0.5, np.float32), ["[0, 1]"]),
    (np.zeros((4, 6, 6), np.int16), ["uint8", "int16"]),
])
def test_bad_image_arrays(tmp_path, array, words):
    path = save(tmp_path / "bad.npy", array)
    with pytest.raises(DataFileError) as err:
        read_images(path)
    one_line(err, path, *words)


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError) as err:
        read_images(path)
    one_line(err, path, "Python objects")
    with pytest.raises(DataFileError):
        open_sequences(path)


def test_bad_image_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileError) as err:
        read_images(empty)
    one_line(err, empty, "no .png/.jpg/.jpeg")
    mixed = tmp_path / "mixed"
    png(mixed / "a.png", np.zeros((6, 6), np.uint8))
    png(mixed / "b.png", np.zeros((7, 6), np.uint8))
    with pytest.raises(DataFileError) as err:
        read_images(mixed)
    one_line(err, mixed, "differ in size", "a.png is 6x6", "b.png is 6x7")
    colours = tmp_path / "colours"
    png(colours / "a.png", np.zeros((6, 6), np.uint8))
    png(colours / "b.png", np.zeros((6, 6, 3), np.uint8))
    with pytest.raises(DataFileError) as err:
        read_images(colours)
    one_line(err, colours, "grey", "RGB")
    stray = tmp_path / "stray"
    png(stray / "a.png", np.zeros((6, 6), np.uint8))
    (stray / "notes.txt").write_text("not an image")
    with pytest.raises(DataFileError) as err:
        read_images(stray)
    one_line(err, stray / "notes.txt", "not a PNG/JPEG image")
    broken = tmp_path / "broken"
    png(broken / "a.png", np.zeros((6, 6), np.uint8))
    (broken / "b.png").write_bytes(b"this is no png")
    with pytest.raises(DataFileError) as err:
        read_images(broken)
    one_line(err, broken / "b.png", "not a readable image")
    with pytest.raises(DataFileError) as err:
        read_images(tmp_path / "missing")
    one_line(err, tmp_path / "missing", "does not exist")


def test_labels_whose_length_differs(tmp_path):
    images = save(tmp_path / "images.npy", GOOD)
    labels = save(tmp_path / "labels.npy", np.arange(3))
    with pytest.raises(DataFileError) as err:
        read_images(images, labels)
    one_line(err, labels, "3 labels for 4 images", str(images))
    archive = tmp_path / "both.npz"
    np.savez(archive, images=GOOD, labels=np.arange(5))
    with pytest.raises(DataFileError) as err:
        read_images(archive)
    one_line(err, archive, "5 labels for 4 images")
    sequences = save(tmp_path / "seq.npy", np.zeros((4, 3, 1, 5, 5), np.uint8))
    with pytest.raises(DataFileError) as err:
        open_sequences(sequences, labels_path=labels)
    one_line(err, labels, "3 labels for 4 sequences")


@pytest.mark.parametrize("array, words", [
    (np.zeros((4, 3, 5, 5), np.uint8), ["(N, S, C, H, W)", "a[:, :, None]"]),
    (np.zeros((4, 3, 2, 5, 5), np.uint8), ["1 or 3 channels on axis 2"]),
    (np.zeros((4, 3, 5, 5, 3), np.uint8), ["channels-last"]),
    (np.zeros((4, 1, 1, 5, 5), np.uint8), ["at least 2 frames"]),
    (np.full((4, 3, 1, 5, 5), np.nan, np.float32), ["NaN or infinite", "sequence 0"]),
    (np.full((4, 3, 1, 5, 5), 255.0, np.float32), ["[0, 1]"]),
])
def test_bad_sequence_arrays(tmp_path, array, words):
    path = save(tmp_path / "bad.npy", array)
    with pytest.raises(DataFileError) as err:
        open_sequences(path)
    one_line(err, path, *words)


def test_bad_sequence_folders_and_factors(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    save(folder / "a.npy", np.zeros((2, 3, 1, 5, 5), np.uint8))
    save(folder / "b.npy", np.zeros((2, 4, 1, 5, 5), np.uint8))
    with pytest.raises(DataFileError) as err:
        open_sequences(folder)
    one_line(err, folder / "b.npy", "(n, 4, 1, 5, 5)", "a.npy")
    (folder / "b.npy").unlink()
    (folder / "readme.md").write_text("x")
    with pytest.raises(DataFileError) as err:
        open_sequences(folder)
    one_line(err, folder / "readme.md", "not a .npy/.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileError) as err:
        open_sequences(empty)
    one_line(err, empty, "no .npy/.npz")
    sequences = save(tmp_path / "seq.npy", np.zeros((4, 3, 1, 5, 5), np.uint8))
    factors = save(tmp_path / "factors.npy", np.zeros((4, 2, 1)))
    with pytest.raises(DataFileError) as err:
        open_sequences(sequences, factors_path=factors)
    one_line(err, factors, "(N, S, F) = (4, 3, F)", "(4, 2, 1)")
    nan_factors = save(tmp_path / "nan_factors.npy", np.full((4, 3, 1), np.nan))
    with pytest.raises(DataFileError) as err:
        open_sequences(sequences, factors_path=nan_factors)
    one_line(err, nan_factors, "NaN")


def test_sequences_shorter_than_the_time_window(tmp_path):
    from topovae.presets import load_preset
    from topovae.training.experiment import adapt_to_data

    path = save(tmp_path / "short.npy", np.zeros((10, 6, 1, 5, 5), np.uint8))
    experiment = load_preset("tvae-sequences").with_overrides({"data.path": str(path)})
    with pytest.raises(ValueError) as err:
        adapt_to_data(experiment)
    one_line(err, path, "6 frames", "time_window=13", "model.config.time_window=4")
    fixed = adapt_to_data(experiment.with_overrides({"model.config.time_window": 4}))
    assert fixed.model.config["seq_len"] == 6 and fixed.model.config["input_shape"] == [1, 5, 5]


def test_configuration_mistakes():
    with pytest.raises(ValueError, match="data.sequences=given"):
        DataConfig(source="sequences", path="x.npy")
    with pytest.raises(ValueError, match="needs data.source=sequences"):
        DataConfig(source="images", path="x.npy", sequences="given")
    with pytest.raises(ValueError, match="needs data.path"):
        build_data(DataConfig(source="images"), seed=0)
    with pytest.raises(ValueError, match="test_fraction"):
        DataConfig(source="images", path="x.npy", test_fraction=1.0)


def test_too_few_images_to_hold_out(tmp_path):
    path = save(tmp_path / "one.npy", np.zeros((1, 6, 6), np.uint8))
    with pytest.raises(ValueError, match="too few"):
        build_data(DataConfig(source="images", path=str(path)), seed=0)


def test_cli_bad_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    from topovae.cli.main import main

    path = save(tmp_path / "bad.npy", np.full((8, 4, 1, 5, 5), 2.0, np.float32))
    run = tmp_path / "run"
    code = main(["train", "--preset", "tvae-sequences", f"data.path={path}",
                 "model.config.time_window=3", "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(path) in err and "[0, 1]" in err
    assert not run.exists()
