"""Experiment presets: one YAML file per experiment of the paper, stored as data.

A preset file holds the keys of an :class:`~topovae.training.experiment.ExperimentConfig`
(``description``, ``notes``, ``model``, ``data``, ``train``, ``evaluate``) and optionally
``extends``: the name of another preset, or a list of names, merged first (in order; nested
sections merge key by key, so a ``-cpu`` variant lists only what it changes). Files whose name
starts with ``_`` are shared building blocks, not listed as presets.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

from topovae.config import read_yaml

__all__ = ["preset_names", "preset_descriptions", "load_preset_dict", "load_preset",
           "merge_extends"]

_SUFFIX = ".yaml"


def _files() -> dict[str, Any]:
    root = resources.files(__name__)
    return {entry.name[: -len(_SUFFIX)]: entry for entry in root.iterdir()
            if entry.name.endswith(_SUFFIX)}


def preset_names() -> list[str]:
    """Names of every listed preset, sorted."""
    return sorted(name for name in _files() if not name.startswith("_"))


def merge_extends(data: Mapping[str, Any], _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data`` merged over the presets its ``extends`` names, in order (OmegaConf's merge:
    nested sections key by key, lists and values replace; so a child's ``description`` and
    ``notes`` replace the parent's)."""
    data = dict(data)
    parents = data.pop("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(name, str) for name in parents):
        raise ValueError(f"extends must name a preset or list presets, got {parents!r}")
    layers = [load_preset_dict(parent, _seen) for parent in parents]
    return OmegaConf.to_container(OmegaConf.merge(*layers, data))  # type: ignore[return-value]


def load_preset_dict(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset ``name`` as a plain dict with its ``extends`` chain merged in."""
    files = _files()
    if name not in files:
        raise ValueError(f"unknown preset {name!r}; run `topovae presets` to list them "
                         f"(known: {', '.join(preset_names())})")
    if name in _seen:
        raise ValueError(f"preset {name!r} extends itself (chain: {' -> '.join(_seen + (name,))})")
    return merge_extends(read_yaml(files[name].read_text(), f"preset {name!r}"), _seen + (name,))


def load_preset(name: str) -> Any:
    """The preset ``name`` as a validated :class:`ExperimentConfig`."""
    from topovae.training.experiment import ExperimentConfig

    return ExperimentConfig.from_dict(load_preset_dict(name))


def preset_descriptions() -> dict[str, str]:
    """``{name: one-line description}`` for every listed preset."""
    out = {}
    for name in preset_names():
        description = str(load_preset_dict(name).get("description", "")).strip()
        out[name] = " ".join(description.split())
    return out
