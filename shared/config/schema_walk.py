"""Walk the config models by key path: which model sits at a path, which keys it allows."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable

from pydantic import BaseModel


def _unwrap(annotation: object) -> object:
    """Strip Annotated[...] and `X | None` down to the interesting type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def child_type(parent: object, key: str | int) -> object | None:
    """The type found under `key` of a value of type `parent`, or None if unknown."""
    parent = _unwrap(parent)
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        field = parent.model_fields.get(str(key))
        return _unwrap(field.annotation) if field else None
    origin = typing.get_origin(parent)
    if origin is dict:
        return _unwrap(typing.get_args(parent)[1])
    if origin is list:
        return _unwrap(typing.get_args(parent)[0])
    return None


def type_at(root: type[BaseModel], path: Iterable[str | int]) -> object | None:
    current: object | None = root
    for key in path:
        if current is None:
            return None
        current = child_type(current, key)
    return current


def allowed_keys(root: type[BaseModel], path: Iterable[str | int]) -> list[str] | None:
    """Keys a model at `path` accepts, or None if `path` is not a model."""
    found = type_at(root, path)
    if isinstance(found, type) and issubclass(found, BaseModel):
        return list(found.model_fields)
    return None


def is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def is_mapping(annotation: object) -> bool:
    return typing.get_origin(annotation) is dict
