"""Build typed dataclass configs from plain dicts, checking every key, type and range.

Errors are raised as :class:`ConfigError` carrying the dotted key, so the CLI can print one line
that names the key and what is allowed, instead of a traceback from deep inside training.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from rcdml.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value that cannot be used; the message names the dotted key."""

    kind = "config error"


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field whose numeric value (or every element, for lists) must lie in a range."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"list of {type_name(inner)}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[allowed.index(value)]):
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: "
                          + ", ".join(str(a) for a in allowed))
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        # Passed through to a library that checks its own arguments (model.timm_kwargs).
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping of names to values, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}: {value!r} is not a finite number")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None or not isinstance(v, (int, float)):
            continue
        bad = ((meta.get("ge") is not None and v < meta["ge"])
               or (meta.get("gt") is not None and v <= meta["gt"])
               or (meta.get("le") is not None and v > meta["le"])
               or (meta.get("lt") is not None and v >= meta["lt"]))
        if bad:
            parts = [f"{sym} {meta[name]}" for name, sym in
                     (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if meta.get(name) is not None]
            raise ConfigError(f"{key}: {v!r} is out of range; must be " + " and ".join(parts))


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data`` (a mapping), validating recursively."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            dotted = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigError(f"{dotted}: unknown key; allowed keys in {where}: "
                              + ", ".join(sorted(fields)))
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name in data:
            value = _convert(data[name], hints[name], dotted)
        elif dataclasses.is_dataclass(hints[name]):
            value = build(hints[name], {}, dotted)
        else:
            continue
        _check_range(value, f.metadata, dotted)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain nested dict of a config, suitable for YAML."""
    return dataclasses.asdict(obj)
