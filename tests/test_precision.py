"""bfloat16 mixed precision: float32 where the numerics need it, same objective, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_training import run_cli, train_args
from topovae.hardware import bf16_advice, bf16_matmul_instructions, has_bf16_matrix_units
from topovae.models.baselines import BetaVAE, BetaVAEConfig
from topovae.models.tvae import TVAE, TVAEConfig
from topovae.training.loop_timing import time_training_loop


def _tvae() -> TVAE:
    torch.manual_seed(0)
    return TVAE(TVAEConfig(input_shape=(3, 12, 12), n_caps=3, cap_dim=6, seq_len=6,
                           coherence="shifting", time_window=4, capsule_window=3))


def test_bf16_autocast_keeps_densities_codes_and_logits_in_float32() -> None:
    model = _tvae()
    x = torch.rand(2, 6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    reference = model(x)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
        post = model.encode(x)
    for tensor in (mixed.loss, mixed.codes, mixed.logits, *mixed.terms.values(), post.z_mean,
                   post.u_logvar):
        assert tensor.dtype == torch.float32
    # same noise (drawn in float32), only the matrix multiplies rounded: the objective agrees
    # to bfloat16's relative precision (2^-8), not exactly
    assert mixed.loss.item() == pytest.approx(reference.loss.item(), rel=2e-2)
    assert not torch.equal(mixed.logits, reference.logits)
    mixed.loss.backward()
    assert all(p.grad is None or (p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all())
               for p in model.parameters())


def test_bf16_autocast_baseline_logits_float32() -> None:
    torch.manual_seed(0)
    model = BetaVAE(BetaVAEConfig(input_shape=(1, 64, 64), latent_dim=4))
    x = torch.rand(2, 1, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.float32


def test_bf16_advice_only_on_cpus_without_matrix_units() -> None:
    assert bf16_advice("32-true", "cpu") is None
    message = bf16_advice("bf16-mixed", "cpu")
    if has_bf16_matrix_units():
        assert message is None
    else:
        assert message is not None and "slower" in message and "\n" not in message


@pytest.mark.parametrize(("flags", "expected"), [
    ({"sse2", "avx2", "fma"}, None),                         # AMD EPYC Zen 2/3: emulated
    ({"avx512f", "avx512bw", "avx512_vnni"}, None),          # Xeon Cascade Lake: emulated
    ({"avx512f", "avx512_bf16", "avx512_vnni"}, "avx512_bf16"),  # AMD EPYC Zen 4/5
    ({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "amx_bf16"),  # Xeon Sapphire Rapids
])
def test_bf16_matmul_instructions_from_cpu_flags(flags: set[str], expected: str | None) -> None:
    assert bf16_matmul_instructions(frozenset(flags)) == expected
    assert has_bf16_matrix_units(frozenset(flags)) is (expected is not None)


@pytest.mark.slow  # a fault drill: in `make test-slow`, which CI runs after the default suite
def test_bf16_mixed_resume_after_kill_is_exact(mnist_dir: Path, tmp_path: Path) -> None:
    extra = ["train.max_steps=9", "train.checkpoint_every_n_steps=3",
             "train.precision=bf16-mixed"]
    full = run_cli(train_args(mnist_dir, tmp_path / "full", *extra))
    assert full.returncode == 0, full.stderr
    killed = run_cli(train_args(mnist_dir, tmp_path / "killed", *extra),
                     env={"TOPOVAE_FAULT": "kill_after_step=6"})
    assert killed.returncode != 0
    resumed = run_cli(["train", "--resume", str(tmp_path / "killed"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    # float32 master weights: bfloat16 appears only inside the autocast region
    assert all(tensor.dtype == torch.float32 for tensor in a.values())


def test_loop_timing_counts_the_steps_it_times(mnist_dir: Path) -> None:
    tiny = {"data.source": "mnist", "data.split": "train-5k", "data.test_split": "test",
            "data.data_dir": str(mnist_dir), "data.n_train": 16, "data.n_test": 8,
            "data.seq_len": 4, "data.batch_size": 2, "model.config.n_caps": 2,
            "model.config.cap_dim": 4, "model.config.seq_len": 4,
            "model.config.time_window": 3, "train.val_batches": 1}
    timing = time_training_loop("tvae-demo", steps=4, warmup=2, overrides=tiny,
                                whole_intervals=False)
    assert timing["loop_timed_steps"] == 4
    assert timing["loop_steps_trained"] == 6
    assert timing["loop_step_ms"] > 0 and timing["loop_step_median_ms"] > 0
    # by default the window grows to a whole checkpoint interval and evaluation interval
    tiny.update({"train.checkpoint_every_n_steps": 5, "train.eval_every_n_steps": 3})
    timing = time_training_loop("tvae-demo", steps=2, warmup=2, overrides=tiny)
    assert timing["loop_timed_steps"] == 5 and timing["loop_steps_trained"] == 7
    assert timing["checkpoints_timed"] == 1  # step 5 of steps 3..7
    assert timing["evaluations_timed"] == 2  # steps 3 and 6
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        time_training_loop("tvae-demo", steps=0)
