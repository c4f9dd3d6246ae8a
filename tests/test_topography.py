"""Topography: agreement with W built straight from the definition by explicit loops."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from topovae.topography import Topography

# -- reference matrices, written independently of the implementation ------------------------


def reference_time_offsets(time_window: int) -> list[int]:
    """The authors' circular padding: L // 2 frames after, L // 2 - (1 if L even) before."""
    if time_window <= 1:
        return [0]
    after = time_window // 2
    before = time_window // 2 - (1 if time_window % 2 == 0 else 0)
    return list(range(-before, after + 1))


def reference_capsule_block(cap_dim, window, seq_len, coherence, time_window, shift=0):
    """W of ONE capsule over a sequence, indexed (frame * cap_dim + unit); ``shift`` moves the
    time window by that many frames (used to show the tests see an off-by-one window)."""
    n = seq_len * cap_dim
    w = torch.zeros(n, n, dtype=torch.float64)
    half = (window - 1) // 2
    deltas = [0] if coherence == "none" else reference_time_offsets(time_window)
    for s in range(seq_len):
        for c in range(cap_dim):
            for delta in deltas:
                delta = delta + shift
                for gamma in range(-half, half + 1):
                    s2 = (s + delta) % seq_len
                    moved = delta if coherence == "shifting" else 0
                    c2 = (c + moved + gamma) % cap_dim
                    w[s * cap_dim + c, s2 * cap_dim + c2] += 1.0
    return w


def reference_capsules(n_caps, cap_dim, window, seq_len, coherence, time_window):
    """Full W over (frame, capsule, unit) with explicit loops, zero between different capsules."""
    block = reference_capsule_block(cap_dim, window, seq_len, coherence, time_window)
    n = seq_len * n_caps * cap_dim
    w = torch.zeros(n, n, dtype=torch.float64)
    for s in range(seq_len):
        for cap in range(n_caps):
            for c in range(cap_dim):
                row = (s * n_caps + cap) * cap_dim + c
                for s2 in range(seq_len):
                    for c2 in range(cap_dim):
                        col = (s2 * n_caps + cap) * cap_dim + c2
                        w[row, col] = block[s * cap_dim + c, s2 * cap_dim + c2]
    return w


def reference_ring(size, window):
    w = torch.zeros(size, size, dtype=torch.float64)
    half = (window - 1) // 2
    for i in range(size):
        for g in range(-half, half + 1):
            w[i, (i + g) % size] += 1.0
    return w


def reference_torus(height, width, window):
    w = torch.zeros(height * width, height * width, dtype=torch.float64)
    half = (window - 1) // 2
    for i in range(height):
        for j in range(width):
            for a in range(-half, half + 1):
                for b in range(-half, half + 1):
                    w[i * width + j, ((i + a) % height) * width + (j + b) % width] += 1.0
    return w


def apply_blockwise(block, x, cap_dim, n_caps):
    """Apply the one-capsule reference block to every capsule of x (B, S, n_caps * cap_dim)."""
    b, s, _ = x.shape
    caps = x.reshape(b, s, n_caps, cap_dim).permute(0, 2, 1, 3).reshape(b, n_caps, s * cap_dim)
    out = caps @ block.T
    return out.reshape(b, n_caps, s, cap_dim).permute(0, 2, 1, 3).reshape(b, s, n_caps * cap_dim)


# -- capsules ---------------------------------------------------------------------------------

SMALL_CAPSULE_GRID = [
    # n_caps, cap_dim, K, S, coherence, L
    (1, 5, 3, 4, "shifting", 3),
    (2, 4, 3, 6, "shifting", 4),
    (3, 5, 1, 5, "shifting", 5),
    (2, 6, 5, 7, "stationary", 3),
    (2, 5, 3, 6, "stationary", 6),
    (3, 4, 3, 3, "none", 0),
    (2, 7, 7, 2, "stationary", 2),
    (1, 3, 3, 5, "shifting", 2),
    (2, 3, 3, 4, "stationary", 0),
    (2, 5, 3, 4, "shifting", 1),
]


@pytest.mark.parametrize("n_caps,cap_dim,window,seq_len,coherence,time_window", SMALL_CAPSULE_GRID)
def test_capsules_dense_matrix_matches_loops(n_caps, cap_dim, window, seq_len, coherence,
                                             time_window):
    topo = Topography.capsules(n_caps, cap_dim, window, seq_len, coherence, time_window)
    expected = reference_capsules(n_caps, cap_dim, window, seq_len, coherence, time_window)
    torch.testing.assert_close(topo.dense_matrix(), expected, rtol=0, atol=0)
    x = torch.rand(3, seq_len, n_caps * cap_dim, dtype=torch.float64)
    got = topo(x)
    want = (x.reshape(3, -1) @ expected.T).reshape(x.shape)
    torch.testing.assert_close(got, want)


PAPER_SETTINGS = [
    # MNIST: S = 18, 18 x 18 capsules
    (18, 18, 3, 18, "shifting", 0),
    (18, 18, 3, 18, "shifting", 5),
    (18, 18, 3, 18, "shifting", 13),
    (18, 18, 3, 18, "shifting", 18),
    (18, 18, 3, 18, "stationary", 5),
    (18, 18, 3, 18, "none", 0),
    # dSprites: S = 15, 15 x 15 capsules
    (15, 15, 5, 15, "stationary", 5),
    (15, 15, 1, 15, "shifting", 5),
    (15, 15, 1, 15, "shifting", 10),
    (15, 15, 1, 15, "shifting", 15),
]


@pytest.mark.parametrize("n_caps,cap_dim,window,seq_len,coherence,time_window", PAPER_SETTINGS)
def test_paper_settings_match_reference(n_caps, cap_dim, window, seq_len, coherence, time_window):
    topo = Topography.capsules(n_caps, cap_dim, window, seq_len, coherence, time_window)
    block = reference_capsule_block(cap_dim, window, seq_len, coherence, time_window)
    x = torch.rand(2, seq_len, n_caps * cap_dim, dtype=torch.float64)
    torch.testing.assert_close(topo(x), apply_blockwise(block, x, cap_dim, n_caps))
    # every unit pools exactly L' * K units (L' = max(L, 1)), itself included
    per_unit = max(time_window, 1) * window
    assert torch.all(block.sum(1) == per_unit)
    assert torch.all(torch.diagonal(block) == 1.0)


@pytest.mark.parametrize("coherence", ["shifting", "stationary"])
@pytest.mark.parametrize("time_window,size", [(5, 18), (13, 18), (4, 18), (10, 15), (5, 15)])
def test_off_by_one_time_window_is_detected(coherence, time_window, size):
    """The reference comparison must reject a window moved by one frame either way.

    (With L = S = cap_dim the window is the whole circle and a move is invisible, so those
    settings are covered by the equality tests only.)
    """
    topo = Topography.capsules(2, size, 3, size, coherence, time_window)
    x = torch.rand(2, size, 2 * size, dtype=torch.float64)
    got = topo(x)
    for shift in (-1, 1):
        wrong = reference_capsule_block(size, 3, size, coherence, time_window, shift=shift)
        assert not torch.allclose(got, apply_blockwise(wrong, x, size, 2))


def test_even_time_window_offsets_follow_reference():
    assert Topography.capsules(1, 18, 3, 18, "shifting", 18).time_offsets == tuple(range(-8, 10))
    assert Topography.capsules(1, 15, 1, 15, "shifting", 10).time_offsets == tuple(range(-4, 6))
    assert Topography.capsules(1, 18, 3, 18, "shifting", 13).time_offsets == tuple(range(-6, 7))
    assert Topography.capsules(1, 18, 3, 18, "shifting", 0).time_offsets == (0,)


def test_shifting_direction_matches_roll_convention():
    """If u rolls by one unit per frame, v does too: v[s + k] == roll(v[s], k)."""
    seq_len = cap_dim = 9
    base = torch.rand(2, 3, cap_dim, dtype=torch.float64)
    u2 = torch.stack([torch.roll(base, s, dims=-1) for s in range(seq_len)], dim=1)
    topo = Topography.capsules(3, cap_dim, 3, seq_len, "shifting", 5)
    v = topo(u2.reshape(2, seq_len, -1)).reshape(2, seq_len, 3, cap_dim)
    for k in range(1, seq_len):
        torch.testing.assert_close(v[:, k], torch.roll(v[:, 0], shifts=k, dims=-1))
    # the opposite direction is NOT equivariant for generic u
    assert not torch.allclose(v[:, 1], torch.roll(v[:, 0], shifts=-1, dims=-1))


def test_full_time_window_makes_v_equivariant_for_any_u():
    """With L = S = cap_dim, v[s + 1] == roll(v[s], 1) whatever u is (no learning needed).

    This is why the L = 1/2 S models reach an equivariance error near 0 as soon as the code is
    dominated by v: the window pools the same diagonals for every frame (docs/results.md).
    """
    seq_len = cap_dim = 6
    u2 = torch.rand(2, seq_len, 3 * cap_dim, dtype=torch.float64)  # arbitrary, not rolled
    full = Topography.capsules(3, cap_dim, 3, seq_len, "shifting", seq_len)
    v = full(u2).reshape(2, seq_len, 3, cap_dim)
    for k in range(1, seq_len):
        torch.testing.assert_close(v[:, k], torch.roll(v[:, 0], shifts=k, dims=-1))
    # a shorter window does not have this property
    short = Topography.capsules(3, cap_dim, 3, seq_len, "shifting", 3)
    v = short(u2).reshape(2, seq_len, 3, cap_dim)
    assert not torch.allclose(v[:, 1], torch.roll(v[:, 0], shifts=1, dims=-1))


# -- ring and torus ---------------------------------------------------------------------------

@pytest.mark.parametrize("size,window", [(1, 1), (5, 3), (7, 7), (324, 5), (10, 9)])
def test_ring_matches_loops(size, window):
    topo = Topography.ring(size, window)
    expected = reference_ring(size, window)
    torch.testing.assert_close(topo.dense_matrix(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("height,width,window", [(18, 18, 5), (4, 6, 3), (5, 3, 3), (3, 3, 3),
                                                 (6, 5, 1)])
def test_torus_matches_loops(height, width, window):
    topo = Topography.torus(height, width, window)
    expected = reference_torus(height, width, window)
    torch.testing.assert_close(topo.dense_matrix(), expected, rtol=0, atol=0)
    x = torch.rand(4, 2, height * width, dtype=torch.float64)
    torch.testing.assert_close(topo(x), x @ expected.T)


def test_gradient_is_transpose_application():
    topo = Topography.capsules(2, 6, 3, 6, "shifting", 4)
    x = torch.rand(3, 6, 12, dtype=torch.float64, requires_grad=True)
    g = torch.rand(3, 6, 12, dtype=torch.float64)
    (topo(x) * g).sum().backward()
    w = topo.dense_matrix()
    torch.testing.assert_close(x.grad, (g.reshape(3, -1) @ w).reshape(x.shape))


# -- property test ----------------------------------------------------------------------------

@st.composite
def capsule_configs(draw):
    cap_dim = draw(st.integers(1, 7))
    window = draw(st.sampled_from([k for k in (1, 3, 5, 7) if k <= cap_dim]))
    seq_len = draw(st.integers(1, 7))
    coherence = draw(st.sampled_from(["none", "stationary", "shifting"]))
    time_window = 0 if coherence == "none" else draw(st.integers(0, seq_len))
    n_caps = draw(st.integers(1, 3))
    return n_caps, cap_dim, window, seq_len, coherence, time_window


@settings(max_examples=60, deadline=None)
@given(capsule_configs(), st.integers(1, 3))
def test_property_capsules_equal_reference(config, batch):
    n_caps, cap_dim, window, seq_len, coherence, time_window = config
    topo = Topography.capsules(n_caps, cap_dim, window, seq_len, coherence, time_window)
    expected = reference_capsules(n_caps, cap_dim, window, seq_len, coherence, time_window)
    x = torch.rand(batch, seq_len, n_caps * cap_dim, dtype=torch.float64)
    torch.testing.assert_close(topo(x), (x.reshape(batch, -1) @ expected.T).reshape(x.shape))
    # W has 0/1 entries and odd windows make it symmetric (even time windows do not)
    w = topo.dense_matrix()
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    if time_window % 2 == 1 or time_window == 0:
        torch.testing.assert_close(w, w.T)


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(n_caps=2, cap_dim=6, window=2), "window"),
        (dict(n_caps=2, cap_dim=3, window=5), "window"),
        (dict(n_caps=0, cap_dim=3, window=1), "n_caps"),
        (dict(n_caps=2, cap_dim=-1, window=1), "cap_dim"),
        (dict(n_caps=2, cap_dim=3, window=1, seq_len=0), "seq_len"),
        (dict(n_caps=2, cap_dim=3, window=1, seq_len=4, coherence="shifting", time_window=5),
         "time_window"),
        (dict(n_caps=2, cap_dim=3, window=1, seq_len=4, coherence="none", time_window=3),
         "time_window"),
        (dict(n_caps=2, cap_dim=3, window=1, seq_len=4, coherence="rolling", time_window=3),
         "coherence"),
        (dict(n_caps=2, cap_dim=3, window=1, seq_len=4, coherence="shifting", time_window=-1),
         "time_window"),
    ],
)
def test_bad_capsule_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Topography("capsules", **kwargs)


def test_bad_ring_torus_arguments_and_shapes():
    with pytest.raises(ValueError, match="window"):
        Topography.ring(6, 4)
    with pytest.raises(ValueError, match="window"):
        Topography.ring(3, 5)
    with pytest.raises(ValueError, match="size"):
        Topography.ring(0, 1)
    with pytest.raises(ValueError, match="window"):
        Topography.torus(4, 2, 3)
    with pytest.raises(ValueError, match="kind"):
        Topography("sphere")
    topo = Topography.capsules(2, 3, 3, 4, "shifting", 2)
    with pytest.raises(ValueError, match="squares"):
        topo(torch.rand(5, 6))
    with pytest.raises(ValueError, match="squares"):
        topo(torch.rand(2, 3, 6))
    with pytest.raises(ValueError, match="squares"):
        topo([1.0])
    with pytest.raises(ValueError, match="dense_matrix"):
        Topography.capsules(18, 36, 3, 18, "shifting", 13).dense_matrix()
