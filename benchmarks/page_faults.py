"""A/B of glibc's default handling of freed memory against :func:`topovae.memory.keep_freed_memory`.

Builds the ``topovae bench`` model (the paper's MNIST configuration, 8 sequences of 18 frames),
and in one process alternates ``--repeats`` times between glibc's default thresholds (freed
memory goes back to the kernel; ``malloc_trim`` at each switch) and the ones ``topovae train``
sets, timing ``--steps`` isolated float32 and ``bf16-mixed`` training steps in each, in process
CPU time (less sensitive than wall time to other load on a shared machine), with the minor page
faults per step. Prints one JSON object with every repeat and the medians.

    PYTHONPATH=src python benchmarks/page_faults.py [--steps 10] [--repeats 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import statistics
import time

import torch

from topovae.bench import BATCH_SEQUENCES, CAP_DIM, INPUT_SHAPE, N_CAPS, SEQ_LEN
from topovae.memory import MMAP_THRESHOLD, TRIM_THRESHOLD
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.training.optim import make_optimizer

GLIBC_DEFAULT = 128 << 10  # the initial mmap and trim thresholds of glibc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    config = TVAEConfig(input_shape=INPUT_SHAPE, n_caps=N_CAPS, cap_dim=CAP_DIM, seq_len=SEQ_LEN,
                        coherence="shifting", time_window=13, capsule_window=3)
    model = TVAE(config)
    optimiser = make_optimizer("adam", model.parameters(), lr=1e-4)
    x = torch.rand(BATCH_SEQUENCES, SEQ_LEN, *INPUT_SHAPE)

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        optimiser.step()

    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for keep in (False, True):
            mmap, trim = (MMAP_THRESHOLD, TRIM_THRESHOLD) if keep else (GLIBC_DEFAULT,) * 2
            libc.mallopt(-3, mmap)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, trim)  # M_TRIM_THRESHOLD
            if not keep:
                libc.malloc_trim(0)
            for bf16 in (False, True):
                for _ in range(3):
                    step(bf16)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                started = time.process_time()
                for _ in range(args.steps):
                    step(bf16)
                cpu_ms = (time.process_time() - started) / args.steps * 1e3
                faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
                name = ("kept" if keep else "glibc default") + (" bf16-mixed" if bf16
                                                                else " float32")
                runs.setdefault(name, []).append({"cpu_ms": round(cpu_ms, 1),
                                                  "minor_faults": round(faults)})
    medians = {name: {"cpu_ms": statistics.median(r["cpu_ms"] for r in rs),
                      "minor_faults": statistics.median(r["minor_faults"] for r in rs)}
               for name, rs in runs.items()}
    print(json.dumps({"threads": args.threads, "steps": args.steps, "repeats": runs,
                      "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
