"""Sequence builders: protocol factors, per-frame consistency, registry."""

import math

import numpy as np
import pytest
import torch

from topovae.data.dsprites import SUBGRID, RenderedDSprites, subgrid_factors
from topovae.data.sequences import (
    ANGLES_DEG,
    FACTORS,
    HUES_DEG,
    SCALES,
    SEQUENCES,
    build_sequences,
)
from topovae.data.transforms import colorize_red, perspective, rotate_scale


def digits(n=8):
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    blobs = [torch.exp(-((xs - 10 - i) ** 2 + (ys - 12) ** 2) / 6.0) for i in range(n)]
    return (torch.stack(blobs).unsqueeze(1) * 255).to(torch.uint8)


def test_registry():
    for name in ["single_factor", "rotation_hue", "perspective_hue", "dsprites", "none"]:
        assert name in SEQUENCES


def test_single_factor_protocol_factors():
    builder = build_sequences("single_factor")
    out = builder(digits(64), torch.Generator().manual_seed(1))
    assert out.x.shape == (64, 18, 3, 28, 28) and out.x.dtype == torch.float32
    assert 0 <= out.x.min() and out.x.max() <= 1
    rot, hue, scale, varied = (out.factors[k] for k in ("rotation", "hue", "scale", "varied"))
    assert set(varied[:, 0].tolist()) == {0, 1, 2}
    for b in range(64):
        values = [rot[b], hue[b], scale[b]]
        for f in range(3):
            changes = bool((values[f] != values[f][0]).any())
            assert changes == (f == varied[b, 0].item())
        sets = [ANGLES_DEG, HUES_DEG, SCALES]
        v = varied[b, 0].item()
        start = int(torch.nonzero(sets[v] == values[v][0])[0])
        expected = sets[v][(start + torch.arange(18)) % 18]
        assert torch.allclose(values[v], expected)  # one step per frame, cyclic, all 18 values


def test_frames_equal_direct_transform_of_the_digit():
    images = digits(4)
    out = build_sequences("single_factor")(images, torch.Generator().manual_seed(3))
    f = out.factors
    grey = images.float().div(255).unsqueeze(1).expand(4, 18, 1, 28, 28).reshape(-1, 1, 28, 28)
    warped = rotate_scale(grey, torch.deg2rad(f["rotation"].reshape(-1)), f["scale"].reshape(-1))
    expected = colorize_red(warped, torch.deg2rad(f["hue"].reshape(-1))).reshape(4, 18, 3, 28, 28)
    assert torch.allclose(out.x, expected, atol=1e-6)


def test_rotation_sequence_frame_k_is_frame0_turned_k_steps():
    builder = build_sequences("single_factor", transforms=["rotation"])
    images = digits(2)
    out = builder(images, torch.Generator().manual_seed(0))
    assert (out.factors["hue"] == 0).all() and (out.factors["scale"] == 1).all()
    rot = out.factors["rotation"]
    assert torch.allclose((rot[:, 1:] - rot[:, :-1]) % 360, torch.full((2, 17), 20.0))
    # red channel: frame k = the digit turned by (start + 20 k) degrees
    grey = images.float().div(255)
    for k in (0, 5, 17):
        turned = rotate_scale(grey, torch.deg2rad(rot[:, k]))
        assert torch.allclose(out.x[:, k, :1], turned, atol=1e-5)


def test_hue_only_sequence_preserves_shape_and_steps_colour():
    builder = build_sequences("single_factor", transforms=["hue"])
    out = builder(digits(3), torch.Generator().manual_seed(5))
    brightness = out.x.amax(dim=2)  # the pattern keeps its shape
    assert (out.factors["rotation"] == 0).all()
    hue = out.factors["hue"]
    assert torch.allclose((hue[:, 1:] - hue[:, :-1]) % 360, torch.full((3, 17), 20.0))
    frame0_hue_red = hue[:, 0] == 0
    if frame0_hue_red.any():  # hue 0 is pure red
        assert (out.x[frame0_hue_red, 0, 1:] == 0).all()
    assert brightness.shape == (3, 18, 28, 28)


def test_rotation_hue_and_perspective():
    gen = torch.Generator().manual_seed(2)
    out = build_sequences("rotation_hue")(digits(4), gen)
    steps = (out.factors["rotation"][:, 1:] - out.factors["rotation"][:, :-1]) % 360
    assert torch.allclose(steps, torch.full_like(steps, 20.0))
    hsteps = (out.factors["hue"][:, 1:] - out.factors["hue"][:, :-1]) % 360
    assert torch.allclose(hsteps, torch.full_like(hsteps, 20.0))
    assert (out.factors["scale"] == out.factors["scale"][:, :1]).all()
    images = digits(2)
    out = build_sequences("perspective_hue", seq_len=6)(images, gen)
    assert out.x.shape == (2, 6, 3, 28, 28)
    assert torch.equal(out.factors["phi"], out.factors["gamma"])
    grey = images.float().div(255)
    angle = torch.deg2rad(out.factors["phi"][:, 3])
    expected = perspective(grey, angle, angle, out.factors["scale"][:, 3])
    hue = torch.deg2rad(out.factors["hue"][:, 3])
    assert torch.allclose(out.x[:, 3], colorize_red(expected, hue), atol=1e-5)


def test_none_builder():
    out = build_sequences("none")(digits(5), torch.Generator())
    assert out.x.shape == (5, 1, 1, 28, 28) and out.factors == {}


def test_dsprites_sequences_step_one_factor():
    renderer = RenderedDSprites()
    builder = build_sequences("dsprites", ground_truth=renderer)
    rng = np.random.default_rng(0)
    start = torch.from_numpy(subgrid_factors()[rng.choice(50625, 12, replace=False)])
    out = builder(None, torch.Generator().manual_seed(0), factors=start)
    assert out.x.shape == (12, 15, 1, 64, 64)
    stepped = ["pos_x", "pos_y", "orientation", "scale"]
    for b in range(12):
        name = stepped[out.factors["varied"][b, 0]]
        for other in ["shape", "scale", "orientation", "pos_x", "pos_y"]:
            values = out.factors[other][b]
            assert (
                values[0]
                == start[b, ["shape", "scale", "orientation", "pos_x", "pos_y"].index(other)]
            )
            if other != name:
                assert (values == values[0]).all()
        grid = SUBGRID[name]
        sub = np.searchsorted(grid, out.factors[name][b].numpy())
        assert ((np.diff(sub) % len(grid)) == 1).all()
    b = 0
    rows = np.stack(
        [out.factors[k][b].numpy() for k in ["shape", "scale", "orientation", "pos_x", "pos_y"]], 1
    )
    assert torch.equal(out.x[b], renderer.observations_from_factors(rows))
    with pytest.raises(ValueError, match="sub-grid"):
        builder(None, torch.Generator(), factors=torch.tensor([[0, 0, 0, 0, 0]]))


def test_invalid_options():
    with pytest.raises(ValueError, match="transforms"):
        build_sequences("single_factor", transforms=["shear"])
    with pytest.raises(ValueError, match="unknown"):
        build_sequences("nope")
    assert FACTORS == ("rotation", "hue", "scale")
    assert math.isclose(float(SCALES[-1]), 1.26, rel_tol=1e-6)
