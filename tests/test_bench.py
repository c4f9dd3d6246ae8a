"""topovae.bench: the budget of its timings."""

from __future__ import annotations

from topovae.bench import SLOW_BF16_LOOP_STEPS, SLOW_BF16_REPEATS, bf16_budget


def test_bf16_timings_are_short_only_where_bfloat16_is_slow() -> None:
    assert bf16_budget(30, 300, bf16_is_fast=True) == (30, 300)
    assert bf16_budget(30, 300, bf16_is_fast=False) == (SLOW_BF16_REPEATS, SLOW_BF16_LOOP_STEPS)
    # never more than asked for, and a skipped loop stays skipped
    assert bf16_budget(2, 0, bf16_is_fast=False) == (2, 0)
