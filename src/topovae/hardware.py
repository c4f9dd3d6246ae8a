"""What the processor offers: a description for summaries and whether bfloat16 pays off."""

from __future__ import annotations

import functools
import os
import platform

__all__ = ["cpu_flags", "cpu_name", "cpu_model", "bf16_matmul_instructions",
           "has_bf16_matrix_units", "bf16_advice"]

# The instruction sets with which oneDNN multiplies bfloat16 matrices natively, best first:
# Intel AMX tiles (Sapphire Rapids and later) and the AVX-512 BF16 dot products (AMD Zen 4/5,
# Intel Cooper Lake). Measured with 144x2048 @ 2048x2048 on 2 cores, torch 2.13: bfloat16 took
# 0.23x the float32 time on an AMD EPYC with avx512_bf16 (Zen 5); the model's multiplies took
# 0.46x on a Xeon with AMX and 13x on an AMD EPYC without either (conversions plus float32).
_BF16_MATMUL_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one (Linux), else ""."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """The CPU model name and the logical CPU count, as one string."""
    name = cpu_name() or platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} logical CPUs"


def bf16_matmul_instructions(flags: frozenset[str] | None = None) -> str | None:
    """The CPU flag of the best native bfloat16 matrix-multiply instructions, or None.

    ``flags`` defaults to this CPU's (:func:`cpu_flags`).
    """
    flags = cpu_flags() if flags is None else flags
    return next((flag for flag in _BF16_MATMUL_FLAGS if flag in flags), None)


def has_bf16_matrix_units(flags: frozenset[str] | None = None) -> bool:
    """True where the CPU multiplies bfloat16 matrices natively (AMX or AVX-512 BF16).

    Without either, oneDNN emulates bfloat16 matrix multiplies with float32 arithmetic plus
    conversions, and bfloat16 training is slower than float32 on a CPU.
    """
    return bf16_matmul_instructions(flags) is not None


def bf16_advice(precision: str, accelerator: str) -> str | None:
    """A one-line warning when ``precision`` asks for bfloat16 on a CPU that would run it slower."""
    if not precision.startswith("bf16") or accelerator not in ("cpu", "auto"):
        return None
    if accelerator == "auto":
        import torch

        if torch.cuda.is_available():
            return None
    if has_bf16_matrix_units():
        return None
    return ("note: this CPU has no bfloat16 matrix instructions (AMX or AVX-512 BF16); bf16-mixed "
            "will be slower than 32-true here (a step took 13x as long on a 2-core AMD EPYC)")
