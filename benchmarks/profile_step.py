"""Where a training step's time goes: ``torch.profiler`` over isolated steps and the IS path.

Builds the ``topovae bench`` model (the paper's MNIST configuration, 8 sequences of 18 frames of
3 x 28 x 28), runs ``--steps`` training steps (forward, backward, fused Adam) in float32 and
under ``bf16-mixed`` and one 10-sample importance-sampling pass, each under ``torch.profiler``,
and prints the operations with the most self CPU time per step, plus the process CPU time per
step (``time.process_time``, less sensitive to other load on a shared machine than wall time).

``--ratios R`` instead measures, in process CPU time and interleaved ``R`` times (so that all see
the same load), the float32 and ``bf16-mixed`` steps, the importance sampler and their bounds (the
matrix multiplies of ``topovae bench``, and its Adam update), and prints the medians and the
ratios to the bounds as one JSON object.

    PYTHONPATH=src python benchmarks/profile_step.py [--steps 10] [--threads 1] [--top 15]
    PYTHONPATH=src python benchmarks/profile_step.py --ratios 7 [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from topovae.bench import (
    BATCH_SEQUENCES,
    CAP_DIM,
    INPUT_SHAPE,
    IS_SAMPLES,
    N_CAPS,
    SEQ_LEN,
    _make_adam_update,
    _make_is_matmul_pass,
    _make_matmul_pass,
)
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.training.optim import make_optimizer


def _table(prof: profile, per: int, top: int) -> str:
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) / 1000.0 / per
    lines = [f"  total self CPU {total:.1f} ms per call"]
    for event in rows[:top]:
        lines.append(f"  {event.key:<40} {event.self_cpu_time_total / 1000.0 / per:7.2f} ms "
                     f"{event.count / per:6.1f} calls")
    return "\n".join(lines)


def _cpu_ms(fn: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) * 1000.0 / n


def _ratios(cases: dict[str, Callable[[], object]], repeats: int, calls: int,
            threads: int) -> None:
    generator = torch.Generator().manual_seed(1)
    n_images = BATCH_SEQUENCES * SEQ_LEN
    from topovae.models.tvae import TVAE as _TVAE  # a separate model for the Adam-alone update

    bounds: dict[str, Callable[[], object]] = {
        "matmul": _make_matmul_pass(n_images, generator),
        "matmul_bf16": _make_matmul_pass(n_images, generator, torch.bfloat16),
        "adam": _make_adam_update(_TVAE(TVAEConfig(input_shape=INPUT_SHAPE)), generator),
        "is_matmul": _make_is_matmul_pass(n_images, IS_SAMPLES, generator),
    }
    every = {**cases, **bounds}
    for fn in every.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in every}
    for _ in range(repeats):
        for name, fn in every.items():
            samples[name].append(_cpu_ms(fn, calls))
    med = {name: statistics.median(v) for name, v in samples.items()}
    bound, bound_bf16 = med["matmul"] + med["adam"], med["matmul_bf16"] + med["adam"]
    step, step_bf16 = med["float32 step"], med["bf16-mixed step"]
    is_ms = med["importance sampling (10 samples)"]
    print(json.dumps({
        "threads": threads, "repeats": repeats, "calls_per_repeat": calls,
        "process_cpu_ms": {name: round(v, 2) for name, v in med.items()},
        "step_to_bound": step / bound, "step_bf16_to_bound_bf16": step_bf16 / bound_bf16,
        "is_to_is_matmul_bound": is_ms / med["is_matmul"],
    }, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--ratios", type=int, default=0, metavar="R",
                        help="measure step/bound ratios in process CPU time, R interleaved repeats")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    config = TVAEConfig(input_shape=INPUT_SHAPE, n_caps=N_CAPS, cap_dim=CAP_DIM, seq_len=SEQ_LEN,
                        coherence="shifting", time_window=13, capsule_window=3)
    model = TVAE(config)
    optimiser = make_optimizer("adam", model.parameters(), lr=1e-4)
    x = torch.rand(BATCH_SEQUENCES, SEQ_LEN, *INPUT_SHAPE, generator=torch.Generator()
                   .manual_seed(0))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()

    def is_pass() -> None:
        with torch.no_grad():
            model.log_likelihood(x, IS_SAMPLES)

    cases: dict[str, Callable[[], object]] = {
        "float32 step": lambda: step(False),
        "bf16-mixed step": lambda: step(True),
        "importance sampling (10 samples)": is_pass,
    }
    if args.ratios > 0:
        _ratios(cases, args.ratios, args.steps, args.threads)
        return
    for name, fn in cases.items():
        for _ in range(3):
            fn()
        cpu = _cpu_ms(fn, args.steps)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                fn()
        print(f"{name}: {cpu:.1f} ms process CPU per call ({args.threads} thread(s))")
        print(_table(prof, args.steps, args.top))


if __name__ == "__main__":
    main()
