"""Pydantic validation errors as one paragraph for people: source, field path, value.

Union members add their type (or, for a discriminated union such as ``algorithm``, the
tag) to pydantic's error locations; the path shown keeps only real field names, while the
tag picks the member whose keys an "unknown key" message lists.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def format_validation_error(
    where: str,
    err: ValidationError,
    model: type[BaseModel],
    prefix: tuple[str, ...] = (),
    what: str = "experiment config",
) -> str:
    """Turn a pydantic error into one paragraph: source, field path, value, expectation."""
    problems = []
    for item in err.errors(include_url=False):
        loc, parent = _field_path(model, tuple(str(p) for p in item["loc"]))
        path = _dotted(prefix + loc) or "(top level)"
        kind = item["type"]
        ctx = item.get("ctx") or {}
        if kind == "extra_forbidden":
            allowed = _field_names(parent)
            expected = (
                f"unknown key; expected one of: {', '.join(allowed)}" if allowed else "unknown key"
            )
            problems.append(f"{path}: {expected}")
        elif kind == "missing":
            problems.append(f"{path}: required field is missing")
        elif kind == "union_tag_not_found":
            problems.append(
                f"{_dotted(prefix + loc + (_unquote(ctx['discriminator']),))}: "
                "required field is missing"
            )
        elif kind == "union_tag_invalid":
            key = _dotted(prefix + loc + (_unquote(ctx["discriminator"]),))
            tags = sorted(_unquote(t.strip()) for t in str(ctx["expected_tags"]).split(","))
            problems.append(
                f"{key} = {ctx['tag']!r} is not a registered {loc[-1] if loc else 'id'}; "
                f"expected one of: {', '.join(tags)}"
            )
        else:
            value = item.get("input")
            problems.append(f"{path} = {_short(value)}: {_expectation(item)}")
    return f"{where}: invalid {what}: " + "; ".join(problems) + "."


def _is_type_tag(part: str) -> bool:
    return part.startswith(("literal[", "function-", "list[", "tuple[", "dict[")) or part in {
        "int",
        "float",
        "str",
        "bool",
        "dict",
        "list",
        "tuple",
        "constrained-int",
        "constrained-float",
        "is-instance",
        "none",
    }


def _field_path(model: type[BaseModel], loc: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    """`loc` without union tags, and the model holding its last field (None if unknown).

    Walks the model's annotations along `loc`: a union's tag (a discriminator value or a
    member's class name) selects that member and is dropped from the path.
    """
    path: list[str] = []
    current: Any = model
    parent: Any = None
    for part in loc:
        member = _union_member(current, part)
        if member is not None:
            current = member
            continue
        if _is_type_tag(part):
            continue
        path.append(part)
        parent = current if _is_model(current) else None
        current = _step(current, part)
    return tuple(path), parent


def _step(current: Any, part: str) -> Any:
    """The annotation under `part` of a model field, a list item or a dict value."""
    if _is_model(current):
        field = current.model_fields.get(part)
        return _unwrap(field.annotation) if field is not None else None
    origin, args = typing.get_origin(current), typing.get_args(current)
    if origin in (list, tuple, set, frozenset) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(annotation: Any) -> Any:
    """A union with one model member (``Spec | None``) is that model; others stay as is."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    members = [a for a in _union_args(annotation) if _is_model(a)]
    if len(members) == 1:
        return members[0]
    return annotation


def _union_member(annotation: Any, tag: str) -> type[BaseModel] | None:
    """The member of a union of models that pydantic names `tag`, or None."""
    for member in _union_args(annotation):
        if not _is_model(member):
            continue
        if member.__name__ == tag:
            return member
        field = member.model_fields.get("id")
        if field is not None and tag in typing.get_args(field.annotation):
            return member
    return None


def _union_args(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return ()


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_names(model: Any) -> list[str]:
    return sorted(model.model_fields) if _is_model(model) else []


def _unquote(text: str) -> str:
    return text.strip().strip("'\"")


def _dotted(parts: tuple[str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expectation(item: dict[str, Any]) -> str:
    msg = item["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Input should be "):
        return "expected " + msg[len("Input should be ") :]
    if msg.startswith("Input should "):
        return "expected the value to " + msg[len("Input should ") :]
    return msg
