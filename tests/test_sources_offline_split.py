"""The offline MNIST splits: disjoint, complete, and labelled like the files they come from."""

import torch

from topovae.data.sources import build_source


def test_offline_train_and_evaluation_splits_partition_the_files(mnist_dir):
    train = build_source("mnist", "train-5k+test-odd", mnist_dir, download=False)
    held_out = build_source("mnist", "test-even", mnist_dir, download=False)
    train_5k = build_source("mnist", "train-5k", mnist_dir, download=False)
    test = build_source("mnist", "test", mnist_dir, download=False)
    assert len(train) == 10_000 and len(held_out) == 5_000
    assert torch.equal(train.images[:5000], train_5k.images)
    assert torch.equal(train.images[5000:], test.images[1::2])
    assert torch.equal(train.labels[5000:], test.labels[1::2])
    assert torch.equal(held_out.images, test.images[0::2])
    assert torch.equal(held_out.labels, test.labels[0::2])
    # every class is in both halves of the test set
    assert set(held_out.labels.tolist()) == set(range(10))
    assert "odd-indexed 5000 of test" in train.description
