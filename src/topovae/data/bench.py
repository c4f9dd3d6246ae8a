"""Speed of the data pipeline: time to generate one training batch of the MNIST protocol.

The paper's MNIST training batch is 8 sequences x 18 frames x 3x28x28. Data generation should cost
a small fraction of a training step (target: at most 10%); ``topovae bench`` reports it beside
the step time.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from .download import MNIST_FILES, locate_files
from .loaders import SequenceLoader
from .sequences import build_sequences
from .sources import IDX_SPLITS, ImageSource, load_idx_pair, tensor_source


def _bench_source() -> tuple[ImageSource, str]:
    """The official MNIST test images if found ($TOPOVAE_DATA or the user cache; never
    downloaded), else random uint8 images of the same shape."""
    names = list(IDX_SPLITS["test"])
    try:
        paths = locate_files(MNIST_FILES, names, download=False)
        images, labels = load_idx_pair(paths[names[0]], paths[names[1]])
        source = tensor_source(torch.from_numpy(images), torch.from_numpy(labels), name="mnist")
        return source, f"MNIST test images from {paths[names[0]]}"
    except ValueError:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(10000, 28, 28), dtype=np.uint8)
        return tensor_source(
            torch.from_numpy(images)
        ), "random uint8 28x28 images (MNIST not found)"


def data_batch_timing(repeats: int = 20, batch_size: int = 8, seq_len: int = 18) -> dict[str, Any]:
    """Median and spread of the milliseconds to generate one training batch (after one warm-up),
    with the images used (``source``) and the batch shape."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    source, description = _bench_source()
    loader = SequenceLoader(
        source,
        np.arange(len(source)),
        build_sequences("single_factor", seq_len=seq_len),
        batch_size=batch_size,
        seed=0,
    )
    batch = loader.batch(0, 0)  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        batch = loader.batch(0, (i + 1) % len(loader))
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "ms": statistics.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "repeats": repeats,
        "batch_shape": list(batch["x"].shape),
        "torch_threads": torch.get_num_threads(),
        "generation_threads": loader.threads,
        "source": description,
    }


def time_data_batch(repeats: int = 20) -> float:
    """Median milliseconds to generate one MNIST-protocol training batch (8 x 18 x 3x28x28)."""
    return float(data_batch_timing(repeats)["ms"])
