"""The report of a run: PNG figures and one self-contained ``RUN/report/index.html``.

:func:`build_report` gathers what a run directory holds (config, final model, training log,
``metrics.json``), rebuilds a few test sequences, draws the figures of :mod:`.figures` and writes
an HTML page with every image embedded as a base64 data URI and inline CSS, so the single file
can be mailed or opened in any browser offline. Each section whose input is missing (no model
yet, no log, no metrics, data not available here) is replaced by a short note instead of failing
the whole report.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from topovae.io import atomic_write_text
from topovae.models.capabilities import (
    CapsuleCodes,
    ImageAutoencoder,
    Representation,
    Sampler,
    torus_grid,
)
from topovae.report import explorer, figures
from topovae.report.numbers import (
    NUMBERS_STYLE,
    data_budget_text,
    metrics_tables_html,
    per_transformation_html,
)
from topovae.rundir import ROLL_TRAVERSAL, RunDir
from topovae.training.experiment import ExperimentConfig

__all__ = ["Section", "render_html", "build_report", "embed_png"]

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.8em} p.note{color:#777;font-style:italic}
p.caption{color:#444;font-size:.92em;max-width:900px} img{max-width:100%;height:auto;
image-rendering:pixelated;border:1px solid #eee} table{border-collapse:collapse;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left} th{background:#f4f4f4}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
""" + explorer.EXPLORER_STYLE + NUMBERS_STYLE


@dataclasses.dataclass
class Section:
    """One part of the page: a title, HTML body (already escaped) and an optional note."""

    title: str
    body: str = ""
    note: str = ""


def embed_png(path: str | Path, alt: str) -> str:
    """``<img>`` tag holding the PNG at ``path`` as a base64 data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


_SECTION_ORDER = {"Capsule explorer": -1, "Capsule-roll traversal": 0, "Topographic map": 1,
                  "Topographic score": 2,
                  "Metrics": 3, "Reconstructions": 4, "Samples": 5, "Training curves": 6,
                  "Model": 7, "Data": 8, "Configuration": 9}


def render_html(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """A complete HTML document (inline CSS, no external resource) of ``sections``."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p>{html.escape(subtitle)}</p>")
    for section in sections:
        slug = re.sub(r"[^a-z0-9]+", "-", section.title.lower()).strip("-")
        parts.append(f'<section id="{slug}"><h2>{html.escape(section.title)}</h2>')
        if section.body:
            parts.append(section.body)
        if section.note:
            parts.append(f'<p class="note">{html.escape(section.note)}</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- reading a run ------------------------------------------------------------------------------
def _first_batches(split: Any, max_images: int) -> dict[str, torch.Tensor] | None:
    """Up to ``max_images`` frames' worth of the first batches of a loader (epoch 0)."""
    split.set_epoch(0)
    xs, labels, varied = [], [], []
    count = 0
    for batch in split:
        x = batch["x"]
        xs.append(x)
        if batch.get("labels") is not None:
            labels.append(batch["labels"])
        factors = batch.get("factors")
        if isinstance(factors, Mapping) and isinstance(factors.get("varied"), torch.Tensor):
            varied.append(factors["varied"][:, 0])
        count += x.shape[0] * x.shape[1]
        if count >= max_images:
            break
    if not xs:
        return None
    out = {"x": torch.cat(xs)}
    if len(labels) == len(xs):
        out["labels"] = torch.cat(labels)
    if len(varied) == len(xs):
        out["varied"] = torch.cat(varied)
    return out


def _test_batch(experiment: ExperimentConfig, max_images: int
                ) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Rebuild test sequences of the run's data config; ``(None, reason)`` if impossible."""
    from topovae.data.loaders import build_data
    from topovae.data.sequences import sequence_traits

    data_config = experiment.data
    try:
        bundle = build_data(data_config, seed=experiment.train.seed)
    except (ValueError, FileNotFoundError, OSError) as err:
        return None, f"test data could not be rebuilt here ({err})"
    for split_name, split in (("test", bundle.test), ("val", bundle.val), ("train", bundle.train)):
        batch = _first_batches(split, max_images)
        if batch is not None:
            names = sequence_traits(data_config.test_sequences or data_config.sequences
                                    ).stepped_factors
            if names is None:
                batch.pop("varied", None)
            else:
                batch["varied_names"] = names
            return batch, f"{split_name} split"
    return None, "the data bundle yielded no batches"


def _model_section_inputs(model: Any, x: torch.Tensor) -> dict[str, Any]:
    """Decodes of the deterministic codes (``latent_codes``/``representation``), no gradients."""
    out: dict[str, Any] = {}
    with torch.no_grad():
        if isinstance(model, CapsuleCodes):
            out["recon"] = torch.sigmoid(model.decode(model.latent_codes(x)))
        elif isinstance(model, ImageAutoencoder):
            images = x.flatten(0, 1)
            out["recon"] = torch.sigmoid(model.decode(model.representation(images))).view_as(x)
        else:
            out["recon"] = torch.sigmoid(model(x).logits)
    return out


def _roll_traversal(model: Any, x: torch.Tensor, n_sequences: int) -> tuple[Any, Any, Any]:
    """True frames and decodes of frame 0's capsules rolled by ``k = 0 .. S-1``.

    Twice: frame 0 encoded alone (``context="first_frame"``: predictions that use nothing of
    the later frames), and frame 0's code taken from its whole sequence as in training (what the
    paper's traversals show; the temporal coupling lets it see frames inside the time window).
    """
    from topovae.metrics.roll import roll_prediction

    x = x[:n_sequences]
    shifts = list(range(x.shape[1]))
    result = roll_prediction(model, x, shifts=shifts, n_keep=n_sequences)
    context = roll_prediction(model, x, shifts=shifts, n_keep=n_sequences, context="sequence")
    return result.targets, result.predictions, context.predictions


def _metrics_section(run: RunDir, config: Mapping[str, Any]) -> Section:
    """Grouped tables of ``metrics.json`` with units, meaning and controls, and the data and
    budget in words."""
    try:
        metrics = dict(run.results().values)
        summary = run.train_summary()
    except ValueError as err:
        return Section("Metrics", note=str(err))
    words = data_budget_text(metrics, config, summary)
    body = "".join(f"<p>{html.escape(s)}</p>" for s in words)
    if not metrics:
        return Section("Metrics", body, note="no metrics.json yet (run topovae evaluate)")
    tables = metrics_tables_html(metrics)
    per = per_transformation_html(metrics.get("per_transformation"))
    if per:
        tables += "<h3>per transformation</h3>" + per
    return Section("Metrics", body + (tables or '<p class="note">metrics.json holds no '
                                      "measurement this page knows how to show</p>"))


def build_report(run_dir: str | Path, *, batch: Mapping[str, torch.Tensor] | None = None,
                 n_sequences: int = 4, max_map_images: int = 2000, seed: int = 0) -> Path:
    """Write ``RUN/report/*.png`` and the self-contained ``RUN/report/index.html``; return it.

    ``batch`` (``{"x": (B, S, C, H, W), "labels": (B,)}``) replaces the test data rebuilt from the
    run's data config (useful when the data are not available on this machine).
    """
    run = RunDir(run_dir).check_is_dir("run_dir")
    run_dir = run.path
    experiment = run.config_if_present()  # a broken or incompatible config.yaml: ValueError
    config = experiment.to_dict() if experiment is not None else {}
    out_dir = run.report_dir
    out_dir.mkdir(exist_ok=True)
    model_name = experiment.model.name if experiment is not None else ""
    sections: list[Section] = []

    def figure(title: str, filename: str, draw: Callable[[Path], Path], caption: str) -> None:
        try:
            path = draw(out_dir / filename)
        except (ValueError, RuntimeError, KeyError, IndexError) as err:
            sections.append(Section(title, note=f"not drawn: {err}"))
            return
        sections.append(Section(title, embed_png(path, title)
                                + f'<p class="caption">{html.escape(caption)}</p>'))

    # metrics
    sections.append(_metrics_section(run, config))

    # training curves
    csv_path = run.metrics_csv()
    if csv_path is None:
        sections.append(Section("Training curves", note="no logs/**/metrics.csv found"))
    else:
        figure("Training curves", "training_curves.png",
               lambda p: figures.plot_training_curves(csv_path, p),
               f"From {csv_path.relative_to(run_dir)}; train and validation values per step: "
               "the loss and its terms (recon_nll: reconstruction, nats per image; kl_z, kl_u: "
               "the KL terms of the two latent variables; mu: the learned offset of the "
               "capsule code), and where train.eval_every_n_steps was set, the equivariance "
               "ratio and the roll-prediction gain (nats per image over predicting no change) "
               "on a fixed held-out batch.")

    # model-dependent sections
    model = None
    if run.has_model:
        try:
            model = run.model()
            model.eval()
        except (ValueError, OSError, RuntimeError) as err:
            sections.append(Section("Model", note=f"the saved model could not be loaded: {err}"))
    else:
        sections.append(Section("Model", note="no saved model (model.json) in the run yet"))

    data_source = "batch given to build_report"
    if model is not None and batch is None:
        if experiment is None:
            batch, data_source = None, "the run has no config.yaml to rebuild its data from"
        else:
            batch, data_source = _test_batch(experiment, max_map_images)
        if batch is None:
            sections.append(Section("Data", note=data_source))
    if model is not None and batch is not None:
        _model_sections(model, batch, n_sequences, data_source, figure, sections)

    if experiment is not None:
        sections.append(Section("Configuration", "<details><summary>config.yaml of the run"
                                "</summary><pre>" + html.escape(run.config_path.read_text())
                                + "</pre></details>"))
    else:
        sections.append(Section("Configuration", note="no config.yaml in the run directory"))

    # what a reader comes for first: the pictures of the learned structure, then the numbers
    sections.sort(key=lambda section: _SECTION_ORDER.get(section.title.split(":")[0], 99))
    title = f"topovae report: {run_dir.name}"
    subtitle = " — ".join(s for s in (model_name, str(config.get("description", ""))) if s)
    return atomic_write_text(run.report_index, render_html(title, sections, subtitle))


def _model_sections(model: Any, batch: Mapping[str, Any], n_sequences: int, data_source: str,
                    figure: Callable[[str, str, Callable[[Path], Path], str], None],
                    sections: list[Section]) -> None:
    x = batch["x"]
    device = next(model.parameters()).device
    x = x.to(device=device, dtype=next(model.parameters()).dtype)
    x_small = x[:n_sequences]
    n_frames = x.shape[1]

    if isinstance(model, CapsuleCodes) and n_frames > 1:
        try:
            explore = explorer.capsule_explorer_data(model, x[:max(n_sequences, 8)])
            labels = _sequence_labels(batch.get("varied"), batch.get("varied_names"),
                                      len(explore.truth))
        except (ValueError, RuntimeError) as err:
            sections.append(Section("Capsule explorer", note=f"not computed: {err}"))
        else:
            sections.append(Section("Capsule explorer", explorer.capsule_explorer_html(
                explore, sequence_labels=labels)
                                    + '<p class="caption">' + html.escape(
                "Pick a test sequence and drag the slider: k = 0 .. S-1. An equivariant "
                "capsule code turns the transformation of the input into a roll of every "
                "capsule, so the decode of frame 0's code rolled by k should look like the "
                "true frame k, and the code of frame k (right) should look like the rolled "
                "code of frame 0 (its neighbour): colour patterns moving sideways as k grows. "
                f"Data: {data_source}.") + "</p>"))
        try:
            truth, rolled, context = _roll_traversal(model, x_small, n_sequences)
        except (ValueError, RuntimeError) as err:
            sections.append(Section("Capsule-roll traversal", note=f"not computed: {err}"))
        else:
            figure("Capsule-roll traversal", ROLL_TRAVERSAL,
                   lambda p: figures.plot_roll_traversal(truth, rolled, p,
                                                         context_decodes=context),
                   "First row of each group: the true frames x_k of a test sequence. Second: "
                   "frame 0 encoded on its own (no later frame seen), every capsule rolled by k "
                   "units, decoded (Figure 1 of the paper). Third: the same with frame 0's code "
                   "computed from the whole sequence, as in training and in the paper's "
                   "figures (the temporal coupling lets it see the frames inside the time "
                   f"window). Data: {data_source}.")
    else:
        sections.append(Section("Capsule-roll traversal",
                                note="needs a capsule model (latent_codes/decode) and sequences"))

    try:
        recon = _model_section_inputs(model, x_small)["recon"]
    except (ValueError, RuntimeError) as err:
        sections.append(Section("Reconstructions", note=f"not computed: {err}"))
    else:
        frames = max(1, 12 // max(1, x_small.shape[0]))
        figure("Reconstructions", "reconstructions.png",
               lambda p: figures.plot_reconstructions(x_small[:, :frames].cpu(),
                                                      recon[:, :frames].cpu(), p),
               f"Test images and the decodes of their deterministic codes. Data: {data_source}.")

    if isinstance(model, Sampler):
        generator = torch.Generator(device=device).manual_seed(0)
        try:
            n_samples = max(1, min(4, n_sequences)) if _samples_sequences(model) else 16
            samples = model.sample(n_samples, generator=generator)
        except (ValueError, RuntimeError, TypeError) as err:
            sections.append(Section("Samples", note=f"not computed: {err}"))
        else:
            figure("Samples", "samples.png", lambda p: figures.plot_samples(samples.cpu(), p),
                   "Decoded pixel probabilities of latents drawn from the prior"
                   + (" (one sequence per row: z and u drawn from N(0, 1), coupled through the "
                      "topography over time)" if _samples_sequences(model) else "")
                   + ". A well-trained model draws sharp, data-like images (digits for MNIST), "
                   "changing smoothly along a row; dim, blurry blobs mean the model has not "
                   "learned the data distribution yet (usual after minutes of CPU training).")

    grid = torus_grid(model)
    if grid is not None and isinstance(model, Representation):
        labels = batch.get("labels")
        if labels is None:
            sections.append(Section("Topographic map", note="the test data carry no labels"))
            return
        images = x.flatten(0, 1)
        frame_labels = torch.as_tensor(labels).repeat_interleave(x.shape[1]).cpu()
        with torch.no_grad():
            codes = torch.cat([model.representation(chunk) for chunk in images.split(256)]).cpu()
        try:
            score = figures.topographic_score(codes, frame_labels, grid, seed=0)
        except ValueError as err:
            sections.append(Section("Topographic map", note=f"not computed: {err}"))
            return
        figure("Topographic map: class selectivity", "class_selectivity.png",
               lambda p: figures.plot_class_selectivity(codes, frame_labels, grid, p),
               f"Class with the highest mean activation of each unit of the {grid[0]}x{grid[1]} "
               f"torus, over {images.shape[0]} test images (Figure 3 of the paper). Neighbour "
               f"profile correlation {score['score']:.3f} against {score['control']:.3f} "
               f"(± {score['control_std']:.3f}) on shuffled maps.")
        figure("Topographic map: most activating images", "max_activating.png",
               lambda p: figures.plot_max_activating(images.cpu(), codes, grid, p),
               "For each unit, the test image that activates it most, placed on the torus.")
        try:
            torus = explorer.torus_explorer_data(images.cpu(), codes, frame_labels, grid)
        except ValueError as err:
            sections.append(Section("Topographic map: explorer", note=f"not drawn: {err}"))
        else:
            sections.append(Section("Topographic map: explorer", explorer.torus_explorer_html(
                torus) + '<p class="caption">' + html.escape(
                f"The {grid[0]}x{grid[1]} torus, each unit coloured by the class that "
                "activates it most on average. Hover over a unit (or Tab to it) to see its "
                "most activating test images and its mean activation per class (bars scaled "
                "to the largest mean of the map).") + "</p>"))
        sections.append(Section("Topographic score", "<p>" + html.escape(
            f"Neighbouring units' class profiles correlate {score['score']:.3f} on average "
            f"(-1 to 1, higher is more topographic), against {score['control']:.3f} "
            f"± {score['control_std']:.3f} for the same units shuffled on the map "
            f"(excess {score['excess']:.3f}); {images.shape[0]} test images.") + "</p>"))


def _samples_sequences(model: Any) -> bool:
    """True if ``model.sample(n)`` returns sequences ``(n, S, C, H, W)`` (capsule models do)."""
    return isinstance(model, CapsuleCodes)


def _sequence_labels(varied: Any, names: Any, n: int) -> list[str] | None:
    """``"test sequence 3 (hue)"`` from the index of the factor each sequence varies."""
    if not isinstance(varied, torch.Tensor) or len(varied) < n or not names:
        return None
    found = [names[int(v)] if 0 <= int(v) < len(names) else None for v in varied[:n]]
    return [f"test sequence {i + 1}" + (f" ({name})" if name else "")
            for i, name in enumerate(found)]
