"""Batched rotation/scale, perspective and hue transformations."""

import math

import pytest
import torch
import torch.nn.functional as F

from topovae.data.transforms import (
    affine_grid,
    colorize_red,
    hue_matrices,
    perspective,
    rotate_hue,
    rotate_scale,
)


def blob_image(n=1, size=28):
    """A smooth off-centre blob (smooth so that interpolation errors stay small)."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.exp(-((xs - 17.0) ** 2 + (ys - 10.0) ** 2) / 8.0)
    return img.expand(n, 1, size, size).clone()


def test_identity_warps():
    x = blob_image(3)
    assert torch.allclose(rotate_scale(x, 0.0, 1.0), x, atol=1e-5)
    assert torch.allclose(perspective(x, 0.0, 0.0), x, atol=1e-5)


def test_eighteen_rotations_of_twenty_degrees_return_to_start():
    x = blob_image()
    step = math.radians(20)
    y = x
    for _ in range(18):
        y = rotate_scale(y, step)
    # one warp by 18 steps is exact; 18 chained warps blur, but the blob comes back to its place
    assert torch.allclose(rotate_scale(x, 18 * step), x, atol=1e-4)
    grid = torch.arange(28.0)
    for image in (x, y):
        image.centre = (
            torch.stack([(image[0, 0].sum(0) * grid).sum(), (image[0, 0].sum(1) * grid).sum()])
            / image.sum()
        )
    assert torch.allclose(y.centre, x.centre, atol=0.3)
    assert abs(y.sum() / x.sum() - 1) < 0.05


def test_rotation_direction_and_batching():
    x = blob_image(2)
    out = rotate_scale(x, torch.tensor([math.pi / 2, 0.0]))
    peak = torch.nonzero(out[0, 0] == out[0, 0].max())[0].tolist()
    # blob at (row 10, col 17) turned counter-clockwise by 90 degrees -> (row 10, col 10)
    assert abs(peak[0] - 10) <= 1 and abs(peak[1] - 10) <= 1
    assert torch.allclose(out[1], x[1], atol=1e-5)


def test_scale_zooms_about_centre():
    x = blob_image()
    mass = rotate_scale(x, 0.0, 0.5).sum() / x.sum()
    assert abs(mass - 0.25) < 0.02


def test_hue_composition_and_grey_axis():
    k, step = 5, 2 * math.pi / 18
    h1 = hue_matrices(torch.tensor([step]))[0]
    assert torch.allclose(
        torch.linalg.matrix_power(h1, k), hue_matrices(torch.tensor([k * step]))[0], atol=1e-5
    )
    assert torch.allclose(torch.linalg.matrix_power(h1, 18), torch.eye(3), atol=1e-5)
    grey = torch.rand(4, 1, 5, 5).expand(4, 3, 5, 5)
    out = rotate_hue(grey, torch.rand(4) * 6)
    assert torch.allclose(out, grey, atol=1e-6)
    img = torch.rand(2, 3, 4, 4)
    y = img
    for _ in range(k):
        y = rotate_hue(y, step, clamp=False)
    assert torch.allclose(y, rotate_hue(img, k * step, clamp=False), atol=1e-5)
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1
    assert torch.allclose(
        rotate_hue(red, 2 * math.pi / 3).flatten(), torch.tensor([0.0, 1, 0]), atol=1e-6
    )


def test_colorize_red_matches_full_matrix():
    grey = torch.rand(6, 1, 7, 7)
    hue = torch.rand(6) * 6
    rgb = torch.cat([grey, torch.zeros_like(grey), torch.zeros_like(grey)], dim=1)
    assert torch.allclose(colorize_red(grey, hue), rotate_hue(rgb, hue), atol=1e-6)


def test_perspective_is_a_rotation_when_phi_is_zero_and_foreshortens():
    x = blob_image()
    assert torch.allclose(perspective(x, 0.0, math.pi / 3), rotate_scale(x, math.pi / 3), atol=1e-4)
    turned = perspective(x, math.radians(60), 0.0)
    assert turned.sum() < 0.75 * x.sum()  # foreshortened about the vertical axis
    assert perspective(x, math.pi / 2, 0.0).sum() < 1e-3 * x.sum()  # edge-on: nothing visible


@pytest.mark.parametrize("height,width", [(28, 28), (64, 64), (5, 9), (1, 3)])
def test_affine_grid_is_torchs_affine_grid(height, width):
    # any affine map, translation included, and sizes that are not square
    theta = torch.randn(17, 2, 3, generator=torch.Generator().manual_seed(height * width))
    expected = F.affine_grid(theta, [17, 1, height, width], align_corners=False)
    got = affine_grid(theta, height, width)
    assert got.shape == expected.shape
    # the same products added in the same order: equal to float32 rounding (bit for bit on the
    # CPUs tried; a matrix-multiply kernel with fused multiply-adds may round differently)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


def test_affine_grid_rejects_a_wrong_theta():
    with pytest.raises(ValueError, match="theta must be"):
        affine_grid(torch.zeros(4, 3, 3), 8, 8)


def test_warps_agree_with_torchs_affine_grid_path():
    x = blob_image(6)
    angle = torch.linspace(-3.0, 3.0, 6)
    scale = torch.linspace(0.6, 1.4, 6)
    from topovae.data.transforms import perspective_homographies, rotation_scale_matrices

    theta = rotation_scale_matrices(angle, scale)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(rotate_scale(x, angle, scale), expected, rtol=0, atol=1e-6)
    # the perspective warp's pixel centres are affine_grid's identity grid
    identity = torch.eye(2, 3).expand(6, 2, 3)
    base = F.affine_grid(identity, [6, 1, 28, 28], align_corners=False).reshape(6, -1, 2)
    h = perspective_homographies(torch.full((6,), 0.4), angle)
    points = torch.cat([base, torch.ones_like(base[..., :1])], -1)
    source = points @ torch.linalg.inv(h).transpose(1, 2)
    grid = (source[..., :2] / source[..., 2:]).reshape(6, 28, 28, 2)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(perspective(x, 0.4, angle), expected, rtol=0, atol=1e-4)
