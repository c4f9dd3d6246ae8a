"""``topovae bench``: how close a training step runs to the machine's matrix-multiply speed.

Measured in one run, on the paper's MNIST configuration (18 capsules x 18 units, S = 18, 8
sequences per batch = 144 images of 3 x 28 x 28, shifting coherence, time window 13, K = 3, MLP):

* ``train_step_ms``: forward, backward and an Adam step (fused update where available) of
  :class:`~topovae.models.tvae.TVAE`;
* ``matmul_bound_ms``: only the matrix multiplies of the same layers (two encoders
  ``2352 -> 972 -> 648 -> 648``, decoder ``324 -> 648 -> 972 -> 2352``, batch 144), forward and
  backward (input gradient and weight gradient, none for the images), with ``torch.mm``/``addmm``;
  ``step_to_bound_ratio`` is their quotient: everything else a step does (topography, losses,
  sampling, optimiser, autograd bookkeeping) costs ``ratio - 1`` of the matmul time;
* ``is_eval_speedup``: 10-sample importance sampling of the same batch, the vectorised estimator
  (encoder once, the 10 samples batched through topography and decoder) against the obvious loop
  (10 full passes of encoder + topography + decoder). The encoder runs once instead of 10 times,
  the decoder still runs 10 times, so the speed-up is bounded by
  ``10 (E + D) / (E + 10 D)`` for encoder/decoder costs ``E, D`` (about 2.6 for the paper's MLPs);
* ``peak_rss_mb``: peak resident memory of the process;
* ``data_ms_per_batch`` / ``data_to_step_ratio``: time to build one batch of sequences, from
  ``topovae.data.bench.time_data_batch`` when the data package provides it (else ``None``).

Timings are medians over ``repeats`` runs after warm-up; step and bound are measured interleaved
so that both see the same machine load.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["run_benchmark", "format_table", "matmul_bound_shapes"]

BATCH_SEQUENCES = 8
SEQ_LEN = 18
N_CAPS = CAP_DIM = 18
INPUT_SHAPE = (3, 28, 28)
IS_SAMPLES = 10


def matmul_bound_shapes(d: int = N_CAPS * CAP_DIM, pixels: int = math.prod(INPUT_SHAPE)
                        ) -> list[tuple[int, int, bool]]:
    """``(in_features, out_features, needs_input_grad)`` of every Linear layer of the model."""
    encoder = [(pixels, 3 * d, False), (3 * d, 2 * d, True), (2 * d, 2 * d, True)]
    decoder = [(d, 2 * d, True), (2 * d, 3 * d, True), (3 * d, pixels, True)]
    return encoder + encoder + decoder


def _machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def _make_matmul_pass(batch: int, generator: torch.Generator) -> Callable[[], None]:
    """One forward+backward of only the model's matrix multiplies (fresh outputs each time)."""
    layers = []
    for fan_in, fan_out, needs_input_grad in matmul_bound_shapes():
        x = torch.randn(batch, fan_in, generator=generator)
        w = torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in)
        b = torch.zeros(fan_out)
        g = torch.randn(batch, fan_out, generator=generator)
        layers.append((x, w, b, g, needs_input_grad))

    def run() -> None:
        for x, w, b, g, needs_input_grad in layers:
            torch.addmm(b, x, w.t())           # forward
            torch.mm(g.t(), x)                  # weight gradient
            if needs_input_grad:
                torch.mm(g, w)                  # input gradient

    return run


def _is_loop(model: Any, x: torch.Tensor, n_samples: int) -> torch.Tensor:
    """The obvious importance sampler: one full encoder+topography+decoder pass per sample."""
    from torch.nn import functional as F

    from topovae.models.tvae import _gaussian_logpdf_sum, _std_normal_logpdf_sum

    weights = []
    for _ in range(n_samples):
        post = model.encode(x)
        noise_z, noise_u = torch.randn_like(post.z_mean), torch.randn_like(post.u_mean)
        z = post.z_mean + torch.exp(0.5 * post.z_logvar) * noise_z
        u = post.u_mean + torch.exp(0.5 * post.u_logvar) * noise_u
        logits = model.decode(model.codes_from(z, u))
        log_w = (_std_normal_logpdf_sum(z, 2) - _gaussian_logpdf_sum(noise_z, post.z_logvar, 2)
                 + _std_normal_logpdf_sum(u, 2) - _gaussian_logpdf_sum(noise_u, post.u_logvar, 2)
                 - F.binary_cross_entropy_with_logits(logits, x, reduction="none")
                 .flatten(1).sum(-1))
        weights.append(log_w)
    log_w = torch.stack(weights)
    return (torch.logsumexp(log_w, 0) - math.log(n_samples)) / x.shape[1]


def _adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The trainer's Adam (fused update where this torch build supports it)."""
    from topovae.training.optim import make_optimizer

    return make_optimizer("adam", model.parameters(), lr=1e-4)


def _data_ms() -> float | None:
    try:
        from topovae.data.bench import time_data_batch
    except ImportError:
        return None
    return float(time_data_batch())


def run_benchmark(repeats: int = 30, progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run every measurement (see the module docstring) and return them as a dict."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats <= 0:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    from topovae.models.tvae import TVAE, TVAEConfig

    def say(message: str) -> None:
        if progress:
            print(message, flush=True)

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = TVAEConfig(input_shape=INPUT_SHAPE, n_caps=N_CAPS, cap_dim=CAP_DIM, seq_len=SEQ_LEN,
                        coherence="shifting", time_window=13, capsule_window=3)
    model = TVAE(config)
    optimiser = _adam(model)
    x = torch.rand(BATCH_SEQUENCES, SEQ_LEN, *INPUT_SHAPE, generator=generator)
    n_images = BATCH_SEQUENCES * SEQ_LEN

    def train_step() -> None:
        out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()

    matmul_pass = _make_matmul_pass(n_images, generator)
    say("warming up")
    for _ in range(3):
        train_step()
        matmul_pass()
    step_ms, bound_ms = [], []
    for i in range(repeats):
        step_ms.append(_timed(train_step))
        bound_ms.append(_timed(matmul_pass))
        if progress and (i + 1) % 10 == 0:
            say(f"  step/bound repeat {i + 1}/{repeats}")
    train_step_ms = statistics.median(step_ms)
    matmul_bound_ms = statistics.median(bound_ms)
    say(f"step {train_step_ms:.1f} ms, matmul bound {matmul_bound_ms:.1f} ms (medians)")

    say("importance sampling")
    model.eval()
    is_repeats = max(3, repeats // 5)
    with torch.no_grad():
        model.log_likelihood(x, IS_SAMPLES)
        _is_loop(model, x, IS_SAMPLES)
        vec_ms, loop_ms = [], []
        for _ in range(is_repeats):
            vec_ms.append(_timed(lambda: model.log_likelihood(x, IS_SAMPLES)))
            loop_ms.append(_timed(lambda: _is_loop(model, x, IS_SAMPLES)))
    is_vectorised_ms = statistics.median(vec_ms)
    is_loop_ms = statistics.median(loop_ms)

    say("data pipeline")
    data_ms = _data_ms()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "config": "MNIST TVAE: 18x18 capsules, S=18, 8 sequences/batch, 3x28x28, shifting L=13 "
                  "K=3, MLP, Adam",
        "repeats": repeats,
        "train_step_ms": train_step_ms,
        "matmul_bound_ms": matmul_bound_ms,
        "step_to_bound_ratio": train_step_ms / matmul_bound_ms,
        # minima are less sensitive to other processes sharing the cores
        "train_step_min_ms": min(step_ms),
        "matmul_bound_min_ms": min(bound_ms),
        "step_to_bound_ratio_of_minima": min(step_ms) / min(bound_ms),
        "is_samples": IS_SAMPLES,
        "is_vectorised_ms": is_vectorised_ms,
        "is_loop_ms": is_loop_ms,
        "is_eval_speedup": is_loop_ms / is_vectorised_ms,
        "peak_rss_mb": peak_rss_mb,
        "data_ms_per_batch": data_ms,
        "data_to_step_ratio": None if data_ms is None else data_ms / train_step_ms,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "machine": _machine(),
    }


def format_table(result: dict[str, Any]) -> str:
    """Two-column plain-text table of a :func:`run_benchmark` result."""
    def fmt(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    width = max(len(k) for k in result)
    return "\n".join(f"{key:<{width}}  {fmt(value)}" for key, value in result.items())
