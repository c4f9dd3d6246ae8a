"""The topography ``W`` of a Topographic VAE and its fast application ``v = W (u ∘ u)``.

``W`` is a fixed 0/1 matrix that says which squared gating variables ``u²`` each latent unit pools
into its variance ``v``; ``t = (z + mu) / sqrt(v + eps)`` then makes neighbouring units co-activate.
One :class:`Topography` object covers every coupling of the paper:

``ring``
    one circular ring of ``size`` units; unit ``i`` pools units ``i + γ`` (mod ``size``) for
    ``γ`` in ``[-(K-1)/2, (K-1)/2]``.
``torus``
    a ``height x width`` grid (units in row-major order) with circular boundaries; unit ``(i, j)``
    pools ``(i + a, j + b)`` for ``a, b`` in ``[-(K-1)/2, (K-1)/2]`` (a ``K x K`` neighbourhood).
``capsules``
    a sequence of ``seq_len`` frames, each frame ``n_caps`` capsules of ``cap_dim`` units, each
    capsule a ring. With capsule window ``K`` (odd, ``γ`` in ``[-(K-1)/2, (K-1)/2]``) and time
    offsets ``δ`` from the time window ``L`` (below), unit ``c`` of capsule ``n`` at frame ``s``
    pools, within the same capsule ``n``:

    * ``coherence="none"`` (or ``L = 0``): units ``c + γ`` of its own frame ``s`` only;
    * ``"stationary"`` (BubbleVAE): units ``c + γ`` of frames ``s + δ``;
    * ``"shifting"`` (TVAE): units ``c + δ + γ`` of frame ``s + δ``: the window moves one unit along
      the capsule per frame.

    Time (mod ``seq_len``) and capsule position (mod ``cap_dim``) are circular. Every unit pools
    itself (``δ = γ = 0`` is always in the window).

Time window convention (same as the authors' code, which pads circularly by ``L // 2`` after the
current frame and ``(L - 1) // 2`` before it): a window of length ``L >= 1`` covers the offsets
``δ = -((L - 1) // 2), ..., L // 2``. It is centred for odd ``L`` (``L = 13``: ``-6..6``); an even
``L`` takes one more frame *after* the current one (``L = 18``: ``-8..9``; ``L = 10``: ``-4..5``).
``L = 0`` and ``L = 1`` both mean no temporal coupling.

Shift direction: because unit ``c`` at frame ``s`` is pooled with unit ``c + δ`` at frame
``s + δ``, ``v`` (and the ideal code ``t``) is equivariant under
``t[:, s + k] == torch.roll(t[:, s], shifts=k, dims=-1)``, the convention of the whole project.
The authors' ``ConvTranspose3d`` kernel yields the same direction.

One deliberate difference from the authors' code: their shifting kernel is an ``L x L`` band
matrix ``|i - j| <= (K - 1)/2`` over (time offset, capsule offset), which clips the capsule window
at the two extreme time offsets (for ``L = 13, K = 3`` it has 37 entries instead of 39). Here the
full ``K``-unit window is used at every time offset, exactly as the definition above says.

Implementation: ``W`` is never materialised (for the paper's MNIST setting it would be
5832 x 5832 per sequence). Rings and tori are applied as separable circular window sums along each
axis: slicing, ``index_select`` and additions. For capsules ``W`` is block-diagonal: every capsule
has the same ``(S * cap_dim) x (S * cap_dim)`` block over (frame, unit) (``cap_dim x cap_dim`` over
the units of one frame without temporal coupling). When that block has at most
``_BLOCK_LIMIT`` rows (324 for the paper's MNIST setting) it is built once per device and dtype,
exactly (0/1 entries, from the window sums), and applied to all capsules as one float32 matrix
multiply (outside any autocast), forward and backward: several times faster on a CPU than the
window sums' many small copies, and the same numbers up to the order of the additions (all terms
are non-negative, so ``v`` is never negative). Larger blocks use the window sums, and for
shifting coherence a sum of ``L`` diagonally offset slices of a circularly padded tensor.
:meth:`Topography.dense_matrix` builds ``W`` explicitly for small sizes (tests, figures).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = ["Topography", "time_offsets", "window_offsets"]

Kind = Literal["ring", "torus", "capsules"]
Coherence = Literal["none", "stationary", "shifting"]
_DENSE_LIMIT = 8192
_BLOCK_LIMIT = 1024


def time_offsets(time_window: int) -> tuple[int, ...]:
    """Frame offsets ``δ`` covered by a time window of length ``time_window`` (see module doc)."""
    if time_window <= 1:
        return (0,)
    return tuple(range(-((time_window - 1) // 2), time_window // 2 + 1))


def window_offsets(window: int) -> tuple[int, ...]:
    """Offsets ``γ`` of a centred odd spatial window of ``window`` units."""
    half = (window - 1) // 2
    return tuple(range(-half, half + 1))


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_odd_window(name: str, window: int, size: int, size_name: str) -> None:
    _check_positive(name, window)
    if window % 2 == 0:
        raise ValueError(f"{name} must be odd (a centred neighbourhood), got {window}")
    if window > size:
        raise ValueError(f"{name}={window} is larger than {size_name}={size}")


def _circular_window_sum(x: torch.Tensor, dim: int, lo: int, hi: int) -> torch.Tensor:
    """``out[i] = sum_{o=lo..hi} x[(i + o) mod n]`` along ``dim``.

    Plain additions (no cumulative-sum differences), so the result is exact and never negative
    for non-negative ``x``: ``sqrt(v + eps)`` stays finite.
    """
    n = x.shape[dim]
    width = hi - lo + 1
    if width == 1 and lo == 0:
        return x
    if width == n:
        return x.sum(dim, keepdim=True).expand_as(x)
    index = torch.arange(lo, n + hi, device=x.device) % n
    padded = x.index_select(dim, index)
    out = padded.narrow(dim, 0, n) + padded.narrow(dim, 1, n)
    for k in range(2, width):
        out.add_(padded.narrow(dim, k, n))
    return out


def _diagonal_window_sum(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``out[s, :, c] = sum_{δ=lo..hi} x[(s + δ) mod S, :, (c + δ) mod C]`` over dims (-3, -1)."""
    seq_len, cap_dim = x.shape[-3], x.shape[-1]
    width = hi - lo + 1
    t_index = torch.arange(lo, seq_len + hi, device=x.device) % seq_len
    c_index = torch.arange(lo, cap_dim + hi, device=x.device) % cap_dim
    padded = x.index_select(-3, t_index).index_select(-1, c_index)

    def term(k: int) -> torch.Tensor:
        return padded.narrow(-3, k, seq_len).narrow(-1, k, cap_dim)

    if width == 1:
        return term(0)
    out = term(0) + term(1)
    for k in range(2, width):
        out.add_(term(k))
    return out


class Topography:
    """Fixed topographic coupling ``W``; calling it maps ``u²`` to ``v = W u²``.

    Build with :meth:`ring`, :meth:`torus` or :meth:`capsules` (or the keyword constructor).
    Inputs end with :attr:`event_shape`: ``(size,)`` for a ring, ``(height * width,)`` for a torus,
    ``(seq_len, n_caps * cap_dim)`` for capsules; any leading batch dimensions are allowed and the
    output has the input's shape. See the module docstring for the exact conventions.
    """

    def __init__(
        self,
        kind: Kind,
        *,
        size: int = 1,
        height: int = 1,
        width: int = 1,
        n_caps: int = 1,
        cap_dim: int = 1,
        seq_len: int = 1,
        coherence: Coherence = "none",
        time_window: int = 0,
        window: int = 1,
    ) -> None:
        if kind not in ("ring", "torus", "capsules"):
            raise ValueError(f"kind must be 'ring', 'torus' or 'capsules', got {kind!r}")
        self.kind = kind
        self.window = window
        self.coherence: Coherence = "none"
        self.time_window = 0
        self.seq_len = 1
        if kind == "ring":
            _check_positive("size", size)
            _check_odd_window("window", window, size, "size")
            self.event_shape: tuple[int, ...] = (size,)
        elif kind == "torus":
            _check_positive("height", height)
            _check_positive("width", width)
            _check_odd_window("window", window, min(height, width), "min(height, width)")
            self.height, self.width = height, width
            self.event_shape = (height * width,)
        else:
            _check_positive("n_caps", n_caps)
            _check_positive("cap_dim", cap_dim)
            _check_positive("seq_len", seq_len)
            _check_odd_window("window", window, cap_dim, "cap_dim")
            if coherence not in ("none", "stationary", "shifting"):
                raise ValueError(
                    f"coherence must be 'none', 'stationary' or 'shifting', got {coherence!r}"
                )
            if isinstance(time_window, bool) or not isinstance(time_window, int) or time_window < 0:
                raise ValueError(f"time_window must be a non-negative integer, got {time_window!r}")
            if time_window > seq_len:
                raise ValueError(f"time_window={time_window} is larger than seq_len={seq_len}")
            if coherence == "none" and time_window != 0:
                raise ValueError(
                    f"time_window={time_window} needs coherence 'stationary' or 'shifting' "
                    "(coherence 'none' has no temporal coupling; use time_window=0)"
                )
            self.n_caps, self.cap_dim, self.seq_len = n_caps, cap_dim, seq_len
            self.coherence = coherence
            self.time_window = time_window
            self.event_shape = (seq_len, n_caps * cap_dim)
        self._blocks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def ring(cls, size: int, window: int) -> Topography:
        """One circular ring of ``size`` units with a centred window of ``window`` (odd) units."""
        return cls("ring", size=size, window=window)

    @classmethod
    def torus(cls, height: int, width: int, window: int) -> Topography:
        """A ``height x width`` torus with a ``window x window`` (odd) neighbourhood."""
        return cls("torus", height=height, width=width, window=window)

    @classmethod
    def capsules(
        cls,
        n_caps: int,
        cap_dim: int,
        window: int,
        seq_len: int = 1,
        coherence: Coherence = "none",
        time_window: int = 0,
    ) -> Topography:
        """Capsule rings over a sequence of ``seq_len`` frames (see the module docstring)."""
        return cls("capsules", n_caps=n_caps, cap_dim=cap_dim, window=window, seq_len=seq_len,
                   coherence=coherence, time_window=time_window)

    # -- properties --------------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        """Number of coupled variables: the side of the square matrix ``W``."""
        return math.prod(self.event_shape)

    @property
    def time_offsets(self) -> tuple[int, ...]:
        """Frame offsets ``δ`` pooled by every unit (``(0,)`` without temporal coupling)."""
        return time_offsets(self.time_window)

    def __repr__(self) -> str:
        if self.kind == "ring":
            return f"Topography.ring(size={self.event_shape[0]}, window={self.window})"
        if self.kind == "torus":
            return (f"Topography.torus(height={self.height}, width={self.width}, "
                    f"window={self.window})")
        return (f"Topography.capsules(n_caps={self.n_caps}, cap_dim={self.cap_dim}, "
                f"window={self.window}, seq_len={self.seq_len}, coherence={self.coherence!r}, "
                f"time_window={self.time_window})")

    # -- application -------------------------------------------------------------------------
    def __call__(self, squares: torch.Tensor) -> torch.Tensor:
        """Return ``v = W squares`` for ``squares`` shaped ``(..., *event_shape)``."""
        if not isinstance(squares, torch.Tensor):
            raise ValueError(f"squares must be a torch.Tensor, got {type(squares).__name__}")
        k = len(self.event_shape)
        if squares.dim() < k or tuple(squares.shape[-k:]) != self.event_shape:
            raise ValueError(
                f"squares must be shaped (..., {', '.join(map(str, self.event_shape))}) for "
                f"{self!r}, got {tuple(squares.shape)}"
            )
        if self.kind == "capsules" and self._block_side() <= _BLOCK_LIMIT:
            return self._apply_block(squares)
        return self._window_sums(squares)

    def _window_sums(self, squares: torch.Tensor) -> torch.Tensor:
        half = (self.window - 1) // 2
        if self.kind == "ring":
            return _circular_window_sum(squares, -1, -half, half)
        if self.kind == "torus":
            grid = squares.unflatten(-1, (self.height, self.width))
            grid = _circular_window_sum(grid, -1, -half, half)
            grid = _circular_window_sum(grid, -2, -half, half)
            return grid.flatten(-2)
        caps = squares.unflatten(-1, (self.n_caps, self.cap_dim))
        caps = _circular_window_sum(caps, -1, -half, half)
        offsets = self.time_offsets
        if len(offsets) > 1:
            if self.coherence == "stationary":
                caps = _circular_window_sum(caps, -3, offsets[0], offsets[-1])
            else:
                caps = _diagonal_window_sum(caps, offsets[0], offsets[-1])
        return caps.reshape(squares.shape)

    # -- capsules as one matrix multiply ------------------------------------------------------
    def _coupled_in_time(self) -> bool:
        return len(self.time_offsets) > 1

    def _block_side(self) -> int:
        return self.seq_len * self.cap_dim if self._coupled_in_time() else self.cap_dim

    def _block(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The block ``B`` of one capsule, ``B[i, j] = W[j, i]`` (so that ``v = u² @ B``)."""
        block = self._blocks.get((device, dtype))
        if block is None:
            frames = self.seq_len if self._coupled_in_time() else 1
            one = Topography.capsules(1, self.cap_dim, self.window, frames,
                                      self.coherence if frames > 1 else "none",
                                      self.time_window if frames > 1 else 0)
            side = frames * self.cap_dim
            basis = torch.eye(side, dtype=dtype, device=device).reshape(side, frames,
                                                                        self.cap_dim)
            block = one._window_sums(basis).reshape(side, side)  # row i is W e_i
            self._blocks[(device, dtype)] = block
        return block

    def _apply_block(self, squares: torch.Tensor) -> torch.Tensor:
        seq_len, n_caps, cap_dim = self.seq_len, self.n_caps, self.cap_dim
        block = self._block(squares.device, squares.dtype)
        caps = squares.unflatten(-1, (n_caps, cap_dim))  # (..., S, n, C)
        with torch.autocast(squares.device.type, enabled=False):  # float32, not bfloat16
            if not self._coupled_in_time():
                return torch.matmul(caps, block).reshape(squares.shape)
            lead = squares.shape[:-2]
            rows = caps.transpose(-3, -2).reshape(*lead, n_caps, seq_len * cap_dim)
            out = torch.matmul(rows, block)
        return out.unflatten(-1, (seq_len, cap_dim)).transpose(-3, -2).reshape(squares.shape)

    def dense_matrix(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """``W`` as a dense ``(N, N)`` matrix: ``W @ squares.flatten() == self(squares).flatten()``.

        Only for small sizes (``N <= 8192``): meant for tests and pictures of the coupling.
        """
        n = self.num_units
        if n > _DENSE_LIMIT:
            raise ValueError(f"dense_matrix is for small topographies (N <= {_DENSE_LIMIT}), N={n}")
        basis = torch.eye(n, dtype=dtype, device=device).reshape(n, *self.event_shape)
        return self(basis).reshape(n, n).T.contiguous()
