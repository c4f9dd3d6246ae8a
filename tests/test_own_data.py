"""Your own data: data.source=images and data.source=sequences, their readers and measurements."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from topovae.data.files import SequenceArrays, open_sequences, read_images
from topovae.data.loaders import DataConfig, build_data
from topovae.measure import collect_test_sequences
from topovae.metrics.equivariance import equivariance_error, equivariance_ratio

SRC = Path(__file__).resolve().parents[1] / "src"


def faces(n: int = 12, size: int = 9, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def cyclic_sequences(n: int = 24, s: int = 6, size: int = 6, seed: int = 0) -> np.ndarray:
    """(n, s, 1, size, size) float32: frame k is the image rolled k pixels to the right (a
    transformation topovae does not ship, on random binary images)."""
    base = (np.random.default_rng(seed).random((n, 1, size, size)) > 0.6).astype(np.float32)
    return np.stack([np.roll(base, k, axis=-1) for k in range(s)], axis=1)


def bar_sequences(n: int = 48, s: int = 6, size: int = 8, seed: int = 0) -> np.ndarray:
    """(n, s, 1, size, size): a vertical bar of random height moving one pixel per frame."""
    rng = np.random.default_rng(seed)
    base = np.zeros((n, 1, size, size), np.float32)
    for i, (column, height) in enumerate(zip(rng.integers(0, size, n),
                                             rng.integers(2, size + 1, n), strict=True)):
        base[i, 0, size - height:, column] = 1.0
    return np.stack([np.roll(base, k, axis=-1) for k in range(s)], axis=1)


def data_config(**kw) -> DataConfig:
    return DataConfig(**{"batch_size": 4, "seq_len": 5, **kw})


# -- images ------------------------------------------------------------------------------------
def test_array_and_folder_sources_give_identical_batches(tmp_path):
    images = faces()
    np.save(tmp_path / "faces.npy", images)
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    for builder in ("single_factor", "rotation_hue", "perspective_hue", "none"):
        a = build_data(data_config(source="images", path=str(tmp_path / "faces.npy"),
                                   sequences=builder), seed=3)
        b = build_data(data_config(source="images", path=str(folder), sequences=builder), seed=3)
        assert np.array_equal(a.train.indices, b.train.indices)
        assert np.array_equal(a.test.indices, b.test.indices)
        for loader_a, loader_b in ((a.train, b.train), (a.test, b.test)):
            batch_a, batch_b = loader_a.batch(0, 0), loader_b.batch(0, 0)
            assert torch.equal(batch_a["x"], batch_b["x"])
            assert batch_a["factors"].keys() == batch_b["factors"].keys()
        expected_c = 1 if builder == "none" else 3
        assert a.train.batch(0, 0)["x"].shape[2:] == (expected_c, 9, 9)
    # a different seed gives different training batches, the same held-out test images
    c = build_data(data_config(source="images", path=str(tmp_path / "faces.npy")), seed=4)
    assert np.array_equal(c.test.indices, a.test.indices)
    assert not torch.equal(c.train.batch(0, 0)["x"], a.train.batch(0, 0)["x"])


def test_held_out_fraction_and_test_path(tmp_path):
    np.savez(tmp_path / "train.npz", images=faces(20), labels=np.arange(20) % 3)
    np.save(tmp_path / "test.npy", faces(5, seed=1).astype(np.float32) / 255)
    bundle = build_data(data_config(source="images", path=str(tmp_path / "train.npz"),
                                    test_fraction=0.25, split_seed=7, val_fraction=0.2), seed=0)
    test_rows = set(bundle.test.indices.tolist())
    assert len(test_rows) == 5 and not test_rows & set(bundle.train.indices.tolist())
    assert not test_rows & set(bundle.val.indices.tolist())
    assert len(bundle.train.indices) + len(bundle.val.indices) == 15
    assert "split_seed=7" in bundle.info["splits"]["test"]["split"]
    assert bundle.train.batch(0, 0)["labels"].max() <= 2
    other = build_data(data_config(source="images", path=str(tmp_path / "train.npz"),
                                   test_fraction=0.25, split_seed=8), seed=0)
    assert set(other.test.indices.tolist()) != test_rows
    separate = build_data(data_config(source="images", path=str(tmp_path / "train.npz"),
                                      test_path=str(tmp_path / "test.npy")), seed=0)
    assert len(separate.test.indices) == 5 and len(separate.train.indices) == 16
    assert torch.equal(separate.test.source.images, torch.from_numpy(
        faces(5, seed=1).astype(np.float32) / 255)[:, None])


def test_folder_labels_from_sub_folders_and_hidden_files_skipped(tmp_path):
    for i, image in enumerate(faces(4)):
        (tmp_path / f"class{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(np.stack([image] * 3, -1)).save(tmp_path / f"class{i % 2}" / f"{i}.png")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    images, labels = read_images(tmp_path)
    assert images.shape == (4, 3, 9, 9) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1]


# -- sequences ---------------------------------------------------------------------------------
def test_sequences_round_trip_exactly(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (10, 4, 3, 5, 7), dtype=np.uint8)
    np.save(tmp_path / "seq.npy", frames)
    config = data_config(source="sequences", sequences="given", path=str(tmp_path / "seq.npy"),
                         test_fraction=0.3)
    bundle = build_data(config, seed=0)
    assert bundle.info["seq_len"] == 4
    x, _ = collect_test_sequences(bundle, 0)
    np.testing.assert_array_equal(x.numpy(), frames[bundle.test.indices] / np.float32(255))
    got = torch.cat([bundle.train.batch(0, i)["x"] for i in range(len(bundle.train))])
    assert got.shape[1:] == (4, 3, 5, 7)
    # float frames and a folder of two files with factors: exactly the values given
    values = np.random.default_rng(1).random((7, 3, 1, 4, 4)).astype(np.float32)
    factors = np.random.default_rng(2).random((7, 3, 2))
    folder = tmp_path / "parts"
    folder.mkdir()
    np.savez(folder / "a.npz", sequences=values[:4], factors=factors[:4],
             factor_names=np.array(["angle", "light"]))
    np.savez(folder / "b.npz", sequences=values[4:], factors=factors[4:],
             factor_names=np.array(["angle", "light"]))
    opened = open_sequences(folder)
    assert opened.factor_names == ["angle", "light"]
    rows = torch.tensor([6, 0, 5, 2])
    assert torch.equal(opened.frames[rows], torch.from_numpy(values[[6, 0, 5, 2]]))
    np.testing.assert_array_equal(opened.factors[rows].numpy(),
                                  factors[[6, 0, 5, 2]].astype(np.float32))
    bundle = build_data(data_config(source="sequences", sequences="given", path=str(folder),
                                    test_fraction=0.3, batch_size=8), seed=0)
    x, per_frame = collect_test_sequences(bundle, 0)
    assert torch.equal(x, torch.from_numpy(values[bundle.test.indices]))
    np.testing.assert_array_equal(per_frame["light"].numpy(),
                                  factors[bundle.test.indices, :, 1].astype(np.float32))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="needs Linux /proc to reset and read the peak resident set size")
def test_memory_mapped_file_is_not_read_whole(tmp_path):
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                    shape=(2048, 8, 1, 32, 64))  # 128 MiB
    big[:, :, :, :, :] = 0.5
    big.flush()
    del big
    size = path.stat().st_size
    script = textwrap.dedent(f"""
        import numpy as np, torch
        from topovae.data.loaders import DataConfig, build_data
        def peak():  # the peak resident set size (VmHWM) since the last reset, in bytes
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        def read(path):
            config = DataConfig(source="sequences", sequences="given", path=path, batch_size=8)
            bundle = build_data(config, seed=0)
            return sum(float(bundle.train.batch(0, i)["x"].sum()) for i in range(3))
        np.save({str(path.with_name("small.npy"))!r}, np.zeros((64, 8, 1, 32, 64), np.float32))
        read({str(path.with_name("small.npy"))!r})  # first use: imports, allocator pools
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak to the current size
        before = peak()
        total = read({str(path)!r})
        assert abs(total - 3 * 8 * 8 * 32 * 64 * 0.5) < 1
        streamed = peak() - before
        whole = np.load({str(path)!r})  # the control: reading it whole
        print(streamed, peak() - before)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1",
                                 "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    streamed, whole = map(int, result.stdout.split())
    assert streamed < size / 4, (streamed, size)
    assert whole > 0.9 * size  # the measurement sees a whole read


def test_shift_equivariant_toy_encoder_has_zero_equivariance_error(tmp_path):
    # a capsule of 6 units per image row: rolling the image one pixel rolls every capsule once
    np.save(tmp_path / "roll.npy", cyclic_sequences(n=20, s=6, size=6))
    bundle = build_data(data_config(source="sequences", sequences="given",
                                    path=str(tmp_path / "roll.npy"), test_fraction=0.5), seed=0)
    x, _ = collect_test_sequences(bundle, 0)

    def toy_encoder(x: torch.Tensor) -> torch.Tensor:  # (B, S, 1, H, W) -> (B, S, H caps, W)
        return x[:, :, 0] + 0.1

    codes = toy_encoder(x)
    assert float(equivariance_error(codes)) < 1e-5
    assert float(equivariance_ratio(codes)) < 1e-5
    mirrored = toy_encoder(torch.flip(x, dims=[-1]))  # rolls the other way: not equivariant
    assert float(equivariance_ratio(mirrored)) > 0.3


# -- the whole pipeline ------------------------------------------------------------------------
def read_losses(run: Path) -> np.ndarray:
    import csv

    rows = list(csv.DictReader((run / "logs" / "csv" / "metrics.csv").open()))
    return np.array([float(r["loss"]) for r in rows if r.get("loss")])


def test_cli_trains_evaluates_and_reports_a_sequences_file(tmp_path):
    from topovae.cli.main import main

    np.savez(tmp_path / "roll.npz", sequences=bar_sequences(n=48, s=6, size=8),
             factors=np.broadcast_to(np.arange(6.0)[None, :, None], (48, 6, 1)),
             factor_names=np.array(["shift"]))
    run = tmp_path / "run"
    code = main(["train", "--preset", "tvae-sequences", f"data.path={tmp_path / 'roll.npz'}",
                 "model.config.n_caps=8", "model.config.cap_dim=8", "model.config.time_window=5",
                 "train.log_every_n_steps=1", "train.lr=3e-3", "--max-steps", "120",
                 "--no-progress", "--out", str(run)])
    assert code == 0
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["config"]["seq_len"] == 6
    assert config["model"]["config"]["input_shape"] == [1, 8, 8]
    assert config["data"]["test_fraction"] == 0.2 and config["data"]["split_seed"] == 0
    losses = read_losses(run)
    assert len(losses) >= 100
    assert losses[-20:].mean() < 0.6 * losses[:2].mean()
    assert main(["evaluate", str(run), "--metrics", "mig,dci,beta_vae"]) == 0
    import json

    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("equivariance_ratio", "equivariance_ratio_untrained", "roll_prediction_nll",
                "roll_prediction_nll_static", "log_likelihood_nats_per_image",
                "capsule_offset_correlation"):
        assert isinstance(metrics[key], float), key
    # it has learned something: its code rolls more than the same network untrained
    assert metrics["equivariance_ratio"] < metrics["equivariance_ratio_untrained"] - 0.05
    assert metrics["per_transformation"]["shift"]["n_sequences"] == metrics["data"][
        "n_test_sequences"]
    assert "mig" in metrics["disentanglement"] and "dci" in metrics["disentanglement"]
    assert "beta_vae_unavailable" in metrics["disentanglement"]
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "index.html").read_text()
    assert "Capsule-roll traversal" in html and "not computed" not in html


def test_measurements_say_what_needs_factors(tmp_path):
    from topovae.measure import evaluate_model
    from topovae.models.tvae import TVAE, TVAEConfig
    from topovae.presets import load_preset
    from topovae.training.experiment import adapt_to_data

    np.save(tmp_path / "roll.npy", cyclic_sequences(n=10, s=4, size=6))
    experiment = adapt_to_data(load_preset("tvae-sequences").with_overrides({
        "data.path": str(tmp_path / "roll.npy"), "model.config.time_window": 3,
        "model.config.n_caps": 2, "model.config.cap_dim": 4, "evaluate.n_is_samples": 2}))
    assert experiment.model.config["seq_len"] == 4
    model = TVAE(TVAEConfig(**experiment.model.config))
    result = evaluate_model(model, experiment, metrics=["mig", "factor_vae"])
    assert "per-frame factors" in result["per_transformation_unavailable"]
    assert "factor labels" in result["disentanglement"]["mig_unavailable"]
    assert "\n" not in result["disentanglement"]["mig_unavailable"]
    assert isinstance(result["equivariance_ratio"], float)


def test_python_api_trains_on_a_tensor_in_memory(tmp_path):
    from topovae.api import evaluate_run, train_on_sequences

    x = torch.from_numpy(cyclic_sequences(n=16, s=4, size=6))
    run = train_on_sequences(x, tmp_path / "run", overrides={
        "train.max_steps": 3, "model.config.time_window": 3, "model.config.n_caps": 2,
        "model.config.cap_dim": 4, "train.progress_bar": False, "evaluate.n_is_samples": 2})
    assert (run / "model.safetensors").is_file()
    np.testing.assert_array_equal(np.load(run / "data" / "sequences.npy"), x.numpy())
    assert isinstance(evaluate_run(run)["equivariance_ratio"], float)
    bad = x.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="sequences: holds NaN"):
        train_on_sequences(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_sequence_arrays_index_across_parts():
    a, b = np.arange(12.0).reshape(3, 2, 1, 1, 2), np.arange(12.0, 20.0).reshape(2, 2, 1, 1, 2)
    store = SequenceArrays([a, b])
    whole = np.concatenate([a, b])
    rows = np.array([4, 0, 3, 3, 1])
    assert len(store) == 5 and store.shape == (5, 2, 1, 1, 2)
    np.testing.assert_array_equal(store[rows].numpy(), whole[rows].astype(np.float32))
    with pytest.raises(IndexError):
        store[np.array([5])]


def test_capsule_rule_gives_the_figures_model_at_its_length():
    from topovae.presets import load_preset
    from topovae.training.experiment import capsule_rule

    figures = load_preset("tvae-Lpartial-mnist").model.config
    assert capsule_rule(18) == {key: figures[key] for key in
                                ("n_caps", "cap_dim", "time_window", "capsule_window")}
    assert [capsule_rule(s)["time_window"] for s in (6, 10, 15, 24)] == [4, 7, 11, 17]
    assert capsule_rule(2) == {"n_caps": 18, "cap_dim": 2, "time_window": 1, "capsule_window": 1}
