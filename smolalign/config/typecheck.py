"""Check (and gently coerce) YAML values against dataclass field annotations, collecting every problem.

YAML reads `3e-4` as a string and users write `1` where a float is meant; both are accepted where the
annotation makes the meaning plain. Anything else that does not fit is reported with key, value and type.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing

_MISSING = object()


def type_name(annotation) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(annotation))
    return str(annotation).replace("typing.", "")


def coerce(value, annotation):
    """Return the value converted to fit `annotation`, or `_MISSING` when it does not fit."""
    if annotation is typing.Any or annotation is object:
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        # exact fits first, so `int | str` keeps 5 an int and "5" a string
        for arg in args:
            if _fits_exactly(value, arg):
                return value
        for arg in args:
            result = coerce(value, arg)
            if result is not _MISSING:
                return result
        return _MISSING
    if origin is typing.Literal:
        return value if value in typing.get_args(annotation) else _MISSING
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _MISSING
        (item_type, *_) = typing.get_args(annotation) or (typing.Any,)
        items = [coerce(item, item_type) for item in value]
        return _MISSING if any(item is _MISSING for item in items) else items
    if origin is dict or annotation is dict:
        return value if isinstance(value, dict) else _MISSING
    if annotation is type(None):
        return value if value is None else _MISSING
    if annotation is bool:
        return value if isinstance(value, bool) else _MISSING
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if annotation is float:
        if isinstance(value, bool):
            return _MISSING
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _MISSING
        return _MISSING
    if annotation is str:
        return value if isinstance(value, str) else _MISSING
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        valid = {member.value for member in annotation}
        return value if value in valid else _MISSING
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return value  # nested sections are checked field by field by the caller
    if isinstance(annotation, type):
        return value if isinstance(value, annotation) else _MISSING
    return value  # an annotation we cannot judge: let the library's own checks speak


def _fits_exactly(value, annotation) -> bool:
    if annotation is type(None):
        return value is None
    if annotation is bool or annotation is int or annotation is str:
        return type(value) is annotation
    if annotation is float:
        return type(value) is float
    return False


def field_types(cls) -> dict[str, object]:
    """Field name -> annotation for a dataclass, tolerant of annotations that cannot be resolved."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a forward reference that does not resolve: fall back to "anything"
        hints = {}
    return {f.name: hints.get(f.name, typing.Any) for f in dataclasses.fields(cls) if f.init}
