"""DDP on one machine: two gloo CPU processes train what one process would, and resume exactly.

Rank ``r`` of ``W`` trains loader batches ``r, r + W, ...`` of each epoch; DDP averages the
gradients, so a step is one optimiser step on the mean gradient of a global batch of ``W``
loader batches. Every rank draws the noise of the whole global batch and keeps its own rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import deterministic_log
from topovae.rundir import read_run_config

TINY = [
    "data.source=mnist", "data.split=train-5k", "data.n_train=16", "data.n_test=8",
    "data.seq_len=4", "data.batch_size=2", "model.config.n_caps=2", "model.config.cap_dim=4",
    "model.config.seq_len=4", "model.config.time_window=3", "train.val_batches=2",
    "train.log_every_n_steps=1", "--no-progress",
]
DDP = ["--devices", "2", "--accelerator", "cpu", "train.strategy=ddp_gloo",
       "train.checkpoint_every_n_steps=2", "--max-steps", "6"]
STEPS = 6


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "topovae.cli.main", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def train_args(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
            "--out", str(out), *TINY, *extra]


@pytest.fixture(scope="module")
def ddp_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = run_cli(train_args(mnist_dir, out, *DDP))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_both_ranks_hold_identical_weights(ddp_run: Path) -> None:
    from topovae.models.base import load_model
    from topovae.training.distributed import weights_digest

    summary = json.loads((ddp_run / "train_summary.json").read_text())
    digests = summary["rank_weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert summary["machine"]["num_devices"] == 2 and summary["steps"] == STEPS
    # the digest is that of the exported weights (so it says something about them)
    assert weights_digest(load_model(ddp_run).state_dict()) == digests[0]


def test_ddp_matches_one_process_on_the_same_global_batches(ddp_run: Path) -> None:
    """A plain single-process loop over the global batches (the loader at the global batch
    size, ``W x data.batch_size`` sequences, one mean loss) gives the same weights: the ranks'
    shards and their slices of the noise add up to what one process draws."""
    import lightning as L

    from topovae.data.loaders import build_data
    from topovae.models.base import build_model
    from topovae.training.optim import make_optimizer

    experiment = read_run_config(ddp_run)
    cfg = experiment.train
    assert cfg.kl_warmup_steps == 0 and cfg.grad_clip is None  # the loop below omits both
    world = 2
    data = experiment.data.replace(batch_size=world * experiment.data.batch_size)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(experiment.model.name, experiment.model.config)
    loader = build_data(data, seed=cfg.seed).train
    optimizer = make_optimizer(cfg.optimizer, model.main_parameters(), lr=cfg.lr,
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # every process is seeded again after the model is built, before the first step
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    for step in range(STEPS):
        epoch, index = divmod(step, len(loader))
        optimizer.zero_grad()
        model(loader.batch(epoch, index)["x"]).loss.backward()
        optimizer.step()
    trained = load_file(str(ddp_run / "model.safetensors"))
    reference = model.state_dict()
    assert trained.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # and training moved the weights well beyond that tolerance
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    initial = build_model(experiment.model.name, experiment.model.config).state_dict()
    assert max(float((trained[k] - initial[k]).abs().max()) for k in initial) > 1e-3


@pytest.mark.slow  # a fault drill: in `make test-slow`, which CI runs after the default suite
def test_killed_ddp_run_resumes_exactly(mnist_dir: Path, ddp_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    # both ranks die by SIGKILL right after step 3 (the checkpoint of step 2 is on disk)
    killed = run_cli(train_args(mnist_dir, run, *DDP), env={"TOPOVAE_FAULT": "kill_after_step=3"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (run / "model.safetensors").exists()
    resumed = run_cli(["train", "--resume", str(run), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(str(ddp_run / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((run / "train_summary.json").read_text())
    assert len(set(summary["rank_weights_sha256"])) == 1
    assert deterministic_log(ddp_run) == deterministic_log(run)
