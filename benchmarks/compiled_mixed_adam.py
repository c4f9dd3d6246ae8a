"""How much a ``bf16-mixed`` step could save with an Adam update that reads bfloat16 gradients
and writes the bfloat16 weight copies itself (not used by ``topovae train``; see
docs/performance.md, "Not reached yet").

Today a ``bf16-mixed`` step converts the bfloat16 weight gradients to float32 (in backward),
runs torch's fused Adam on float32 weights, gradients and moments, and refreshes the bfloat16
weight copies from the float32 weights: three passes over the 9.8 M weights of the paper's MNIST
MLPs. This script times that against one ``torch.compile``-d function doing the same Adam
arithmetic in a single pass per tensor (bfloat16 gradient in, float32 weight and moments
updated, bfloat16 copy out), on tensors of the model's weight shapes, in one run, and prints
the compile time and both medians as JSON.

    PYTHONPATH=src python benchmarks/compiled_mixed_adam.py [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from topovae.bench import CAP_DIM, INPUT_SHAPE, N_CAPS
from topovae.models.tvae import TVAE, TVAEConfig

BETA1, BETA2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


def mixed_adam(params: list[torch.Tensor], grads: list[torch.Tensor],
               exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor],
               copies: list[torch.Tensor], bias1: torch.Tensor, bias2: torch.Tensor) -> None:
    for p, g, m, v, c in zip(params, grads, exp_avgs, exp_avg_sqs, copies, strict=True):
        g = g.float()
        m.lerp_(g, 1 - BETA1)
        v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
        p.sub_(LR / bias1 * m / ((v / bias2).sqrt() + EPS))
        c.copy_(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = TVAE(TVAEConfig(input_shape=INPUT_SHAPE, n_caps=N_CAPS, cap_dim=CAP_DIM, seq_len=18,
                            coherence="shifting", time_window=13, capsule_window=3))
    weights = [p.detach().clone() for p in model.parameters() if p.dim() == 2]
    grads = [(torch.randn_like(w) * 1e-3).bfloat16() for w in weights]
    exp_avgs = [torch.zeros_like(w) for w in weights]
    exp_avg_sqs = [torch.zeros_like(w) for w in weights]
    copies = [w.bfloat16() for w in weights]
    steps = [torch.tensor(0.0) for _ in weights]
    count = [0]

    def today() -> None:
        as_float = [g.float() for g in grads]  # autograd's cast of the bfloat16 gradients
        torch._fused_adam_(weights, as_float, exp_avgs, exp_avg_sqs, [], steps, lr=LR,
                           beta1=BETA1, beta2=BETA2, weight_decay=0.0, eps=EPS, amsgrad=False,
                           maximize=False)
        for c, w in zip(copies, weights, strict=True):
            c.copy_(w)  # the refresh of the bfloat16 copies

    compiled = torch.compile(mixed_adam, fullgraph=True, dynamic=False)

    def one_pass() -> None:
        count[0] += 1
        compiled(weights, grads, exp_avgs, exp_avg_sqs, copies,
                 torch.tensor(1 - BETA1 ** count[0]), torch.tensor(1 - BETA2 ** count[0]))

    started = time.perf_counter()
    one_pass()
    compile_s = time.perf_counter() - started

    def median_ms(fn: Callable[[], None]) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    print(json.dumps({
        "threads": args.threads, "weights": sum(w.numel() for w in weights),
        "compile_s": round(compile_s, 1),
        "cast_fused_adam_refresh_ms": round(median_ms(today), 2),
        "compiled_single_pass_ms": round(median_ms(one_pass), 2),
    }, indent=2))


if __name__ == "__main__":
    main()
