"""Figures, the topographic score, the self-contained HTML report and the comparison table."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from topovae.models.baselines import BetaVAE, BetaVAEConfig
from topovae.report import build_report, compare_table, figures
from topovae.rundir import RunDir
from topovae.training.experiment import ExperimentConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(data: bytes, max_kb: float = 250.0) -> np.ndarray:
    assert data[:8] == PNG_SIGNATURE
    assert len(data) < max_kb * 1024, f"figure of {len(data) / 1024:.0f} KB"
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert image.ndim == 3 and image.shape[0] > 20 and image.shape[1] > 20
    return image


def torus_map(rows: int, cols: int, n_classes: int, n: int, seed: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Codes of a smooth topographic map: each class excites a Gaussian bump on the torus."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, [rows, cols], size=(n_classes, 2))
    ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    bumps = []
    for cy, cx in centres:
        dy = np.minimum(abs(ii - cy), rows - abs(ii - cy))
        dx = np.minimum(abs(jj - cx), cols - abs(jj - cx))
        bumps.append(np.exp(-(dy**2 + dx**2) / (2 * 1.5**2)).ravel())
    bumps = np.stack(bumps)
    labels = rng.integers(0, n_classes, size=n)
    codes = bumps[labels] + 0.3 * rng.standard_normal((n, rows * cols))
    return codes, labels


# -- figures ------------------------------------------------------------------------------------
def test_image_figures_are_small_valid_pngs(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    seqs = torch.rand(3, 6, 3, 28, 28, generator=g)
    path = figures.plot_roll_traversal(seqs, seqs.flip(1), tmp_path / "roll.png")
    image = assert_valid_png(path.read_bytes())
    assert image.shape[0] > 100  # six rows of frames stacked
    single = figures.plot_roll_traversal(seqs[0], seqs[0], tmp_path / "roll1.png")
    assert_valid_png(single.read_bytes())
    three = figures.plot_roll_traversal(seqs, seqs.flip(1), tmp_path / "roll3.png",
                                        context_decodes=seqs)
    assert assert_valid_png(three.read_bytes()).shape[0] > image.shape[0]  # nine rows, not six
    with pytest.raises(ValueError, match="context_decodes"):
        figures.plot_roll_traversal(seqs, seqs, tmp_path / "bad3.png", context_decodes=seqs[:2])
    recon = figures.plot_reconstructions(seqs[:, 0, :1], seqs[:, 1, :1], tmp_path / "rec.png")
    assert_valid_png(recon.read_bytes())
    samples = figures.plot_samples(torch.rand(10, 1, 16, 16, generator=g), tmp_path / "s.png")
    assert_valid_png(samples.read_bytes())
    with pytest.raises(ValueError, match="rolled_decodes"):
        figures.plot_roll_traversal(seqs, seqs[:, :3], tmp_path / "bad.png")


def test_mosaic_places_tiles_and_padding() -> None:
    tiles = np.zeros((2, 3, 1, 4, 5))
    tiles[1, 2] = 1.0
    mosaic = figures.image_mosaic(tiles)
    assert mosaic.shape == (2 * 5 + 1, 3 * 6 + 1)
    assert mosaic[6:10, 13:18].min() == 1.0 and mosaic[1:5, 1:6].max() == 0.0
    assert mosaic[0, 0] == figures.PAD_VALUE


def test_training_curves_tolerate_nan_gaps_and_missing_columns(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "epoch,step,train/loss,train/kl,val/loss,lr-Adam\n"
        "0,9,250.5,10.1,,\n"
        "0,19,200.2,12.3,,\n"
        "0,19,,,210.0,0.001\n"
        "1,29,180.0,,,\n"
        "1,39,170.0,14.0,190.0,\n")
    columns = figures.read_metrics_csv(csv_path)
    assert np.isnan(columns["val/loss"][0]) and columns["val/loss"][2] == 210.0
    path = figures.plot_training_curves(csv_path, tmp_path / "curves.png")
    assert_valid_png(path.read_bytes())
    path = figures.plot_training_curves({"train/loss": [3.0, 2.0, 1.0]}, tmp_path / "c2.png")
    assert_valid_png(path.read_bytes())
    with pytest.raises(ValueError, match="no values"):
        figures.plot_training_curves({"step": [1, 2], "train/loss": [math.nan, math.nan]},
                                     tmp_path / "c3.png")


def test_topographic_figures(tmp_path: Path) -> None:
    codes, labels = torus_map(6, 6, 4, 300, seed=1)
    images = np.random.default_rng(0).uniform(size=(300, 1, 12, 12))
    path = figures.plot_class_selectivity(codes, labels, (6, 6), tmp_path / "sel.png")
    assert_valid_png(path.read_bytes())
    path = figures.plot_max_activating(images, codes, (6, 6), tmp_path / "max.png")
    assert_valid_png(path.read_bytes())
    with pytest.raises(ValueError, match="grid_shape"):
        figures.plot_class_selectivity(codes, labels, (5, 6), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="labels"):
        figures.plot_class_selectivity(codes, labels[:-1], (6, 6), tmp_path / "bad.png")


def test_topographic_score_smooth_map_beats_shuffled_map() -> None:
    codes, labels = torus_map(10, 10, 5, 2000, seed=2)
    smooth = figures.topographic_score(codes, labels, (10, 10), seed=0)
    assert smooth["score"] > 0.6
    assert abs(smooth["control"]) < 0.15
    assert smooth["excess"] > 0.5
    shuffled_codes = codes[:, np.random.default_rng(3).permutation(100)]
    shuffled = figures.topographic_score(shuffled_codes, labels, (10, 10), seed=0)
    assert abs(shuffled["score"] - shuffled["control"]) < 4 * shuffled["control_std"] + 0.05
    # the control does not depend on where the units are: same profiles, same shuffles
    assert shuffled["control"] == pytest.approx(smooth["control"], abs=0.05)
    same = figures.topographic_score(codes, labels, (10, 10), seed=0)
    assert same == smooth  # deterministic for a seed


# -- the report ---------------------------------------------------------------------------------
def make_run(tmp_path: Path, model, model_name: str, model_config: dict, metrics=None) -> Path:
    # data that cannot be rebuilt here: MNIST from a folder that does not exist, no download
    run_dir = RunDir.create(tmp_path / "run", ExperimentConfig.from_dict({
        "description": "tiny test run",
        "model": {"name": model_name, "config": model_config},
        "data": {"source": "mnist", "data_dir": str(tmp_path / "not-available-here"),
                 "download": False}, "train": {"seed": 0}}))
    run = run_dir.path
    model.save(run)
    logs = run / "logs" / "csv"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text(
        "epoch,step,train/loss,train/recon_nll,train/kl,val/loss\n"
        "0,0,500,480,20,\n0,1,400,385,15,\n0,1,,,,420\n1,2,350,340,10,\n")
    if metrics is not None:
        run_dir.write_results(metrics)
    return run


def embedded_pngs(html_text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)]


def test_build_report_for_a_baseline_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = {"input_shape": [1, 16, 16], "architecture": "mlp", "latent_dim": 4}
    model = BetaVAE(BetaVAEConfig(**config))
    run = make_run(tmp_path, model, "beta_vae", config,
                   metrics={"log_likelihood_nats_per_image": -123.4, "n_is_samples": 10})
    batch = {"x": torch.rand(4, 1, 1, 16, 16), "labels": torch.arange(4)}
    index = build_report(run, batch=batch)
    assert index == run / "report" / "index.html"
    text = index.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text
    pngs = embedded_pngs(text)
    assert len(pngs) == 3  # curves, reconstructions, samples
    for data in pngs:
        assert_valid_png(data)
    for png in (run / "report").glob("*.png"):
        assert_valid_png(png.read_bytes())
    assert "-123.4" in text and "tiny test run" in text
    assert "needs a capsule model" in text  # the roll section is skipped with a note


def test_build_report_degrades_gracefully(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    text = build_report(run).read_text()
    assert "no saved model" in text and "no metrics.json" in text and "metrics.csv" in text
    # a model but data that cannot be rebuilt here: a note, not a crash
    config = {"input_shape": [1, 16, 16], "architecture": "mlp", "latent_dim": 4}
    run2 = make_run(tmp_path, BetaVAE(BetaVAEConfig(**config)), "beta_vae", config)
    text = build_report(run2).read_text()
    assert len(embedded_pngs(text)) == 1  # the training curves
    with pytest.raises(ValueError, match="run_dir"):
        build_report(tmp_path / "nope")


def test_build_report_for_capsule_and_torus_tvae(tmp_path: Path) -> None:
    tvae = pytest.importorskip("topovae.models.tvae")
    torch.manual_seed(0)
    caps = {"input_shape": [1, 16, 16], "n_caps": 3, "cap_dim": 5, "seq_len": 5,
            "time_window": 3, "capsule_window": 3}
    model = tvae.TVAE(tvae.TVAEConfig(**caps))
    (tmp_path / "a").mkdir()
    run = make_run(tmp_path / "a", model, "tvae", caps)
    text = build_report(run, batch={"x": torch.rand(3, 5, 1, 16, 16)}).read_text()
    assert "Capsule-roll traversal" in text and "roll_traversal" not in text
    assert len(embedded_pngs(text)) == 4  # curves, roll traversal, reconstructions, samples
    assert (run / "report" / "roll_traversal.png").is_file()

    torus = {"input_shape": [1, 16, 16], "topography": "torus", "n_caps": 4, "cap_dim": 4,
             "seq_len": 1, "time_window": 0, "capsule_window": 3}
    model = tvae.TVAE(tvae.TVAEConfig(**torus))
    (tmp_path / "b").mkdir()
    run = make_run(tmp_path / "b", model, "tvae", torus)
    batch = {"x": torch.rand(60, 1, 1, 16, 16), "labels": torch.arange(60) % 3}
    text = build_report(run, batch=batch).read_text()
    for data in embedded_pngs(text):
        assert_valid_png(data)
    assert (run / "report" / "class_selectivity.png").is_file()
    assert (run / "report" / "max_activating.png").is_file()
    assert "Topographic score" in text


# -- compare ------------------------------------------------------------------------------------
def test_compare_table(tmp_path: Path) -> None:
    full_run = RunDir.create(tmp_path / "tvae-run", ExperimentConfig.from_dict(
        {"model": {"name": "tvae"}}))
    full = full_run.path
    full_run.write_results({
        "model": "tvae", "log_likelihood_nats_per_image": -186.054, "n_is_samples": 10,
        "equivariance_error": 1234.56, "equivariance_error_control": 4321.0,
        "equivariance_ratio": 0.2857, "roll_prediction_nll": 201.5,
        "log_likelihood_paper_protocol_nats_per_image": -183.754})
    partial = tmp_path / "vae-run"
    partial.mkdir()
    (partial / "metrics.json").write_text(json.dumps({
        "model": "beta_vae", "log_likelihood_nats_per_image": -190.0, "n_is_samples": 10,
        "equivariance_error": None, "equivariance_ratio": float("nan")}))
    bare = tmp_path / "not-evaluated"
    bare.mkdir()
    table = compare_table([full, partial, bare])
    lines = table.splitlines()
    assert len(lines) == 5
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[0] == "run" and "ratio" in header and "roll-prediction NLL" in header
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert row == ["tvae-run", "tvae", "-186.05 (n=10)", "1,234.6", "4,321.0", "0.286", "201.50",
                   "-183.75"]
    row = [c.strip() for c in lines[3].strip("|").split("|")]
    assert row == ["vae-run", "beta_vae", "-190.00 (n=10)", "–", "–", "–", "–", "–"]
    row = [c.strip() for c in lines[4].strip("|").split("|")]
    assert row[0] == "not-evaluated" and row[1:] == ["–"] * 7
    with pytest.raises(ValueError, match="run_dirs"):
        compare_table([])
    with pytest.raises(ValueError, match="run_dirs"):
        compare_table([tmp_path / "missing"])
