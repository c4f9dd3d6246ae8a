"""Data-parallel training across processes and machines (docs/scaling.md).

The central property: N nodes x D devices with a per-device batch of b sequences train exactly
like one process with a batch of N*D*b sequences, batch for batch (data, noise, gradient), up to
the order of floating-point sums. Checked piece by piece in-process, then end to end with two
"nodes" started by torchrun over the loopback address.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from topovae.data.loaders import build_data
from topovae.models.base import build_model
from topovae.models.noise import noise_shard, standard_normal_like
from topovae.presets import load_preset
from topovae.training.distributed import is_global_zero_process, weights_digest
from topovae.training.module import EpochBatches

TINY = {"data.source": "mnist", "data.split": "train-5k", "data.n_train": 16, "data.n_test": 8,
        "data.seq_len": 4, "data.batch_size": 2, "model.config.n_caps": 2,
        "model.config.cap_dim": 4, "model.config.seq_len": 4, "model.config.time_window": 3}


def tiny_experiment(mnist_dir: Path, **overrides: object):
    return load_preset("tvae-Lpartial-mnist-cpu").with_overrides(
        {**TINY, "data.data_dir": str(mnist_dir), **overrides})


def shards(loader, world_size: int, epoch: int) -> list[list[dict]]:
    return [list(EpochBatches(loader, lambda: epoch, lambda r=r: (r, world_size)))
            for r in range(world_size)]


@pytest.mark.parametrize("world_size", [2, 3])
def test_global_batch_is_the_union_of_the_rank_shards(mnist_dir: Path, world_size: int) -> None:
    per_device = build_data(tiny_experiment(mnist_dir).data, seed=5).train
    one_process = build_data(tiny_experiment(mnist_dir, **{"data.batch_size": 2 * world_size})
                             .data, seed=5).train
    seen: set[int] = set()
    for epoch in (0, 1):
        parts = shards(per_device, world_size, epoch)
        assert all(len(p) == len(one_process) for p in parts)  # 16 // (2 W) global batches
        for k in range(len(one_process)):
            expected = one_process.batch(epoch, k)
            got = [parts[r][k] for r in range(world_size)]
            assert torch.equal(torch.cat([g["x"] for g in got]), expected["x"])
            assert torch.equal(torch.cat([g["labels"] for g in got]), expected["labels"])
            for name, value in expected["factors"].items():
                assert torch.equal(torch.cat([g["factors"][name] for g in got]), value), name
        # the ranks' shards of an epoch are disjoint: different images in every position
        rows = per_device.order(epoch)[: len(one_process) * 2 * world_size]
        assert len(set(rows.tolist())) == len(rows)
        seen.add(int(parts[0][0]["x"].sum() * 1000))
    assert len(seen) == 2  # and a new epoch is a new order with new transformations


def test_one_call_with_row_generators_equals_one_call_per_sequence(mnist_dir: Path) -> None:
    loader = build_data(tiny_experiment(mnist_dir, **{"data.batch_size": 4}).data, seed=1).train
    fast = loader.batch(0, 1)

    class PlainBuilder:  # any builder that is not row-seeded: called once per sequence
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, images, generator, factors=None):
            return self.inner(images, generator, factors=factors)

    loader.builder = PlainBuilder(loader.builder)
    slow = loader.batch(0, 1)
    assert torch.equal(fast["x"], slow["x"])
    assert all(torch.equal(fast["factors"][k], slow["factors"][k]) for k in fast["factors"])


def test_split_noise_gives_the_gradient_of_the_global_batch(mnist_dir: Path) -> None:
    experiment = tiny_experiment(mnist_dir, **{"data.batch_size": 4})
    x = build_data(experiment.data, seed=0).train.batch(0, 0)["x"]
    torch.manual_seed(0)
    model = build_model(experiment.model.name, experiment.model.config)
    torch.manual_seed(1)
    out = model(x)
    out.loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    losses, grads = [], []
    for rank in range(2):  # what each of two processes computes from the same RNG state
        model.zero_grad()
        torch.manual_seed(1)
        with noise_shard(rank, 2):
            part = model(x[2 * rank:2 * rank + 2])
        part.loss.backward()
        losses.append(float(part.loss.detach()))
        grads.append([p.grad.clone() for p in model.parameters()])
    # DDP averages the processes' gradients: that is the global batch's gradient
    assert sum(losses) / 2 == pytest.approx(float(out.loss.detach()), rel=1e-6)
    for a, b, g in zip(*grads, expected, strict=True):
        assert torch.allclose((a + b) / 2, g, rtol=1e-4, atol=1e-4 * g.abs().max().item())
    # without the split each process would draw the same noise for different sequences
    torch.manual_seed(1)
    plain = torch.randn(8, 3)
    torch.manual_seed(1)
    with noise_shard(1, 2):
        assert torch.equal(standard_normal_like(torch.empty(4, 3)), plain[4:])


def test_only_global_rank_zero_is_the_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID",
                "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_JOB_NAME",
                "LSB_JOBID"):
        monkeypatch.delenv(key, raising=False)
    assert is_global_zero_process()
    monkeypatch.setenv("NODE_RANK", "1")  # Lightning's launcher, second machine
    assert not is_global_zero_process()
    monkeypatch.delenv("NODE_RANK")
    monkeypatch.setenv("SLURM_NTASKS", "4")  # srun: the task's global rank
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_PROCID", "2")
    assert not is_global_zero_process()
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert is_global_zero_process()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # torchrun (inside srun): RANK decides
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not is_global_zero_process()


# -- end to end: two nodes under torchrun ---------------------------------------------------------
CLI_TINY = [f"{k}={v}" for k, v in TINY.items() if k != "data.batch_size"] + [
    "train.val_batches=2", "train.log_every_n_steps=1", "train.max_steps=6",
    "train.checkpoint_every_n_steps=3", "--no-progress", "--accelerator", "cpu"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(extra or {})}


def _train_args(mnist_dir: Path, out: Path, batch_size: int) -> list[str]:
    return ["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
            "--out", str(out), *CLI_TINY, f"data.batch_size={batch_size}"]


def _two_nodes(args: list[str], env: dict[str, str] | None = None,
               timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """``torchrun --nnodes 2 --nproc-per-node 1`` started twice, as on two machines."""
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
         "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
         "-m", "topovae.cli.main", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env))
        for node in (0, 1)]
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def one_process(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process trained on the global batches of 2 x 1 devices (batch 2 x 2 = 4)."""
    out = tmp_path_factory.mktemp("one") / "run"
    result = subprocess.run([sys.executable, "-m", "topovae.cli.main",
                             *_train_args(mnist_dir, out, 4)],
                            capture_output=True, text=True, env=_env(), timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def _assert_same_weights(run: Path, reference: Path, atol: float) -> None:
    a = load_file(str(run / "model.safetensors"))
    b = load_file(str(reference / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=atol), \
            (name, float((a[name] - b[name]).abs().max()))


def _files(run: Path) -> list[str]:
    """The run folder's files (TensorBoard names its event files after the time and host)."""
    names = [str(p.relative_to(run)) for p in run.rglob("*")]
    return sorted(n.split(".out.tfevents.")[0] for n in names)


def _check_summary(run: Path) -> None:
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["num_nodes"] == 2
    assert summary["batch_size_per_device"] == 2 and summary["global_batch_size"] == 4
    assert [node["node_rank"] for node in summary["nodes"]] == [0, 1]
    assert all(node["machine"]["processor"] for node in summary["nodes"])
    digests = [rank["weights_sha256"] for rank in summary["ranks"]]
    # every rank ended with the same weights, and they are the weights that were saved
    assert len(digests) == 2 and digests[0] == digests[1]
    assert summary["weights_identical_across_ranks"] is True
    assert digests[0] == weights_digest(load_file(str(run / "model.safetensors")))


def test_two_nodes_under_torchrun_train_like_one_process(mnist_dir: Path, tmp_path: Path,
                                                         one_process: Path) -> None:
    out = tmp_path / "two"
    nodes = _two_nodes([*_train_args(mnist_dir, out, 2), "--num-nodes", "2",
                        "train.strategy=ddp_gloo"])
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]
    assert "global batch 4 sequences" in nodes[0].stderr
    assert "trained 6 steps" in nodes[0].stdout and "trained" not in nodes[1].stdout
    # 6 steps of 4 sequences cross an epoch (16 images: 4 global batches) and a validation
    _assert_same_weights(out, one_process, atol=2e-6)
    _check_summary(out)
    # node 1 wrote nothing: the run folder holds exactly what one process writes
    assert _files(out) == _files(one_process)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["topovae_world"]["world_size"] == 2 and ckpt["global_step"] == 6


@pytest.mark.slow
def test_killed_two_node_run_resumes_exactly_and_only_on_two_processes(
        mnist_dir: Path, tmp_path: Path, one_process: Path) -> None:
    out = tmp_path / "killed"
    nodes = _two_nodes([*_train_args(mnist_dir, out, 2), "--num-nodes", "2",
                        "train.strategy=ddp_gloo"], env={"TOPOVAE_FAULT": "kill_after_step=3"})
    assert all(node.returncode != 0 for node in nodes)
    assert not (out / "model.safetensors").exists()
    # another world size is refused before anything is written
    before = [(out / name).read_bytes() for name in ("checkpoints/last.ckpt", "config.yaml")]
    refused = subprocess.run([sys.executable, "-m", "topovae.cli.main", "train", "--resume",
                              str(out), "--num-nodes", "1", "--no-progress"],
                             capture_output=True, text=True, env=_env(), timeout=240)
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("topovae: error: ") and "trained on 2 processes" in last
    assert "--num-nodes 2 --devices 1" in last
    assert [(out / name).read_bytes()
            for name in ("checkpoints/last.ckpt", "config.yaml")] == before
    # the same world size continues exactly
    resumed = _two_nodes(["train", "--resume", str(out), "--no-progress"])
    for node in resumed:
        assert node.returncode == 0, node.stderr[-3000:]
    _assert_same_weights(out, one_process, atol=2e-6)
    _check_summary(out)
    # node 1 wrote nothing while resuming either (the event files: one per session)
    assert sorted(set(_files(out))) == sorted(set(_files(one_process)))
    with (out / "logs" / "csv" / "metrics.csv").open(newline="") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file) if row.get("loss")]
    assert steps == list(range(6)), "one row per step, the killed session's rows kept"
