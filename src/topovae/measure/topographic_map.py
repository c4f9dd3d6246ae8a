"""The topographic map of a torus model: neighbour correlation of the units' class profiles
against shuffled maps, and the same for the untrained twin (the coupling alone makes an
untrained map partly smooth)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from topovae.measure.base import Column, Control, Measurement, register
from topovae.measure.context import EvaluationContext
from topovae.models.capabilities import TorusMap, torus_grid

__all__ = ["TopographicMap", "topographic_map"]


def topographic_map(model: torch.nn.Module, bundle: Any, n_images: int, seed: int
                    ) -> dict[str, Any] | None:
    """Topographic score of the torus of ``model`` on the first ``n_images`` test images, each
    encoded alone; ``None`` for unlabelled data."""
    from topovae.metrics.topographic_map import topographic_score

    loader = bundle.test
    loader.set_epoch(0)
    device = next(model.parameters()).device
    codes, labels, total = [], [], 0
    for batch in loader:
        frame_labels = batch.get("labels")
        if frame_labels is None or bool((frame_labels < 0).any()):
            return None  # unlabelled data: no class profiles
        x = batch["x"]
        codes.append(model.representation(x.flatten(0, 1).to(device)).cpu())
        labels.append(frame_labels.repeat_interleave(x.shape[1]))
        total += len(codes[-1])
        if n_images and total >= n_images:
            break
    if not codes:
        return None
    limit = n_images or total
    score = topographic_score(torch.cat(codes)[:limit], torch.cat(labels)[:limit],
                              torus_grid(model), seed=seed)
    return {**score, "n_images": min(limit, total)}


@register
class TopographicMap(Measurement):
    name = "topographic_map"
    requires = TorusMap
    order = 70
    writes = ("topographic_map", "topographic_map.n_images")
    columns = (
        Column("topographic_map.score", "map neighbour correlation", "correlation (-1 to 1)", 3,
               False, "topographic map",
               "Mean correlation of the class profiles of neighbouring units on the torus: "
               "how smooth the map of preferred classes is.",
               (Control("topographic_map.control", "units shuffled on the map"),
                Control("topographic_map.score_untrained", "same network untrained")),
               short="map neighbour corr.", name="topographic_score"),
        Column("topographic_map.control", "map correlation, shuffled units",
               "correlation (-1 to 1)", 3, None, "topographic map",
               "The same for the units shuffled on the map.", short="shuffled-map corr.",
               name="topographic_control", views=frozenset({"compare"})),
        Column("topographic_map.score_untrained", "map correlation, untrained",
               "correlation (-1 to 1)", 3, False, "topographic map",
               "The same for the network untrained.", short="map corr. untrained",
               name="topographic_score_untrained", views=frozenset({"compare"})),
        Column("topographic_map.excess", "map correlation over shuffled", "correlation", 3,
               False, "topographic map", "The neighbour correlation minus its shuffled-map "
               "control.", views=frozenset({"report"})),
        Column("topographic_map.control_std", "shuffled-map spread", "standard deviation", 3,
               None, "topographic map", "Standard deviation of the correlation over the "
               "shuffled maps (how far from the control chance alone goes).",
               views=frozenset({"report"})),
    )

    def applicable(self, ctx: EvaluationContext) -> bool:
        return torus_grid(ctx.model) is not None

    def run(self, ctx: EvaluationContext) -> Mapping[str, Any]:
        n, seed = ctx.settings.n_map_images, ctx.seed
        found = topographic_map(ctx.model, ctx.bundle, n, seed=seed)
        if found is not None:
            untrained = topographic_map(ctx.untrained(), ctx.bundle, n, seed=seed)
            found["score_untrained"] = untrained["score"]
        return {"topographic_map": found}
