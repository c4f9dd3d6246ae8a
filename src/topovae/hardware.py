"""What the processor offers: a description for summaries and whether bfloat16 pays off."""

from __future__ import annotations

import functools
import os
import platform

__all__ = ["cpu_flags", "cpu_name", "cpu_model", "has_bf16_matrix_units", "bf16_advice"]


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


def has_bf16_matrix_units() -> bool:
    """True where the CPU has bfloat16 matrix units (Intel AMX ``amx_bf16``).

    Without them, oneDNN emulates bfloat16 matrix multiplies with float32 arithmetic plus
    conversions, and bfloat16 training is slower than float32 on a CPU.
    """
    return "amx_bf16" in cpu_flags()


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
    return ("note: this CPU has no bfloat16 matrix units (AMX); bf16-mixed will be slower than "
            "32-true here (a step took 13x as long on a 2-core AMD EPYC)")
