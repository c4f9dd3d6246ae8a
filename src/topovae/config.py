"""Typed configurations that round-trip through dicts, YAML and JSON, and name registries.

Every model, data pipeline and training run is described by a dataclass that subclasses
:class:`Config`. A config can be written next to the weights of a model and read back to rebuild
exactly the same module, and a preset is nothing but a dict of overrides applied to the defaults.
Unknown keys and values of the wrong type are rejected with a :class:`ValueError` naming the key:
silently ignoring a typo in a hyper-parameter is the worst thing an experiment tool can do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, get_args, get_origin

import yaml

C = TypeVar("C", bound="Config")
T = TypeVar("T")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation; convert where the conversion is lossless."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(name, value, option)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"config value {name}={value!r} matches none of {annotation}")
    if origin is typing.Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ValueError(f"config value {name}={value!r} must be one of {list(allowed)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config value {name}={value!r} must be a list")
        args = get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"config value {name}={value!r} must have {len(args)} items")
            pairs = enumerate(zip(value, args, strict=True))
            items = [_coerce(f"{name}[{i}]", v, a) for i, (v, a) in pairs]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(f"{name}[{i}]", v, item_type) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"config value {name}={value!r} must be a mapping")
        return dict(value)
    if isinstance(annotation, type) and issubclass(annotation, Config):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"config value {name}={value!r} must be a mapping")
        return annotation.from_dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config value {name}={value!r} must be true or false")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"config value {name}={value!r} must be an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config value {name}={value!r} must be a number")
        if not math.isfinite(value):
            raise ValueError(f"config value {name}={value!r} must be a finite number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"config value {name}={value!r} must be a string")
        return value
    return value


@dataclasses.dataclass
class Config:
    """Base class of all configuration dataclasses.

    Subclasses are ordinary ``@dataclass`` classes; they get validation on construction (override
    :meth:`validate` to add range checks), conversion to and from plain dicts, YAML and JSON, and
    :meth:`replace` for overrides.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            setattr(self, field.name, _coerce(field.name, value, hints[field.name]))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field if the values are inconsistent."""

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Config):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
        known = set(cls.field_names())
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(known)}"
            )
        return cls(**dict(data))

    def replace(self: C, **overrides: Any) -> C:
        merged = self.to_dict()
        unknown = sorted(set(overrides) - set(merged))
        if unknown:
            raise ValueError(
                f"unknown {type(self).__name__} key(s) {unknown}; valid keys: {sorted(merged)}"
            )
        merged.update(overrides)
        return type(self).from_dict(merged)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls: type[C], text: str) -> C:
        return cls.from_dict(yaml.safe_load(text) or {})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        text = path.read_text()
        return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)


class Registry(Generic[T]):
    """A name -> object table with a helpful error for unknown names.

    Used for models, metrics and presets so that the CLI and configs refer to things by name
    instead of through chains of ``if``/``elif``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of {sorted(self._items)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
