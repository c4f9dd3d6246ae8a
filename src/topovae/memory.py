"""Keep freed memory in the process, so that a training step does not page-fault its tensors in.

glibc's ``malloc`` serves large blocks with ``mmap`` and gives freed memory back to the kernel
(``munmap``, or trimming the top of the heap) as soon as more than a threshold of it is free at
the top. A training step of the paper's MNIST model allocates and frees tens of megabytes of
activations and gradients (the first layer's weight gradient alone is 18 MB), so every step asks
the kernel for fresh pages, which are zero-filled and mapped one 4-KiB page at a time: 7,000 to
22,000 minor page faults a step, measured on a 2-core Intel Xeon with one torch thread. Keeping
freed memory removes them (none left after warm-up) and made the float32 step 15-20% and the
``bf16-mixed`` step about 25% cheaper in process CPU time on that machine
(``benchmarks/page_faults.py``). The price is that memory freed by the process stays with it,
up to ``trim_threshold`` above what is in use; a training process reaches its peak every step
anyway.

This is the job of ``mallopt(3)``; on other C libraries (macOS, musl) :func:`keep_freed_memory`
does nothing and says so in its return value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc accepts an mmap threshold of at most 32 MiB on 64-bit machines; blocks above it still
# come from mmap (none of a step's tensors is that large for the paper's models)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD,
                      trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Serve blocks below ``mmap_threshold`` from the heap and keep up to ``trim_threshold``
    bytes of freed heap; ``True`` when the C library took both settings (glibc), else ``False``.
    Process-wide and idempotent."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold))
