"""The base of every pydantic model read from an experiment YAML: strict scalar types.

Pydantic's lax mode takes ``true`` for 1 and ``1`` or ``"yes"`` for true, so a slip such
as ``evaluation.episodes: true`` would run one episode without a word. A
:class:`YamlModel` refuses a boolean where a number is expected and anything but a
boolean where only a boolean is, at any depth of lists, tuples and dicts, before pydantic
converts. Everything else stays lax on purpose: YAML lists fill tuple fields, and
``lr: 1e-3`` (a string to PyYAML, which wants ``1.0e-3``) is still a float. Pydantic
already refuses a number for a string field. The JSON Schema is unchanged (it never
allowed these).

Torch- and Ray-free: the config, the envs' and the algorithms' models all derive from it.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ValidationInfo, field_validator


class YamlModel(BaseModel):
    """A pydantic model with strict booleans and numbers (see the module docstring)."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        return strict_field(cls, value, info)


def strict_field(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """`value` of the field being validated, refused if it does not strictly fit.

    The body of :class:`YamlModel`'s validator, for models that must apply it to fewer
    fields (a discriminated union's tag may not have a before-validator).
    """
    field = model.model_fields.get(info.field_name or "")
    if field is not None:
        problem = scalar_problem(field.annotation, value)
        if problem:
            raise ValueError(problem)
    return value


def scalar_problem(annotation: Any, value: Any, where: str = "") -> str | None:
    """Why `value` does not strictly fit `annotation` (a boolean for a number, ...), or None.

    Only booleans and numbers are judged; other mismatches are left to pydantic.
    """
    verdict = _judge(annotation, value, where)
    return verdict or None


_NUMPY_BOOLS = ("bool", "bool_")  # numpy 2 and 1


# _judge returns None (the annotation says nothing about this value), "" (it fits) or a
# problem; a union fits when any member fits.
def _judge(annotation: Any, value: Any, where: str) -> str | None:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return ""
    if origin is Annotated:
        return _judge(args[0], value, where)
    if origin is Union or origin is types.UnionType:
        verdicts = [_judge(member, value, where) for member in args]
        if "" in verdicts:
            return ""
        return next((v for v in verdicts if v), None)
    if origin is Literal:
        return _judge_literal(args, value, where)
    if annotation is bool:
        return "" if _is_bool(value) else _problem(where, "a boolean (true or false)")
    if isinstance(annotation, type) and issubclass(annotation, (int, float)):
        if _is_bool(value):
            return _problem(where, "a number", "a boolean")
        return ""
    if origin in (list, tuple, set, frozenset) and isinstance(value, (list, tuple)):
        return _judge_items(args, value, where)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            verdict = _judge(args[1], item, f"{where}.{key}" if where else str(key))
            if verdict:
                return verdict
        return ""
    return None


def _judge_literal(options: tuple[Any, ...], value: Any, where: str) -> str | None:
    if _is_bool(value) and not any(isinstance(o, bool) for o in options):
        if any(isinstance(o, (int, float)) for o in options):
            return _problem(where, f"one of {list(options)}", "a boolean")
        return None
    return ""


def _judge_items(args: tuple[Any, ...], value: list | tuple, where: str) -> str:
    if not args:
        return ""
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],)
    for i, item in enumerate(value):
        member = args[0] if len(args) == 1 else (args[i] if i < len(args) else None)
        verdict = _judge(member, item, f"{where}[{i}]") if member is not None else ""
        if verdict:
            return verdict
    return ""


def _is_bool(value: Any) -> bool:
    """A Python or numpy boolean (numpy's is no int subclass, but pydantic takes it as 1)."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in _NUMPY_BOOLS)


def _problem(where: str, expected: str, got: str = "") -> str:
    at = f" at {where}" if where else ""
    return f"expected {expected}{at}" + (f", not {got}" if got else "")
