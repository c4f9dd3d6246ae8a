"""Typed configurations that round-trip through dicts, YAML and JSON, and name registries.

Every model, data pipeline and training run is described by a dataclass that subclasses
:class:`Config`. A config can be written next to the weights of a model and read back to rebuild
exactly the same module, and a preset is nothing but a dict of overrides applied to the defaults.

The typing is OmegaConf's (structured configs): a value is checked against its field's annotation
and converted where OmegaConf converts (``"1e-3"`` to a float field, ``[3, 28, 28]`` to a tuple);
unknown keys, values of the wrong type and non-finite floats are a one-line :class:`ValueError`
naming the key: silently ignoring a typo in a hyper-parameter is the worst thing an experiment
tool can do. YAML is read with OmegaConf's safe loader (no Python tags, ``1e-3`` is a float).
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from topovae.io import atomic_write_text

C = TypeVar("C", bound="Config")
T = TypeVar("T")

# set while OmegaConf builds a config from checked values (its __post_init__ then only validates)
_TYPED = contextvars.ContextVar("topovae_config_typed", default=False)
_KEY_ERRORS = (ConfigKeyError, ConfigAttributeError)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def unknown_key_message(err: ConfigKeyError | ConfigAttributeError, where: str) -> str:
    """The error of a key that is not in the config (``where``: what the top level is called)."""
    full = str(err.full_key or err.key)
    parent = full.rpartition(".")[0]
    valid = sorted(map(str, err.parent_node)) if isinstance(err.parent_node, DictConfig) else []
    if not valid and parent:
        return f"config key {parent!r} is a value, not a section; cannot set {full!r}"
    return (f"unknown config key {full!r} ({str(err.key)!r} is not a key of {parent or where}); "
            f"valid keys: {', '.join(valid)}")


def read_yaml(text: str, what: str) -> dict[str, Any]:
    """The mapping in the YAML ``text`` (``what`` names it in errors), interpolations unresolved."""
    try:
        tree = OmegaConf.load(io.StringIO(text))
    except (yaml.YAMLError, OSError, OmegaConfBaseException) as err:
        raise ValueError(f"{what} is not valid YAML ({one_line(err)})") from None
    if not isinstance(tree, DictConfig):
        raise ValueError(f"{what} is not a mapping")
    return OmegaConf.to_container(tree)  # type: ignore[return-value]


@functools.cache
def _schema(cls: type[Config]) -> DictConfig:
    """The structured config of ``cls`` with its defaults (built once: building is slow)."""
    return OmegaConf.structured(cls)


def _raise_naming_the_key(cls: type[Config], data: Mapping[str, Any]) -> None:
    """Merge ``data`` into the defaults of ``cls`` one key at a time: raise a ``ValueError``
    naming the first key that OmegaConf refuses (its own errors do not always name it)."""
    tree = copy.deepcopy(_schema(cls))
    for key, value in data.items():
        try:
            tree.merge_with({key: value})
        except _KEY_ERRORS as err:
            raise ValueError(unknown_key_message(err, cls.__name__)) from None
        except OmegaConfBaseException as err:
            name, bad = (err.full_key, err.value) if err.full_key else (key, value)
            message = str(err).strip().splitlines()[0]
            raise ValueError(f"config value {name}={bad!r}: {message}") from None


def _typed(cls: type[C], data: Mapping[str, Any]) -> C:
    """``cls`` with ``data`` over its defaults, typed and validated by OmegaConf."""
    token = _TYPED.set(True)
    try:
        tree = copy.deepcopy(_schema(cls))
        try:
            tree.merge_with(data)
        except OmegaConfBaseException:
            _raise_naming_the_key(cls, data)
            raise
        try:
            return OmegaConf.to_object(tree)  # type: ignore[return-value]
        except OmegaConfBaseException as err:  # e.g. an interpolation that does not resolve
            raise ValueError(f"{cls.__name__}: {one_line(err)}") from None
    finally:
        _TYPED.reset(token)


@dataclasses.dataclass
class Config:
    """Base class of all configuration dataclasses.

    Subclasses are ordinary ``@dataclass`` classes; they get typing and validation on construction
    (override :meth:`validate` to add range checks), conversion to and from plain dicts, YAML and
    JSON, and :meth:`replace` for overrides.
    """

    def __post_init__(self) -> None:
        if not _TYPED.get():  # built by hand: type the values through OmegaConf, which validates
            typed = _typed(type(self), {f.name: getattr(self, f.name)
                                        for f in dataclasses.fields(self)})
            self.__dict__.update(typed.__dict__)
            return
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"config value {field.name}={value!r} must be a finite number")
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
        return _typed(cls, data)

    def replace(self: C, **overrides: Any) -> C:
        return type(self).from_dict({**self.to_dict(), **overrides})

    def evolve(self: C, **changes: Any) -> C:
        """A copy with ``changes`` that are already typed (configs, or values of another config):
        validated, but not typed again (typing is what makes a config slow to build)."""
        token = _TYPED.set(True)
        try:
            return dataclasses.replace(self, **changes)
        finally:
            _TYPED.reset(token)

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self.to_dict())

    @classmethod
    def from_yaml(cls: type[C], text: str) -> C:
        return cls.from_dict(read_yaml(text, f"{cls.__name__} YAML"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
        path = Path(path)
        atomic_write_text(path, self.to_yaml() if path.suffix in (".yaml", ".yml")
                          else self.to_json())

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
