"""Reliability: no code from a checkpoint, exact extension of finished runs, fault drills.

The drills train a tiny shifting TVAE on 16 real MNIST digits (8 batches per epoch), so that each
run takes about a second; every comparison with an uninterrupted run is exact (``torch.equal``
on every weight, identical CSV logs), on the same CPU and thread count.
"""

from __future__ import annotations

import contextlib
import csv
import io
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import deterministic_log
from topovae.cli.main import main
from topovae.training.checkpoint import (
    DamagedCheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
)

TINY = [
    "data.source=mnist", "data.split=train-5k", "data.n_train=16", "data.n_test=8",
    "data.seq_len=4", "data.batch_size=2", "model.config.n_caps=2", "model.config.cap_dim=4",
    "model.config.seq_len=4", "model.config.time_window=3", "train.val_batches=2",
    "train.log_every_n_steps=1", "--no-progress",
]


def train_args(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
            "--out", str(out), *TINY, *extra]


def one_line_error(capsys: pytest.CaptureFixture, code: int | None) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("topovae: error: "), err
    assert all(line.startswith("topovae: ") for line in lines), err  # no traceback
    return lines[-1]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), (name, float((wa[name] - wb[name]).abs().max()))


def csv_log(run: Path) -> str:
    return deterministic_log(run)


def assert_same_training_log(reference: Path, run: Path) -> int:
    """Every training row of ``reference``'s CSV log, identical and once, in ``run``'s; its
    validation rows a subset (a kill between an epoch's last checkpoint and the end of its
    validation loses that validation row), and likewise the values of the periodic evaluation
    (``eval/*``, logged in the row of their step: a kill between the last step's checkpoint and
    the flush of its log loses them). Returns the number of validation rows lost."""
    def rows(path: Path) -> tuple[list[dict[str, str]], list[dict[str, str]],
                                  list[dict[str, str]]]:
        every = list(csv.DictReader(io.StringIO(deterministic_log(path))))
        train = [{k: v for k, v in r.items() if not k.startswith("eval/")}
                 for r in every if r.get("loss")]
        evaluated = [{k: v for k, v in r.items() if k.startswith("eval/") or k == "step"}
                     for r in every if any(r.get(k) for k in r if k.startswith("eval/"))]
        return train, [r for r in every if not r.get("loss")], evaluated

    (train_a, val_a, eval_a), (train_b, val_b, eval_b) = rows(reference), rows(run)
    assert train_a == train_b
    assert all(row in val_a for row in val_b)
    assert all(row in eval_a for row in eval_b)
    return len(val_a) - len(val_b)


def checkpoint_step(path: Path) -> int:
    return int(load_checkpoint(path)["global_step"])


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "topovae.cli.main", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=240)


@pytest.fixture(scope="module")
def straight(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of 13 steps (checkpoints every 3 steps)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(train_args(mnist_dir, out, "--max-steps", "13",
                           "train.checkpoint_every_n_steps=3")) == 0
    return out


# -- 1. nothing executes from a file --------------------------------------------------------
class Payload:
    """Unpickling this runs ``touch MARKER``: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["topovae"]["payload"] = Payload(marker)
    torch.save(state, path)


def test_planted_payload_in_last_checkpoint_never_runs(mnist_dir: Path, straight: Path,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    marker = tmp_path / "pwned"
    plant(run / "checkpoints" / "last.ckpt", marker)
    # the planted object really is a working payload: what unpickling it would call
    function, arguments = Payload(marker).__reduce__()
    function(*arguments)
    assert marker.exists()
    marker.unlink()
    capsys.readouterr()

    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    err = one_line_error(capsys, main(["train", "--resume", str(run), "--max-steps", "20"]))
    assert str(run / "checkpoints" / "last.ckpt") in err
    assert "refusing to load it" in err and "posix.system" in err
    assert not marker.exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    with pytest.raises(UnsafeCheckpointError, match="last.ckpt"):
        load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not marker.exists()


def test_payload_in_previous_checkpoint_is_refused_not_skipped(straight: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    marker = tmp_path / "pwned"
    plant(run / "checkpoints" / "previous.ckpt", marker)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # damaged: the resume looks at previous.ckpt
    err = one_line_error(capsys, main(["train", "--resume", str(run)]))
    assert "previous.ckpt" in err and "refusing" in err
    assert not marker.exists()


def test_every_checkpoint_topovae_writes_loads_with_weights_only(straight: Path) -> None:
    for name in ("last.ckpt", "previous.ckpt"):
        state = torch.load(straight / "checkpoints" / name, weights_only=True)
        assert state["topovae"]["steps"] in (12, 13)
        assert isinstance(state["topovae"]["rng"]["numpy"][1], torch.Tensor)


# -- 2. extending a finished run equals training longer ----------------------------------------
@pytest.mark.parametrize(("first", "extend", "straight_args"), [
    (["--max-steps", "5"], ["--max-steps", "13"], ["--max-steps", "13"]),
    (["--max-epochs", "1"], ["--max-epochs", "3"], ["--max-epochs", "3"]),
])
def test_extending_a_finished_run_equals_an_uninterrupted_run(
        mnist_dir: Path, tmp_path: Path, first: list[str], extend: list[str],
        straight_args: list[str]) -> None:
    common = ["train.checkpoint_every_n_steps=5"]
    assert main(train_args(mnist_dir, tmp_path / "long", *straight_args, *common)) == 0
    assert main(train_args(mnist_dir, tmp_path / "ext", *first, *common)) == 0
    assert main(["train", "--resume", str(tmp_path / "ext"), *extend, "--no-progress"]) == 0
    assert_same_weights(tmp_path / "long", tmp_path / "ext")
    assert csv_log(tmp_path / "long") == csv_log(tmp_path / "ext")  # every logged loss


def test_extending_a_time_limited_run_equals_an_uninterrupted_run(mnist_dir: Path,
                                                                  tmp_path: Path) -> None:
    common = ["train.checkpoint_every_n_steps=5"]
    assert main(train_args(mnist_dir, tmp_path / "ext", "--max-time", "0.5", *common)) == 0
    first = checkpoint_step(tmp_path / "ext" / "checkpoints" / "last.ckpt")
    # resuming with the same limit trains nothing more
    assert main(["train", "--resume", str(tmp_path / "ext"), "--no-progress"]) == 0
    assert checkpoint_step(tmp_path / "ext" / "checkpoints" / "last.ckpt") == first
    assert main(["train", "--resume", str(tmp_path / "ext"), "--max-time", "1.0",
                 "--no-progress"]) == 0
    steps = checkpoint_step(tmp_path / "ext" / "checkpoints" / "last.ckpt")
    assert steps > first > 0
    assert main(train_args(mnist_dir, tmp_path / "long", "--max-steps", str(steps),
                           *common)) == 0
    assert_same_weights(tmp_path / "long", tmp_path / "ext")
    assert csv_log(tmp_path / "long") == csv_log(tmp_path / "ext")


# -- 3. fault drills ------------------------------------------------------------------------------
def _kill_drill(mnist_dir: Path, tmp_path: Path, kills: int, steps: int,
                seed: int) -> dict[str, object]:
    """Train ``steps`` steps, SIGKILLed ``kills`` times at random moments and resumed each time;
    returns what happened. Children are forked from a server that has imported topovae, so
    that a kill-and-resume cycle costs about a second instead of a fresh interpreter's start."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["topovae.cli.main", "topovae.training.trainer",
                                    "topovae.models.tvae", "lightning"])
    extra = ["--max-steps", str(steps), "train.checkpoint_every_n_steps=2"]
    reference, run = tmp_path / "reference", tmp_path / "killed"

    def start(args: list[str]) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=main, args=(args,))
        process.start()
        return process

    warm_up = start(["presets"])  # starts the fork server: not part of any timing
    warm_up.join(120)
    began = time.monotonic()
    process = start(train_args(mnist_dir, reference, *extra))
    process.join(120)
    duration = time.monotonic() - began  # set-up and training of one whole session
    assert (reference / "model.safetensors").exists()
    shutil.copytree(reference, tmp_path / "done")
    began = time.monotonic()
    process = start(["train", "--resume", str(tmp_path / "done"), "--no-progress"])
    process.join(120)
    setup = time.monotonic() - began  # a session with nothing left to train

    per_step = max(duration - setup, 0.01) / steps

    def moment(done: int) -> float:
        """A random moment of a session that has ``steps - done`` steps left to train: a
        quarter of the kills during the set-up (start, data, model, checkpoint reading), the
        others during the next few checkpoint intervals of training."""
        if rng.random() < 0.25:
            return rng.uniform(0.0, setup)
        window = min(steps - done, max(2, 2 * steps // kills))
        # 0.8: a session that runs faster than the measured one (a machine whose load changes)
        # should still be killed before it ends, rather than restart the drill
        return setup + rng.uniform(0.0, 0.8 * per_step * window)

    rng = random.Random(seed)
    landed: list[int | None] = []  # the step of the newest checkpoint at each kill
    fresh_starts = 0
    attempts = 0
    while len(landed) < kills:
        attempts += 1
        assert attempts <= 10 * kills, f"only {len(landed)} kills landed in {attempts} sessions"
        has_checkpoint = (run / "checkpoints" / "last.ckpt").exists()
        if run.exists() and not has_checkpoint:
            shutil.rmtree(run)  # killed before its first checkpoint: what the error says to do
            fresh_starts += 1
        args = (["train", "--resume", str(run), "--no-progress"] if run.exists()
                else train_args(mnist_dir, run, *extra))
        last = run / "checkpoints" / "last.ckpt"
        process = start(args)
        process.join(moment(checkpoint_step(last) if last.exists() else 0))
        if process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):  # it may end at this very moment
                os.kill(process.pid, signal.SIGKILL)  # by process id
            process.join()
        if process.exitcode == 0:  # finished before the kill: train the run again
            shutil.rmtree(run)
            landed.clear()
            continue
        assert process.exitcode == -signal.SIGKILL
        last = run / "checkpoints" / "last.ckpt"
        landed.append(checkpoint_step(last) if last.exists() else None)
    if run.exists() and not (run / "checkpoints" / "last.ckpt").exists():
        shutil.rmtree(run)
    args = (["train", "--resume", str(run), "--no-progress"] if run.exists()
            else train_args(mnist_dir, run, *extra))
    process = start(args)
    process.join(120)
    assert process.exitcode == 0
    return {"reference": reference, "run": run, "landed": landed, "fresh_starts": fresh_starts}


def _assert_drill_exact(drill: dict, kills: int) -> None:
    """Every kill landed, and the resumed run equals the uninterrupted one."""
    assert len(drill["landed"]) == kills
    assert_same_weights(drill["reference"], drill["run"])
    lost = assert_same_training_log(drill["reference"], drill["run"])
    print("kills landed after checkpointed steps", drill["landed"], "fresh starts",
          drill["fresh_starts"], "validation rows lost", lost)


@pytest.mark.slow  # a fault drill: in `make test-slow`, which CI runs after the default suite
def test_ten_random_sigkills_then_resume_equal_the_uninterrupted_run(mnist_dir: Path,
                                                                      tmp_path: Path) -> None:
    drill = _kill_drill(mnist_dir, tmp_path, kills=10, steps=24, seed=0)
    _assert_drill_exact(drill, kills=10)
    assert not list((drill["run"] / "checkpoints").glob(".*.tmp"))  # no litter left


@pytest.mark.slow
def test_fifty_random_sigkills_on_a_longer_run(mnist_dir: Path, tmp_path: Path) -> None:
    drill = _kill_drill(mnist_dir, tmp_path, kills=50, steps=80, seed=1)
    _assert_drill_exact(drill, kills=50)


def test_kill_during_a_checkpoint_write_keeps_the_last_one(mnist_dir: Path, straight: Path,
                                                           tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli(train_args(mnist_dir, run, "--max-steps", "13",
                                "train.checkpoint_every_n_steps=3"),
                     env={"TOPOVAE_FAULT": "kill_in_checkpoint=6"})
    assert result.returncode == -9
    checkpoints = run / "checkpoints"
    assert list(checkpoints.glob(".last.ckpt.*.tmp"))  # the interrupted write's partial file
    assert checkpoint_step(checkpoints / "last.ckpt") == 3  # untouched, loadable
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert not list(checkpoints.glob(".*.tmp"))
    assert_same_weights(straight, run)
    assert csv_log(straight) == csv_log(run)


def test_kill_before_the_first_checkpoint_says_so(mnist_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    result = run_cli(train_args(mnist_dir, run, "--max-steps", "13",
                                "train.checkpoint_every_n_steps=5"),
                     env={"TOPOVAE_FAULT": "kill_after_step=2"})
    assert result.returncode == -9
    err = one_line_error(capsys, main(["train", "--resume", str(run)]))
    assert "stopped before its first checkpoint" in err and "train it again" in err


def _flip_in_tensor_data(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)  # the largest tensor
    data = bytearray(path.read_bytes())
    # the record's data follows its 30-byte local header, name and extra field
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_last_checkpoint_falls_back_to_the_previous_one(
        mnist_dir: Path, straight: Path, tmp_path: Path, damage: str,
        capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    result = run_cli(train_args(mnist_dir, run, "--max-steps", "13",
                                "train.checkpoint_every_n_steps=3"),
                     env={"TOPOVAE_FAULT": "kill_after_step=7"})
    assert result.returncode == -9
    last = run / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == 6
    assert checkpoint_step(run / "checkpoints" / "previous.ckpt") == 3
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        _flip_in_tensor_data(last)
    with pytest.raises(DamagedCheckpointError, match="last.ckpt"):
        load_checkpoint(last)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("topovae: warning:")]
    assert len(warning) == 1 and "last.ckpt is damaged" in warning[0]
    assert "resuming from" in warning[0] and "previous.ckpt (step 3)" in warning[0]
    assert (run / "checkpoints" / "damaged-last.ckpt").exists()  # kept aside, not deleted
    # one checkpoint interval (steps 4-6) was trained again, with the same result
    assert_same_weights(straight, run)
    assert csv_log(straight) == csv_log(run)


def test_both_checkpoints_damaged_is_a_clear_error(straight: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    for name in ("last.ckpt", "previous.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"\0" * 100)
    err = one_line_error(capsys, main(["train", "--resume", str(run)]))
    assert "last.ckpt is damaged" in err and "previous.ckpt is damaged" in err
    assert "no usable checkpoint" in err


def test_random_bit_flips_are_detected_or_harmless(straight: Path, tmp_path: Path) -> None:
    """A flipped bit anywhere either makes the file fail to load, or changes nothing loaded
    (zip metadata such as a timestamp); it never yields altered numbers."""
    source = straight / "checkpoints" / "last.ckpt"
    original = source.read_bytes()
    reference = load_checkpoint(source)
    rng = random.Random(0)
    detected = 0
    for _ in range(60):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path = tmp_path / "flipped.ckpt"
        path.write_bytes(bytes(data))
        try:
            state = load_checkpoint(path)
        except DamagedCheckpointError:
            detected += 1
            continue
        assert state["global_step"] == reference["global_step"]
        for key, value in reference["state_dict"].items():
            assert torch.equal(state["state_dict"][key], value), key
        assert all(torch.equal(a["exp_avg"], b["exp_avg"]) for a, b in zip(
            state["optimizer_states"][0]["state"].values(),
            reference["optimizer_states"][0]["state"].values(), strict=True))
    print(f"bit flips: {detected} of 60 detected, the other {60 - detected} changed nothing")
    assert detected >= 50


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(
        mnist_dir: Path, straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    monkeypatch.setenv("TOPOVAE_FAULT", "enospc_at_step=6")
    code = main(train_args(mnist_dir, run, "--max-steps", "13",
                           "train.checkpoint_every_n_steps=3"))
    err = one_line_error(capsys, code)
    assert "could not write the checkpoint" in err and "No space left on device" in err
    assert "is intact" in err and "--resume" in err
    checkpoints = run / "checkpoints"
    assert checkpoint_step(checkpoints / "last.ckpt") == 3  # intact and loadable
    assert not list(checkpoints.glob(".*.tmp")) and not (run / "model.safetensors").exists()
    monkeypatch.delenv("TOPOVAE_FAULT")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert_same_weights(straight, run)
    assert csv_log(straight) == csv_log(run)
