"""Typed dataclasses from plain data: every field checked against its annotation, built from a
JSON object or parsed from a command-line string, with errors that name the field. Generic: it
knows nothing of models (config.py's dataclasses are built with it).

Types understood: int, float, bool, str, a Literal of strings, an optional one (X | None), and
tuples of strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Literal

from glassformer.errors import ConfigError


def from_dict(cls, data: dict):
    """Build dataclass `cls` from a dict, rejecting unknown keys with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    reject_unknown(cls, data, cls.__name__)
    hints = typing.get_type_hints(cls)
    values = {k: tuple(v) if _is_tuple(hints[k]) and isinstance(v, list) else v
              for k, v in data.items()}
    return cls(**values)


def parse_value(tp, raw: str, name: str):
    """Parse a command-line string into a value of type `tp` (int, float, bool, str,
    a Literal, an optional one, or a tuple of strings)."""
    args = typing.get_args(tp)
    if _is_optional(tp):
        if raw.lower() in ("none", "null"):
            return None
        tp = next(a for a in args if a is not type(None))
    if _is_tuple(tp):
        return tuple(raw.split(",")) if raw else ()
    if tp is bool:
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if tp in (int, float):
        try:
            return tp(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {'an integer' if tp is int else 'a number'}, "
                              f"got {raw!r}") from None
    return raw  # str and Literal: checked by the dataclass


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def field_help(cls) -> list[str]:
    """Each field's name, with its allowed values when it is a Literal: "norm (layernorm|rmsnorm)"."""
    hints = typing.get_type_hints(cls)
    out = []
    for name in field_names(cls):
        tp = hints[name]
        if _is_optional(tp):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        choices = typing.get_args(tp) if typing.get_origin(tp) is Literal else ()
        out.append(f"{name} ({'|'.join(map(str, choices))})" if choices else name)
    return out


def reject_unknown(cls, data: dict, where: str) -> None:
    known = field_names(cls)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown option {key!r} in {where}{hint}")


def require(cfg, name: str, ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"{type(cfg).__name__}.{name} {message}, got {getattr(cfg, name)!r}")


def check_types(cfg) -> None:
    """Check every field against its annotation, naming the field on a mismatch."""
    for name, tp in typing.get_type_hints(type(cfg)).items():
        value = getattr(cfg, name)
        if not _matches(tp, value):
            expected = " or ".join(repr(a) for a in typing.get_args(tp)) \
                if typing.get_origin(tp) is Literal else getattr(tp, "__name__", str(tp))
            raise ConfigError(f"{type(cfg).__name__}.{name} must be {expected}, got {value!r}")


def _matches(tp, value) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if _is_optional(tp):
        return value is None or any(_matches(a, value) for a in typing.get_args(tp)
                                    if a is not type(None))
    if _is_tuple(tp):
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _is_optional(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(tp)


def _is_tuple(tp) -> bool:
    return typing.get_origin(tp) is tuple


def changed_fields_repr(cfg) -> str:
    """`Name(field=value, ...)` with only the fields that differ from their defaults: what makes
    this config this one, readable in a notebook (the full list is dataclasses.asdict). Evaluating
    it gives an equal config."""
    changed = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value != default:
            changed.append(f"{f.name}={value!r}")
    return f"{type(cfg).__name__}({', '.join(changed)})"
