"""Spaces as plain JSON data: their schema and the gymnasium space <-> JSON codec.

Spaces are written out field by field (type and dtype from allow-lists, shape, bounds as
lists with infinities as the strings ``"inf"`` / ``"-inf"``).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PlainValidator,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from rl_platform.policy_manifest.allow_list import (
    FLOAT_DTYPES,
    INF,
    INT_DTYPES,
    MAX_SPACE_SIZE,
    NEG_INF,
    PolicyExportError,
)

# --------------------------------------------------------------------------- schema


def _bound(value: Any) -> float | int | str:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError('a bound is finite, or the string "inf" or "-inf"')
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if value in (INF, NEG_INF):
        return value
    raise ValueError('a bound is a number or the string "inf" or "-inf"')


Bound = Annotated[float | int | str, PlainValidator(_bound)]
FloatOrIntDtype = Literal[FLOAT_DTYPES + INT_DTYPES]  # type: ignore[valid-type]
IntDtype = Literal[INT_DTYPES]  # type: ignore[valid-type]


class _Data(BaseModel):
    """Strict plain data: no coercion, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _size(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def _check_size(shape: list[int]) -> None:
    if len(shape) > 8 or _size(shape) > MAX_SPACE_SIZE:
        raise ValueError(
            f"shape {shape} is too large (at most 8 dimensions, {MAX_SPACE_SIZE} numbers)"
        )


class BoxSpace(_Data):
    """``gymnasium.spaces.Box``: bounds flattened (C order), one number per element."""

    type: Literal["Box"]
    dtype: FloatOrIntDtype
    shape: list[NonNegativeInt]
    low: list[Bound]
    high: list[Bound]

    @model_validator(mode="after")
    def _bounds_fit(self) -> BoxSpace:
        _check_size(self.shape)
        n = _size(self.shape)
        if len(self.low) != n or len(self.high) != n:
            raise ValueError(
                f"low and high need {n} numbers each for shape {self.shape}, "
                f"got {len(self.low)} and {len(self.high)}"
            )
        if any(lo > hi for lo, hi in zip(_floats(self.low), _floats(self.high))):
            raise ValueError("low is above high somewhere")
        return self


class DiscreteSpace(_Data):
    """``gymnasium.spaces.Discrete``: actions ``start .. start + n - 1``."""

    type: Literal["Discrete"]
    n: PositiveInt
    start: int = 0
    dtype: IntDtype = "int64"


class MultiDiscreteSpace(_Data):
    """``gymnasium.spaces.MultiDiscrete``: ``nvec`` and ``start`` flattened (C order)."""

    type: Literal["MultiDiscrete"]
    shape: list[NonNegativeInt]
    nvec: list[PositiveInt]
    start: list[int] | None = None
    dtype: IntDtype = "int64"

    @model_validator(mode="after")
    def _sizes_fit(self) -> MultiDiscreteSpace:
        _check_size(self.shape)
        n = _size(self.shape)
        if len(self.nvec) != n or (self.start is not None and len(self.start) != n):
            raise ValueError(f"nvec (and start) need {n} numbers for shape {self.shape}")
        return self


class MultiBinarySpace(_Data):
    """``gymnasium.spaces.MultiBinary`` of a shape."""

    type: Literal["MultiBinary"]
    shape: Annotated[list[PositiveInt], Field(min_length=1)]

    @model_validator(mode="after")
    def _size_fits(self) -> MultiBinarySpace:
        _check_size(self.shape)
        return self


class DictSpace(_Data):
    """``gymnasium.spaces.Dict``: named subspaces, in order."""

    type: Literal["Dict"]
    spaces: dict[str, Space]


class TupleSpace(_Data):
    """``gymnasium.spaces.Tuple``: subspaces in order."""

    type: Literal["Tuple"]
    spaces: list[Space]


Space = Annotated[
    BoxSpace | DiscreteSpace | MultiDiscreteSpace | MultiBinarySpace | DictSpace | TupleSpace,
    Field(discriminator="type"),
]
DictSpace.model_rebuild()
TupleSpace.model_rebuild()


def _describe(err: ValidationError, whole: str = "the manifest") -> str:
    """The first error of a validation, as 'field a.b: what was expected, got value'."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"] if not _is_union_member(p))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"field {loc} is missing"
    where = f"field {loc}" if loc else whole
    got = first.get("input")
    if isinstance(got, (dict, list)) and first["type"] in ("value_error", "assertion_error"):
        return f"{where}: {msg}"  # a check of the whole object: its fields are the point
    return f"{where}: {msg}, got {json.dumps(got, default=str)[:80]}"


_UNION_MEMBERS = {"int", "float", "str", "bool", "none", "list", "dict"}


def _is_union_member(part: Any) -> bool:
    """Union branches in error locations ('Box', 'int', 'literal[...]') are not fields."""
    return isinstance(part, str) and (
        part in ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict", "Tuple")
        or part in _UNION_MEMBERS
        or "[" in part
    )


# --------------------------------------------------------------------------- spaces


def _floats(bounds: list[Any]) -> list[float]:
    return [float(b) for b in bounds]  # float("inf") / float("-inf") read the strings


def _bound_json(value: float) -> float | str:
    if math.isinf(value):
        return INF if value > 0 else NEG_INF
    return value


def _bounds_json(bounds: np.ndarray) -> list[float | int | str]:
    """A bound array as JSON: floats (infinities as strings), or exact integers."""
    if bounds.dtype.kind not in "iu":
        return [_bound_json(v) for v in bounds.astype(np.float64).ravel().tolist()]
    info = np.iinfo(bounds.dtype)
    extremes = {int(info.max): INF, int(info.min): NEG_INF}
    return [extremes.get(v, v) for v in bounds.ravel().tolist()]


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A space as format-2 plain JSON data (see :class:`BoxSpace` and friends).

    Raises:
        PolicyExportError: a space type or dtype the manifest cannot hold.
    """
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "dtype": _dtype_name(space.dtype, FLOAT_DTYPES + INT_DTYPES),
            "shape": list(space.shape),
            "low": _bounds_json(space.low),
            "high": _bounds_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {
            "type": "Discrete",
            "n": int(space.n),
            "start": int(space.start),
            "dtype": _dtype_name(space.dtype, INT_DTYPES),
        }
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "shape": list(space.shape),
            "nvec": [int(v) for v in space.nvec.ravel()],
            "start": [int(v) for v in space.start.ravel()],
            "dtype": _dtype_name(space.dtype, INT_DTYPES),
        }
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}
    raise PolicyExportError(
        f"cannot export a {type(space).__name__} space: exports hold Box, Discrete, "
        "MultiDiscrete, MultiBinary, Dict and Tuple spaces"
    )


def _dtype_name(dtype: Any, allowed: tuple[str, ...]) -> str:
    name = np.dtype(dtype).name
    if name not in allowed:
        raise PolicyExportError(f"cannot export dtype {name}: expected one of {allowed}")
    return name


def space_from_json(data: dict[str, Any]) -> gym.Space:
    """The gymnasium space of validated format-2 space data.

    Raises:
        PolicyExportError: the data does not describe a valid space.
    """
    try:
        spec = _SPACE_ADAPTER.validate_python(data)
        return _build_space(spec)
    except ValidationError as err:
        raise PolicyExportError(f"invalid space: {_describe(err, 'the space')}") from None
    except (ValueError, TypeError, OverflowError, AssertionError) as err:
        raise PolicyExportError(f"invalid space {json.dumps(data)[:120]}: {err}") from None


def _build_space(spec: Any) -> gym.Space:
    if isinstance(spec, BoxSpace):
        shape, dtype = tuple(spec.shape), np.dtype(spec.dtype)
        low, high = (_bounds_array(b, dtype).reshape(shape) for b in (spec.low, spec.high))
        return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if isinstance(spec, DiscreteSpace):
        return gym.spaces.Discrete(spec.n, start=spec.start, dtype=np.dtype(spec.dtype))
    if isinstance(spec, MultiDiscreteSpace):
        shape = tuple(spec.shape)
        nvec = np.array(spec.nvec, dtype=np.int64).reshape(shape)
        start = None if spec.start is None else np.array(spec.start, np.int64).reshape(shape)
        return gym.spaces.MultiDiscrete(nvec, dtype=np.dtype(spec.dtype), start=start)
    if isinstance(spec, MultiBinarySpace):
        shape = spec.shape
        return gym.spaces.MultiBinary(shape[0] if len(shape) == 1 else list(shape))
    if isinstance(spec, DictSpace):
        return gym.spaces.Dict({k: _build_space(s) for k, s in spec.spaces.items()})
    return gym.spaces.Tuple(tuple(_build_space(s) for s in spec.spaces))


def _bounds_array(bounds: list[Any], dtype: np.dtype) -> np.ndarray:
    """Bounds in the space's dtype (an integer dtype's infinities are its extremes)."""
    if dtype.kind not in "iu":
        return np.array(_floats(bounds), dtype=np.float64).astype(dtype)
    info = np.iinfo(dtype)
    values = []
    for bound in bounds:
        if isinstance(bound, str):
            values.append(info.max if bound == INF else info.min)
        elif float(bound).is_integer() and info.min <= bound <= info.max:
            values.append(int(bound))
        else:
            raise ValueError(f"bound {bound!r} is not an integer in the range of {dtype.name}")
    return np.array(values, dtype=dtype)


_SPACE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Space)
