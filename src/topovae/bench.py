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

What users wait for is the training loop, not an isolated step:

* ``loop_step_ms``: the real ``topovae train`` loop (:func:`topovae.training.fit` on the
  ``tvae-demo`` preset, with its logging, validation and periodic checkpoints), the mean time per
  step over ``loop_steps`` steps after warm-up (:mod:`topovae.training.loop_timing`), or over
  one checkpoint interval where that is longer, so that a periodic checkpoint and evaluation
  are in the mean (``loop_checkpoints_timed``); ``loop_step_median_ms`` is the median step of
  the same window, which leaves them out;
* ``adam_ms``: the optimiser update alone (fused Adam over the model's 9.8 M parameters);
* ``bound_ms = matmul_bound_ms + adam_ms``: the step's physical limit in float32, the quantity
  ``loop_to_bound_ratio`` and ``step_to_full_bound_ratio`` divide by;
* ``matmul_bound_bf16_ms`` / ``bound_bf16_ms``: the same matrix multiplies in bfloat16 (plus the
  float32 Adam update of the master weights), the limit of ``bf16-mixed`` training;
  ``train_step_bf16_ms`` and ``loop_step_bf16_ms`` are the step and loop under ``bf16-mixed``;
* ``is_matmul_bound_ms``: the importance sampler's matrix multiplies (encoders once, decoder once
  per sample, forward only): ``is_to_bound_ratio`` says how close the estimator runs to it;
* ``has_bf16_matrix_units``: whether the CPU multiplies bfloat16 natively (AMX or AVX-512 BF16;
  without either bfloat16 is slower on a CPU), ``bf16_matmul_instructions``: which.
  Without them (and not on CUDA) the bfloat16 timings are informative only, and slow: a
  ``bf16-mixed`` step then takes about 13x a float32 one (AMD EPYC), so they use at most
  ``SLOW_BF16_REPEATS`` repeats and ``SLOW_BF16_LOOP_STEPS`` loop steps
  (``bf16_repeats``, ``loop_timed_steps_bf16``) instead of minutes of waiting.
* ``keeps_freed_memory``: whether freed memory stays in the process (``topovae.memory``; glibc).

Timings are medians over ``repeats`` runs after warm-up; step and bounds are measured interleaved
so that all see the same machine load. All ratios of one result come from one run.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["run_benchmark", "format_table", "matmul_bound_shapes", "bf16_budget"]

BATCH_SEQUENCES = 8
SEQ_LEN = 18
N_CAPS = CAP_DIM = 18
INPUT_SHAPE = (3, 28, 28)
IS_SAMPLES = 10
# the bfloat16 timings' budget where bfloat16 has no matrix units (see the module docstring)
SLOW_BF16_REPEATS = 5
SLOW_BF16_LOOP_STEPS = 30
_BF16_TIMINGS = ("step_bf16", "matmul_bf16")


def matmul_bound_shapes(d: int = N_CAPS * CAP_DIM, pixels: int = math.prod(INPUT_SHAPE)
                        ) -> list[tuple[int, int, bool]]:
    """``(in_features, out_features, needs_input_grad)`` of every Linear layer of the model."""
    encoder = [(pixels, 3 * d, False), (3 * d, 2 * d, True), (2 * d, 2 * d, True)]
    decoder = [(d, 2 * d, True), (2 * d, 3 * d, True), (3 * d, pixels, True)]
    return encoder + encoder + decoder


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any]) -> float:
    # a CUDA kernel launch returns before the kernel ends: wait for it on both sides
    _synchronize()
    start = time.perf_counter()
    fn()
    _synchronize()
    return (time.perf_counter() - start) * 1000.0


def _make_matmul_pass(batch: int, generator: torch.Generator,
                      dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> Callable[[], None]:
    """One forward+backward of only the model's matrix multiplies (fresh outputs each time)."""
    layers = []
    for fan_in, fan_out, needs_input_grad in matmul_bound_shapes():
        x = torch.randn(batch, fan_in, generator=generator).to(device, dtype)
        w = (torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in)).to(device,
                                                                                       dtype)
        b = torch.zeros(fan_out, dtype=dtype, device=device)
        g = torch.randn(batch, fan_out, generator=generator).to(device, dtype)
        layers.append((x, w, b, g, needs_input_grad))

    def run() -> None:
        for x, w, b, g, needs_input_grad in layers:
            torch.addmm(b, x, w.t())           # forward
            torch.mm(g.t(), x)                  # weight gradient
            if needs_input_grad:
                torch.mm(g, w)                  # input gradient

    return run


def _make_is_matmul_pass(batch: int, n_samples: int, generator: torch.Generator,
                         device: torch.device | str = "cpu") -> Callable[[], None]:
    """The importance sampler's matrix multiplies: both encoders once, the decoder per sample."""
    shapes = matmul_bound_shapes()
    encoder, decoder = shapes[:6], shapes[6:]
    layers = []
    for (fan_in, fan_out, _), rows in ([(s, batch) for s in encoder]
                                       + [(s, batch * n_samples) for s in decoder]):
        x = torch.randn(rows, fan_in, generator=generator).to(device)
        w = (torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in)).to(device)
        layers.append((x, w, torch.zeros(fan_out, device=device)))

    def run() -> None:
        for x, w, b in layers:
            torch.addmm(b, x, w.t())

    return run


def _make_adam_update(model: torch.nn.Module, generator: torch.Generator) -> Callable[[], None]:
    """The optimiser update alone, on gradients of the model's shapes."""
    params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=generator) * 1e-3).to(p.device)
    optimiser = _adam_for(params)
    return optimiser.step


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
    return _adam_for(list(model.parameters()))


def _adam_for(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    from topovae.training.optim import make_optimizer

    return make_optimizer("adam", params, lr=1e-4)


def _data_ms() -> float:
    from topovae.data.bench import time_data_batch

    return float(time_data_batch())


def bf16_budget(repeats: int, loop_steps: int, bf16_is_fast: bool) -> tuple[int, int]:
    """The repeats and loop steps of the bfloat16 timings: all of them where bfloat16 runs on
    matrix units (or a GPU), at most ``SLOW_BF16_REPEATS`` / ``SLOW_BF16_LOOP_STEPS`` elsewhere."""
    if bf16_is_fast:
        return repeats, loop_steps
    return min(repeats, SLOW_BF16_REPEATS), min(loop_steps, SLOW_BF16_LOOP_STEPS)


def run_benchmark(repeats: int = 30, progress: bool = False, seed: int = 0,
                  loop_steps: int = 300, loop_overrides: dict[str, Any] | None = None,
                  device: str = "cpu") -> dict[str, Any]:
    """Run every measurement (see the module docstring) and return them as a dict.

    ``loop_steps = 0`` skips the two training-loop timings (float32 and ``bf16-mixed``);
    ``loop_overrides`` (dotted config paths) go to the loop's preset, e.g. another data source.
    ``device`` is where everything runs (``"cuda"`` on a GPU machine; the loop then trains with
    ``train.accelerator=gpu``).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats <= 0:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(loop_steps, bool) or not isinstance(loop_steps, int) or loop_steps < 0:
        raise ValueError(f"loop_steps must be a non-negative integer, got {loop_steps!r}")
    from topovae.hardware import bf16_matmul_instructions, cpu_model, has_bf16_matrix_units
    from topovae.memory import keep_freed_memory
    from topovae.models.tvae import TVAE, TVAEConfig

    keeps_freed_memory = keep_freed_memory()  # as `topovae train` does, before anything is timed
    bf16_repeats, bf16_loop_steps = bf16_budget(repeats, loop_steps,
                                                device != "cpu" or has_bf16_matrix_units())

    def say(message: str) -> None:
        if progress:
            print(message, flush=True)

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = TVAEConfig(input_shape=INPUT_SHAPE, n_caps=N_CAPS, cap_dim=CAP_DIM, seq_len=SEQ_LEN,
                        coherence="shifting", time_window=13, capsule_window=3)
    dev = torch.device(device)
    model = TVAE(config).to(dev)
    optimiser = _adam(model)
    x = torch.rand(BATCH_SEQUENCES, SEQ_LEN, *INPUT_SHAPE, generator=generator).to(dev)
    n_images = BATCH_SEQUENCES * SEQ_LEN

    def train_step() -> None:
        out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()

    def train_step_bf16() -> None:
        # what Lightning's "bf16-mixed" does on a CPU: the forward under bfloat16 autocast
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()

    timed_fns = {
        "step": train_step,
        "step_bf16": train_step_bf16,
        "matmul": _make_matmul_pass(n_images, generator, device=dev),
        "matmul_bf16": _make_matmul_pass(n_images, generator, torch.bfloat16, dev),
        "adam": _make_adam_update(model, generator),
    }
    say("warming up")
    for _ in range(3):
        for fn in timed_fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in timed_fns}
    for i in range(repeats):
        for name, fn in timed_fns.items():
            if name in _BF16_TIMINGS and i >= bf16_repeats:
                continue
            samples[name].append(_timed(fn))
        if progress and (i + 1) % 10 == 0:
            say(f"  step/bound repeat {i + 1}/{repeats}")
    med = {name: statistics.median(values) for name, values in samples.items()}
    train_step_ms, matmul_bound_ms = med["step"], med["matmul"]
    step_ms, bound_ms = samples["step"], samples["matmul"]
    say(f"step {train_step_ms:.1f} ms, matmul bound {matmul_bound_ms:.1f} ms (medians)")

    say("importance sampling")
    model.eval()
    is_repeats = max(3, repeats // 5)
    is_bound = _make_is_matmul_pass(n_images, IS_SAMPLES, generator, dev)
    with torch.no_grad():
        model.log_likelihood(x, IS_SAMPLES)
        _is_loop(model, x, IS_SAMPLES)
        is_bound()
        vec_ms, loop_ms, is_bound_ms = [], [], []
        for _ in range(is_repeats):
            vec_ms.append(_timed(lambda: model.log_likelihood(x, IS_SAMPLES)))
            loop_ms.append(_timed(lambda: _is_loop(model, x, IS_SAMPLES)))
            is_bound_ms.append(_timed(is_bound))
    is_vectorised_ms = statistics.median(vec_ms)
    is_loop_ms = statistics.median(loop_ms)
    is_matmul_bound_ms = statistics.median(is_bound_ms)

    loop: dict[str, Any] = {}
    if loop_steps > 0:
        from topovae.training.loop_timing import time_training_loop

        for precision, suffix, steps in (("32-true", "", loop_steps),
                                         ("bf16-mixed", "_bf16", bf16_loop_steps)):
            say(f"training loop ({precision}, {steps} steps after warm-up)")
            overrides = dict(loop_overrides or {})
            if dev.type == "cuda":
                overrides.setdefault("train.accelerator", "gpu")
            # the window holds whole checkpoint and evaluation intervals, except for the few
            # steps of bfloat16 where the processor has no bfloat16 matrix units
            whole = precision == "32-true" or steps == loop_steps
            timing = time_training_loop("tvae-demo", steps=steps, precision=precision,
                                        seed=seed, overrides=overrides, whole_intervals=whole)
            loop[f"loop_step{suffix}_ms"] = timing["loop_step_ms"]
            loop[f"loop_step_median{suffix}_ms"] = timing["loop_step_median_ms"]
            loop[f"loop_timed_steps{suffix}"] = timing["loop_timed_steps"]
            loop[f"loop_checkpoints_timed{suffix}"] = timing["checkpoints_timed"]
    bound = matmul_bound_ms + med["adam"]
    bound_bf16 = med["matmul_bf16"] + med["adam"]

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
        "adam_ms": med["adam"],
        "bound_ms": bound,
        "step_to_full_bound_ratio": train_step_ms / bound,
        "loop_step_ms": loop.get("loop_step_ms"),
        "loop_to_bound_ratio": (loop["loop_step_ms"] / bound) if loop else None,
        "matmul_bound_bf16_ms": med["matmul_bf16"],
        "bound_bf16_ms": bound_bf16,
        "train_step_bf16_ms": med["step_bf16"],
        "step_bf16_to_bound_bf16_ratio": med["step_bf16"] / bound_bf16,
        "loop_step_bf16_ms": loop.get("loop_step_bf16_ms"),
        "loop_bf16_to_bound_bf16_ratio": (loop["loop_step_bf16_ms"] / bound_bf16) if loop
        else None,
        # the median step leaves out the checkpoints and evaluations that the mean holds
        "loop_step_median_ms": loop.get("loop_step_median_ms"),
        "loop_step_median_bf16_ms": loop.get("loop_step_median_bf16_ms"),
        "loop_timed_steps": loop.get("loop_timed_steps"),
        "loop_timed_steps_bf16": loop.get("loop_timed_steps_bf16"),
        "loop_checkpoints_timed": loop.get("loop_checkpoints_timed"),
        "loop_checkpoints_timed_bf16": loop.get("loop_checkpoints_timed_bf16"),
        "bf16_repeats": bf16_repeats,
        "has_bf16_matrix_units": has_bf16_matrix_units(),
        "bf16_matmul_instructions": bf16_matmul_instructions(),
        "keeps_freed_memory": keeps_freed_memory,
        # minima are less sensitive to other processes sharing the cores
        "train_step_min_ms": min(step_ms),
        "matmul_bound_min_ms": min(bound_ms),
        "step_to_bound_ratio_of_minima": min(step_ms) / min(bound_ms),
        "is_samples": IS_SAMPLES,
        "is_vectorised_ms": is_vectorised_ms,
        "is_loop_ms": is_loop_ms,
        "is_eval_speedup": is_loop_ms / is_vectorised_ms,
        "is_matmul_bound_ms": is_matmul_bound_ms,
        "is_to_bound_ratio": is_vectorised_ms / is_matmul_bound_ms,
        "peak_rss_mb": peak_rss_mb,
        "data_ms_per_batch": data_ms,
        "data_to_step_ratio": None if data_ms is None else data_ms / train_step_ms,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "machine": cpu_model(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
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
