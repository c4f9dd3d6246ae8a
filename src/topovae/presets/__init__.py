"""Experiment presets: one YAML file per experiment of the paper, stored as data.

A preset file holds the keys of an :class:`~topovae.training.experiment.ExperimentConfig`
(``description``, ``notes``, ``model``, ``data``, ``train``, ``evaluate``) and optionally
``extends``: the name of another preset, or a list of names, merged first (in order; nested
sections merge key by key, so a ``-cpu`` variant lists only what it changes). Files whose name
starts with ``_`` are shared building blocks, not listed as presets.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

__all__ = ["preset_names", "preset_descriptions", "load_preset_dict", "load_preset",
           "deep_merge"]

_SUFFIX = ".yaml"


def _files() -> dict[str, Any]:
    root = resources.files(__name__)
    return {entry.name[: -len(_SUFFIX)]: entry for entry in root.iterdir()
            if entry.name.endswith(_SUFFIX)}


def preset_names() -> list[str]:
    """Names of every listed preset, sorted."""
    return sorted(name for name in _files() if not name.startswith("_"))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; nested mappings merge key by key, the rest replaces."""
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def load_preset_dict(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset ``name`` as a plain dict with its ``extends`` chain merged in."""
    files = _files()
    if name not in files:
        raise ValueError(f"unknown preset {name!r}; run `topovae presets` to list them "
                         f"(known: {', '.join(preset_names())})")
    if name in _seen:
        raise ValueError(f"preset {name!r} extends itself (chain: {' -> '.join(_seen + (name,))})")
    data = yaml.safe_load(files[name].read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {name!r} is not a mapping")
    parents = data.pop("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = deep_merge(merged, load_preset_dict(parent, _seen + (name,)))
    # a child's description/notes replace the parent's, they are not merged
    return deep_merge(merged, data)


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
