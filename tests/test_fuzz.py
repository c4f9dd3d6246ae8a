"""Fuzzing the readers and the command line: malformed input ends in one clean line, exit 2.

Every generated input is malformed by construction (the strategies below never produce a
valid one). Each runs ``topovae`` in-process and must end with exit code 2 and a single line
``topovae: error: ...`` on stderr (no traceback), without creating a file (no run folder, no
half-written output) or changing an existing one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from topovae.cli.main import main
from topovae.presets import load_preset_dict

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
TINY = ["data.n_train=16", "data.n_test=8", "data.seq_len=4", "data.batch_size=2",
        "model.config.n_caps=2", "model.config.cap_dim=4", "model.config.seq_len=4",
        "model.config.time_window=3", "--no-progress", "train.max_steps=2"]
TRIED: dict[str, int] = {}  # inputs tried per reader (reported in docs/reliability.md)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


@contextmanager
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="topovae-fuzz-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def expect_clean_error(argv: list[str], capsys: pytest.CaptureFixture, watched: Path,
                       kind: str) -> str:
    """Run ``topovae argv``; assert exit 2, one error line, and ``watched`` unchanged."""
    TRIED[kind] = TRIED.get(kind, 0) + 1
    before = snapshot(watched)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (argv, captured.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("topovae: error: "), captured.err[-2000:]
    assert snapshot(watched) == before, argv  # nothing created, nothing changed
    return lines[0]


# -- IDX files ----------------------------------------------------------------------------------
IDX_NAMES = ["train-5k-images-idx3-ubyte.gz", "train-5k-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _idx(code: int, dims: list[int], body: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes() + body


@st.composite
def malformed_idx(draw: st.DrawFn, images: bool) -> bytes:
    kind = draw(st.sampled_from(["random", "magic", "dtype", "ndim0", "short-header",
                                 "length", "semantic", "gzip-corrupt"]))
    dims = [draw(st.integers(1, 4)), 28, 28] if images else [draw(st.integers(1, 4))]
    size = int(np.prod(dims))
    if kind == "random":
        data = draw(st.binary(max_size=64))
        if len(data) >= 4 and data[:2] == b"\0\0":
            data = b"\1" + data[1:]  # bad magic: random bytes can never be valid IDX
    elif kind == "magic":
        data = bytes([draw(st.integers(1, 255)), 0, 8, len(dims)]) + _idx(8, dims, bytes(size))[4:]
    elif kind == "dtype":
        code = draw(st.integers(0, 255).filter(lambda c: c not in (8, 9, 11, 12, 13, 14)))
        data = _idx(code, dims, bytes(size))
    elif kind == "ndim0":
        data = bytes([0, 0, 8, 0])
    elif kind == "short-header":
        data = _idx(8, dims, b"")[: draw(st.integers(0, 3 + 4 * len(dims)))]
    elif kind == "length":
        delta = draw(st.integers(-size, 64).filter(lambda d: d != 0))
        data = _idx(8, dims, bytes(max(0, size + delta)))
        if size + delta < 0:
            data = data[: len(data) + size + delta]
    elif kind == "semantic":  # a valid IDX file holding the wrong thing for its role
        if images:
            choice = draw(st.sampled_from(["1d", "float", "2d"]))
            data = {"1d": _idx(8, [7], bytes(7)),
                    "float": _idx(0x0D, dims, bytes(4 * size)),
                    "2d": _idx(8, [3, 784], bytes(3 * 784))}[choice]
        else:  # labels for a different number of images, or not 1-D
            n = draw(st.sampled_from([0, 7, 10_001, 4_999]))
            data = _idx(8, [n], bytes(n)) if n else _idx(8, [2, 2], bytes(4))
    else:
        good = gzip.compress(_idx(8, dims, bytes(size)))
        cut = draw(st.integers(10, len(good) - 1))
        return good[:cut]
    if draw(st.booleans()):
        data = gzip.compress(data)
    return data


@given(target=st.sampled_from(range(4)), payload=st.data())
@FUZZ
def test_fuzz_idx_files(target: int, payload: st.DataObject, mnist_dir: Path,
                        capsys: pytest.CaptureFixture) -> None:
    content = payload.draw(malformed_idx(images=target % 2 == 0))
    with scratch() as root:
        data = root / "data"
        data.mkdir()
        for index, name in enumerate(IDX_NAMES):
            if index == target:
                (data / name).write_bytes(content)
            else:
                (data / name).symlink_to(mnist_dir / name)
        err = expect_clean_error(
            ["train", "--preset", "vae-mnist-cpu", "data.source=mnist", "data.split=train-5k",
             "--data-dir", str(data), "data.download=false", "--out", str(root / "run"), *TINY],
            capsys, root, "IDX files")
        assert IDX_NAMES[target] in err


# -- dSprites .npz --------------------------------------------------------------------------------
NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


@st.composite
def malformed_npz(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["missing", "shape", "dtype", "object", "random", "truncated",
                                 "npy-not-npz"]))
    buffer = io.BytesIO()
    if kind == "missing":
        np.savez(buffer, **{draw(st.sampled_from(["img", "latents_values", "IMGS"])):
                            np.zeros((2, 64, 64), np.uint8)})
    elif kind == "shape":
        shape = draw(st.lists(st.integers(0, 8), min_size=0, max_size=4).map(tuple))
        np.savez(buffer, imgs=np.zeros(shape, np.uint8))
    elif kind == "dtype":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.complex64, "U3"]))
        np.savez(buffer, imgs=np.zeros((3, 64, 64), dtype))
    elif kind == "object":
        np.savez(buffer, imgs=np.array([{"a": 1}, None, "x"], dtype=object))
    elif kind == "random":
        return draw(st.binary(max_size=200))
    elif kind == "truncated":
        np.savez(buffer, imgs=np.zeros((4, 64, 64), np.uint8))
        whole = buffer.getvalue()
        return whole[: draw(st.integers(0, len(whole) - 1))]
    else:
        np.save(buffer, np.zeros((2, 64, 64), np.uint8))
    return buffer.getvalue()


@given(content=malformed_npz())
@FUZZ
def test_fuzz_dsprites_npz(content: bytes, capsys: pytest.CaptureFixture) -> None:
    with scratch() as root:
        (root / "data").mkdir()
        (root / "data" / NPZ).write_bytes(content)
        err = expect_clean_error(
            ["train", "--preset", "tvae-Lshort-dsprites-cpu", "data.source=dsprites",
             "--data-dir", str(root / "data"), "data.download=false",
             "--out", str(root / "run")], capsys, root, "dSprites .npz files")
        assert NPZ in err


# -- YAML configs and KEY=VALUE overrides ---------------------------------------------------------
NAN, INF = float("nan"), float("inf")
# (key, values that must be refused): wrong types, NaN/inf, out of range, huge
BAD_VALUES: dict[str, list[Any]] = {
    "train.lr": [-1e-3, 0, NAN, INF, "fast", [1]],
    "train.momentum": [1.5, -0.1, NAN],
    "train.max_epochs": [0, -3, 1.5, "x", NAN],
    "train.max_steps": [0, -2, "x", NAN, 2.5],
    "train.max_time": [0, -1.0, NAN, INF, -INF, "soon"],
    "train.devices": [0, -1, "two"],
    "train.optimizer": ["lbfgs", 3],
    "train.precision": ["8-bit", 16.5],
    "train.grad_clip": [0, -1, NAN],
    "train.checkpoint_every_n_steps": [0, -5, NAN],
    "data.batch_size": [0, -1, NAN, 10**12, "big"],
    "data.seq_len": [0, -1, 10**9],
    "data.n_train": [0, -5, "all", NAN],
    "data.val_fraction": [1.0, -0.1, NAN, INF],
    "data.source": ["nope", 7],
    "data.transforms": [[], ["warp"], "rotation"],
    "model.name": ["nope", 1],
    "model.config.n_caps": [0, -1, 10**9, "x", 2.5],
    "model.config.cap_dim": [0, -2, 10**9],
    "model.config.time_window": [-1, 10**9, NAN],
    "model.config.mu_init": [NAN, INF, "high"],
    "model.config.coherence": ["sideways"],
    "evaluate.n_is_samples": [0, -1, NAN],
    "evaluate.metrics": [["bogus"], "mig"],
}


def yaml_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@st.composite
def bad_setting(draw: st.DrawFn) -> tuple[str, Any]:
    if draw(st.integers(0, 4)) == 0:  # an unknown key somewhere
        section = draw(st.sampled_from(["train", "data", "model.config", "evaluate", ""]))
        name = draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
            lambda n: n not in _known_keys(section)))
        return (f"{section}.{name}" if section else name), 1
    key = draw(st.sampled_from(sorted(BAD_VALUES)))
    return key, draw(st.sampled_from(BAD_VALUES[key]))


def _known_keys(section: str) -> set[str]:
    from topovae.training.experiment import ExperimentConfig

    node: Any = ExperimentConfig().resolved().to_dict()
    for part in filter(None, section.split(".")):
        node = node[part]
    return set(node)


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


@given(setting=bad_setting(), garbage=st.booleans(), text=st.text(max_size=40))
@FUZZ
def test_fuzz_yaml_configs(setting: tuple[str, Any], garbage: bool, text: str,
                           mnist_dir: Path, capsys: pytest.CaptureFixture) -> None:
    with scratch() as root:
        config = root / "experiment.yaml"
        if garbage:  # not YAML at all, or YAML that is not a mapping of settings
            config.write_text(f"{{[: {text}\n\t- ]]")
        else:
            tree = load_preset_dict("tvae-Lpartial-mnist-cpu")
            _set(tree, "data.data_dir", str(mnist_dir))
            _set(tree, "train.max_steps", 2)
            _set(tree, *setting)
            config.write_text(yaml.safe_dump(tree))
        expect_clean_error(["train", "--config", str(config), "--out", str(root / "run")],
                           capsys, root, "YAML configs")


@given(setting=bad_setting(), spelling=st.sampled_from(["yaml", "python"]))
@FUZZ
def test_fuzz_overrides(setting: tuple[str, Any], spelling: str, mnist_dir: Path,
                        capsys: pytest.CaptureFixture) -> None:
    key, value = setting
    if spelling == "python" and isinstance(value, float) and not math.isfinite(value):
        text = repr(value)  # nan, inf, -inf as someone would type them
    else:
        text = yaml_text(value)
    with scratch() as root:
        expect_clean_error(
            ["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
             "data.source=mnist", "data.split=train-5k", *TINY, f"{key}={text}",
             "--out", str(root / "run")], capsys, root, "KEY=VALUE overrides")


def test_every_listed_bad_value_is_refused(mnist_dir: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """Beside the sampled ones: every (key, value) of BAD_VALUES, as an override."""
    with scratch() as root:
        for key, values in BAD_VALUES.items():
            for value in values:
                expect_clean_error(
                    ["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir",
                     str(mnist_dir), "data.source=mnist", "data.split=train-5k", *TINY,
                     f"{key}={yaml_text(value)}", "--out", str(root / "run")],
                    capsys, root, "KEY=VALUE overrides")


def test_the_fuzzed_commands_are_valid_without_their_fault(mnist_dir: Path, tmp_path: Path
                                                           ) -> None:
    """The base command of the override and config fuzzing trains: the errors come from the
    generated faults alone."""
    assert main(["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
                 "data.source=mnist", "data.split=train-5k", *TINY,
                 "--out", str(tmp_path / "run")]) == 0
    tree = load_preset_dict("tvae-Lpartial-mnist-cpu")
    _set(tree, "data.data_dir", str(mnist_dir))
    _set(tree, "train.max_steps", 2)
    for override in TINY:
        if "=" in override:
            dotted, value = override.split("=")
            _set(tree, dotted, yaml.safe_load(value))
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(tree))
    assert main(["train", "--config", str(tmp_path / "experiment.yaml"),
                 "--out", str(tmp_path / "run2"), "--no-progress"]) == 0


# -- model.json + model.safetensors --------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-run") / "run"
    code = main(["train", "--preset", "tvae-Lpartial-mnist-cpu", "--data-dir", str(mnist_dir),
                 "data.source=mnist", "data.split=train-5k", *TINY, "--out", str(out)])
    assert code == 0
    return out


@st.composite
def broken_model_files(draw: st.DrawFn, run: Path) -> tuple[bytes | None, bytes | None]:
    meta = json.loads((run / "model.json").read_text())
    tensors = load_file(str(run / "model.safetensors"))
    kind = draw(st.sampled_from(["missing-tensor", "shape", "extra-tensor", "dtype",
                                 "bytes", "truncated", "no-weights", "json-syntax", "json-type",
                                 "json-model", "json-config", "json-version", "no-json"]))
    names = sorted(tensors)
    if kind == "missing-tensor":
        del tensors[draw(st.sampled_from(names))]
    elif kind == "shape":
        name = draw(st.sampled_from(names))
        extra = draw(st.integers(1, 3))
        tensors[name] = tensors[name].reshape(-1)[:1].repeat(tensors[name].numel() + extra)
    elif kind == "extra-tensor":
        name = draw(st.from_regex(r"[a-z]{3,8}\.weight", fullmatch=True))
        tensors[name] = tensors[names[0]].clone()
    elif kind == "dtype":
        name = draw(st.sampled_from(names))
        tensors[name] = tensors[name].to(draw(st.sampled_from([torch.int64, torch.float64,
                                                               torch.uint8])))
    weights: bytes | None = None
    if kind in ("missing-tensor", "shape", "extra-tensor", "dtype"):
        buffer = Path(tempfile.mkdtemp()) / "w.safetensors"
        save_file(tensors, str(buffer))
        weights = buffer.read_bytes()
        shutil.rmtree(buffer.parent)
    elif kind == "bytes":
        weights = draw(st.binary(max_size=100))
    elif kind == "truncated":
        whole = (run / "model.safetensors").read_bytes()
        weights = whole[: draw(st.integers(0, len(whole) - 1))]
    elif kind == "no-weights":
        weights = b""  # marker: remove the file
    text: bytes | None = None
    if kind == "json-syntax":
        text = draw(st.sampled_from([b"{", b"", b"\xff\xfe", b"[1, 2", b"{'model': 1}"]))
    elif kind == "json-type":
        text = json.dumps(draw(st.sampled_from([[], 3, "tvae", None]))).encode()
    elif kind == "json-model":
        text = json.dumps({**meta, "model": draw(st.sampled_from(["nope", 7, None]))}).encode()
    elif kind == "json-config":
        key = draw(st.sampled_from(["n_caps", "cap_dim", "bogus_key", "mu_init"]))
        value = draw(st.sampled_from([-1, "x", None, [1]]))
        text = json.dumps({**meta, "config": {**meta["config"], key: value}}).encode()
    elif kind == "json-version":
        text = json.dumps({**meta, "format_version": draw(st.sampled_from([0, 99, "1"]))}
                          ).encode()
    elif kind == "no-json":
        text = b""
    return text, weights


@given(payload=st.data())
@FUZZ
def test_fuzz_model_files(payload: st.DataObject, trained_run: Path,
                          capsys: pytest.CaptureFixture) -> None:
    text, weights = payload.draw(broken_model_files(trained_run))
    with scratch() as root:
        run = root / "run"
        shutil.copytree(trained_run, run, symlinks=True)
        for name, content in (("model.json", text), ("model.safetensors", weights)):
            if content == b"":
                (run / name).unlink()
            elif content is not None:
                (run / name).write_bytes(content)
        expect_clean_error(["evaluate", str(run), "--n-sequences", "2"], capsys, root,
                           "model.json + safetensors pairs")


def test_evaluate_of_the_intact_run_succeeds(trained_run: Path, tmp_path: Path) -> None:
    """The fuzzed evaluate command works on the unbroken copy: its errors are the faults'."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, symlinks=True)
    assert main(["evaluate", str(run), "--n-sequences", "2"]) == 0
    assert (run / "metrics.json").is_file()


# -- command-line arguments ----------------------------------------------------------------------
@st.composite
def bad_command_line(draw: st.DrawFn, run: Path) -> list[str]:
    junk = draw(st.from_regex(r"[A-Za-z0-9_.:-]{1,10}", fullmatch=True))
    missing = f"/nonexistent-topovae/{junk}"
    family = draw(st.sampled_from(["flag", "int", "path", "command", "train", "evaluate",
                                   "demo", "accelerator"]))
    if family == "flag":
        command = draw(st.sampled_from(["train", "evaluate", "report", "compare", "bench",
                                        "presets"]))
        tail = [str(run)] if command in ("evaluate", "report", "compare") else []
        return [command, *tail, f"--no-such-{junk}"]
    if family == "int":
        flag = draw(st.sampled_from(["--max-steps", "--max-epochs", "--seed", "--devices"]))
        bad = draw(st.sampled_from(["x", "1.5", "", "1e3", junk + "!"]))
        return ["train", "--preset", "tvae-demo", "--out", missing, flag, bad]
    if family == "path":
        command = draw(st.sampled_from(["evaluate", "report", "compare", "resume"]))
        return ["train", "--resume", missing] if command == "resume" else [command, missing]
    if family == "command":
        return [draw(st.sampled_from(["trian", "eval", "fit", "--preset"])) + junk]
    if family == "train":
        return draw(st.sampled_from([
            ["train", "--preset", "tvae-demo"],                      # no --out
            ["train", "--out", missing],                             # nothing to train
            ["train", "--preset", "tvae-demo", "--config", missing, "--out", missing],
            ["train", "--preset", junk, "--out", missing],
            ["train", "--resume", str(run), "train.lr=1"],          # overrides with --resume
            ["train", "--resume", str(run), "--max-steps", "-4"],
            ["train", "--preset", "tvae-demo", "--out", str(run)],   # not empty
            ["train", "--config", missing, "--out", missing],
        ]))
    if family == "evaluate":
        return ["evaluate", str(run), *draw(st.sampled_from([
            ["--metrics", f"mig,{junk}"], ["--n-is-samples", "0"], ["--n-sequences", "-1"],
            ["--disentanglement-samples", "0"]]))]
    if family == "demo":
        return ["demo", "--out", missing, "--max-time", draw(st.sampled_from(["0", "-1", "301",
                                                                             "nan", "inf"]))]
    return ["train", "--preset", "tvae-demo", "--out", missing, "--accelerator", junk]


@given(payload=st.data())
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_fuzz_command_line(payload: st.DataObject, trained_run: Path,
                           capsys: pytest.CaptureFixture) -> None:
    argv = payload.draw(bad_command_line(trained_run))
    expect_clean_error(argv, capsys, trained_run.parent, "command lines")


def test_fuzz_inputs_tried_add_up() -> None:
    """Runs after the fuzz tests above (file order): at least 100 malformed inputs in all."""
    if len(TRIED) < 6:
        pytest.skip("run with the other fuzz tests")
    print("malformed inputs tried:", TRIED, "total", sum(TRIED.values()))
    assert sum(TRIED.values()) >= 100
