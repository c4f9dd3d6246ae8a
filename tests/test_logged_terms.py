"""Training logs ``mu``, ``KL_z`` and ``KL_u`` separately (CSV and TensorBoard), so that whether
``z`` and ``u`` are used at all can be read from every run."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

TINY = [
    "data.source=mnist", "data.split=train-5k", "data.n_train=16", "data.n_test=8",
    "data.seq_len=4", "data.batch_size=2", "model.config.n_caps=2", "model.config.cap_dim=4",
    "model.config.seq_len=4", "model.config.time_window=3", "train.val_batches=1",
    "train.log_every_n_steps=1", "train.max_steps=3", "--no-progress",
]


def test_mu_kl_z_and_kl_u_are_logged_to_csv_and_tensorboard(mnist_dir: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "topovae.cli.main", "train", "--preset", "tvae-Lpartial-mnist-cpu",
         "--data-dir", str(mnist_dir), "--out", str(out), *TINY],
        capture_output=True, text=True, env=dict(os.environ), timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    with (out / "logs" / "csv" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    for name in ("train/mu", "train/kl_z", "train/kl_u", "train/recon_nll"):
        values = [float(r[name]) for r in rows if r.get(name)]
        assert len(values) == 3, name  # one per step at log_every_n_steps=1
        assert all(math.isfinite(v) for v in values), name
    # mu starts at the preset's mu_init (30) and moves with training
    mu = [float(r["train/mu"]) for r in rows if r.get("train/mu")]
    assert abs(mu[0] - 30.0) < 0.1
    # the KL terms are separate quantities: their sum is the logged total
    for r in rows:
        if r.get("train/kl"):
            assert math.isclose(float(r["train/kl"]),
                                float(r["train/kl_z"]) + float(r["train/kl_u"]), rel_tol=1e-5)
    events = list((out / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    data = b"".join(path.read_bytes() for path in events)
    for tag in (b"train/mu", b"train/kl_z", b"train/kl_u"):
        assert tag in data, tag
