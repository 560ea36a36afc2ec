"""The policy export manifest as plain data: its schema, its spaces, its allow-lists.

A policy export (``policies/manifest.json`` beside ``<module_id>.pt`` weights) may come
from anyone, so its manifest is parsed as data only: strict JSON (no ``NaN`` or
``Infinity``), validated whole by the pydantic models here before anything is built;
spaces are written out field by field (type and dtype from allow-lists, shape, bounds as
lists with infinities as the strings ``"inf"`` / ``"-inf"``); module and catalog classes
are names from :data:`MODULE_CLASSES` / :data:`CATALOG_CLASSES`, the classes this
platform exports, and nothing else is ever imported. Format-1 manifests (RLlib's space
encoding: zlib-compressed ``.npy`` bounds in base64) are read by decoding the ``.npy``
payloads with ``allow_pickle=False``; RLlib's own decoder unpickles and is never used.

This module imports neither torch nor Ray.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import zlib
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeInt,
    PlainValidator,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
# The RLModule and Catalog classes this platform exports: a manifest may name no other.
MODULE_CLASSES = (
    "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule",
    "rl_platform.algorithms.mappo.ActorCriticModule",
    "rl_platform.algorithms.qmix.AgentQModule",
    "rl_platform.algorithms.qmix.MixerModule",
    "rl_platform.algorithms.maddpg.MADDPGActorModule",
    "rl_platform.algorithms.maddpg.MADDPGCriticModule",
)
CATALOG_CLASSES = ("ray.rllib.algorithms.ppo.ppo_catalog.PPOCatalog",)
# Names a model_config may give for activations and weight initializers (RLlib resolves
# them on torch.nn and torch.nn.init).
ACTIVATIONS = frozenset(
    ["linear", "relu", "tanh", "elu", "silu", "swish", "sigmoid", "gelu", "softmax"]
    + ["ReLU", "Tanh", "ELU", "SiLU", "Sigmoid", "GELU", "LeakyReLU", "SELU", "Softplus"]
)
INITIALIZERS = frozenset(
    f"{name}_"
    for name in [
        "uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
        "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
        "sparse",
    ]
)  # fmt: skip
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
MAX_SPACE_SIZE = 1 << 20  # numbers in one space's bounds (a Box's low, a MultiDiscrete's nvec)
MAX_DEPTH = 32  # nesting of the manifest's JSON (Dict/Tuple spaces, configs)
MAX_COMPRESSED_NPY = 8 << 20  # a format-1 bound's decompressed .npy bytes, at most
INF, NEG_INF = "inf", "-inf"
# Module ids name weight files (<id>.pt): no path separators, no leading dot.
MODULE_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"


class PolicyExportError(ValueError):
    """A policy export that is missing, corrupt, untrusted or incompatible."""


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


def _module_id(name: str) -> str:
    if not re.fullmatch(MODULE_ID_PATTERN, name):
        raise ValueError(
            "a module id names its weights file: 1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.'"
        )
    return name


ModuleId = Annotated[str, AfterValidator(_module_id)]


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


class ModuleEntry(_Data):
    """One exported RLModule: its class (and catalog), spaces and model config."""

    module_class: str
    catalog_class: str | None
    observation_space: Space
    action_space: Space
    network: dict[str, JsonValue] = Field(alias="model_config")

    @field_validator("module_class")
    @classmethod
    def _allowed_module(cls, name: str) -> str:
        if name not in MODULE_CLASSES:
            raise ValueError(
                f"refusing to import {name!r}: not one of the RLModule classes this platform "
                f"exports ({', '.join(c.rpartition('.')[2] for c in MODULE_CLASSES)})"
            )
        return name

    @field_validator("network")
    @classmethod
    def _named_layers_only(cls, config: dict[str, Any]) -> dict[str, Any]:
        # RLlib looks activation and initializer names up on torch.nn / torch.nn.init.
        for key, value in config.items():
            if value is None:
                continue
            if key.endswith("_activation") and value not in ACTIVATIONS:
                raise ValueError(f"{key} {value!r} is not one of {', '.join(sorted(ACTIVATIONS))}")
            if key.endswith("_initializer") and value not in INITIALIZERS:
                raise ValueError(f"{key} {value!r} is not one of {', '.join(sorted(INITIALIZERS))}")
        return config

    @field_validator("catalog_class")
    @classmethod
    def _allowed_catalog(cls, name: str | None) -> str | None:
        if name is not None and name not in CATALOG_CLASSES:
            raise ValueError(
                f"refusing to import {name!r}: not one of the catalog classes this platform "
                f"exports ({', '.join(CATALOG_CLASSES)})"
            )
        return name


class EnvEntry(_Data):
    """The env the policies trained on and its config (reward weights included)."""

    id: Annotated[str, Field(min_length=1, max_length=512)]
    config: dict[str, JsonValue]


class PolicyManifest(_Data):
    """``policies/manifest.json``, format 2."""

    format_version: Literal[2]
    versions: dict[str, str]
    env: EnvEntry
    algorithm: str
    agents: Annotated[dict[str, ModuleId], Field(min_length=1)]
    modules: Annotated[dict[ModuleId, ModuleEntry], Field(min_length=1)]
    hierarchy: dict[str, JsonValue] | None = None
    finetuned_from: dict[str, JsonValue] | None = None

    @model_validator(mode="after")
    def _agents_have_modules(self) -> PolicyManifest:
        missing = sorted({m for m in self.agents.values() if m not in self.modules})
        if missing:
            raise ValueError(
                f"agents map to module(s) {', '.join(map(repr, missing))} that 'modules' "
                f"does not hold (it has {', '.join(map(repr, self.modules))})"
            )
        return self


# --------------------------------------------------------------------------- validation


def parse_manifest(text: bytes, where: str) -> dict[str, Any]:
    """A manifest file's bytes as a validated format-2 manifest (format 1 is upgraded).

    Args:
        text: the file's content.
        where: the file's path, for messages.

    Raises:
        PolicyExportError: not UTF-8, not strict JSON, too deeply nested, an unreadable
            format, or any field that does not fit :class:`PolicyManifest`.
    """
    try:
        raw = json.loads(text.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as err:
        raise PolicyExportError(f"{where}: corrupt manifest: not UTF-8 text ({err}).") from None
    except (json.JSONDecodeError, ValueError, RecursionError) as err:
        raise PolicyExportError(f"{where}: corrupt manifest: not JSON ({err}).") from None
    if not isinstance(raw, dict):
        raise PolicyExportError(
            f"{where}: corrupt manifest: expected a JSON object, got {_json_type(raw)}."
        )
    _check_depth(raw, where)
    version = raw.get("format_version")
    if version not in READABLE_FORMATS or isinstance(version, bool):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > 2
        raise PolicyExportError(
            f"{where}: export format {repr(version)[:40]}, this rl_platform reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}"
            + ("; a newer rl_platform wrote it: upgrade to load it." if newer else ".")
        )
    if version == 1:
        raw = upgrade_format_1(raw, where)
    return validate_manifest(raw, where)


def validate_manifest(raw: Any, where: str) -> dict[str, Any]:
    """A format-2 manifest checked against :class:`PolicyManifest`, as plain JSON data.

    Raises:
        PolicyExportError: one sentence naming the first wrong field, its value and what
            was expected.
    """
    try:
        manifest = PolicyManifest.model_validate(raw)
    except ValidationError as err:
        raise PolicyExportError(f"{where}: invalid manifest: {_describe(err)}.") from None
    except RecursionError:
        raise PolicyExportError(f"{where}: invalid manifest: nested too deeply.") from None
    return manifest.model_dump(mode="json", by_alias=True, exclude_none=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f'{name} is not JSON (infinite bounds are written as "inf" / "-inf")')


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _check_depth(raw: Any, where: str) -> None:
    stack = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PolicyExportError(
                f"{where}: invalid manifest: nested deeper than {MAX_DEPTH} levels."
            )
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, (dict, list)):
            stack.extend((child, depth + 1) for child in children)


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


# --------------------------------------------------------------------------- format 1


def upgrade_format_1(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A format-1 manifest (RLlib's space encoding) as format-2 data, without unpickling.

    Fields other than the spaces are carried over unchanged for :func:`validate_manifest`
    to judge.

    Raises:
        PolicyExportError: a space RLlib encoded that format 2 cannot hold, or a bound
            that is not a plain numeric ``.npy`` array (a pickled object, say).
    """
    out = {**raw, "format_version": FORMAT_VERSION}
    modules = raw.get("modules")
    if not isinstance(modules, dict):
        return out
    upgraded = {}
    for module_id, spec in modules.items():
        if isinstance(spec, dict):
            spec = dict(spec)
            for key in ("observation_space", "action_space"):
                if key in spec:
                    at = f"modules.{module_id}.{key}"
                    spec[key] = _v1_space(spec[key], f"{where}: {at}")
        upgraded[module_id] = spec
    out["modules"] = upgraded
    return out


def _v1_space(d: Any, where: str, depth: int = 0) -> dict[str, Any]:
    if not isinstance(d, dict) or depth > MAX_DEPTH:
        raise PolicyExportError(f"{where}: not an RLlib space encoding (format 1).")
    kind = d.get("space")
    try:
        if kind == "box":
            low, high = _v1_array(d.get("low"), where), _v1_array(d.get("high"), where)
            dtype = _v1_dtype(d.get("dtype"), FLOAT_DTYPES + INT_DTYPES, where)
            shape = [int(s) for s in _v1_shape(d.get("shape"), where)]
            return {
                "type": "Box",
                "dtype": dtype,
                "shape": shape,
                "low": _bounds_json(low),
                "high": _bounds_json(high),
            }
        if kind == "discrete":
            return {"type": "Discrete", "n": d.get("n"), "start": d.get("start", 0)}
        if kind == "multi-discrete":
            nvec = _v1_array(d.get("nvec"), where)
            return {
                "type": "MultiDiscrete",
                "shape": list(nvec.shape),
                "nvec": [int(v) for v in nvec.ravel()],
                "dtype": _v1_dtype(d.get("dtype"), INT_DTYPES, where),
            }
        if kind == "multi-binary":
            n = d.get("n")
            return {"type": "MultiBinary", "shape": n if isinstance(n, list) else [n]}
        if kind == "tuple" and isinstance(d.get("spaces"), list):
            return {
                "type": "Tuple",
                "spaces": [_v1_space(s, where, depth + 1) for s in d["spaces"]],
            }
        if kind == "dict" and isinstance(d.get("spaces"), dict):
            return {
                "type": "Dict",
                "spaces": {k: _v1_space(s, where, depth + 1) for k, s in d["spaces"].items()},
            }
    except PolicyExportError:
        raise
    except (TypeError, ValueError, OverflowError) as err:
        raise PolicyExportError(f"{where}: corrupt {kind} space (format 1): {err}.") from None
    raise PolicyExportError(
        f"{where}: space type {str(kind)[:40]!r} is not one this platform exports "
        "(format 1: box, discrete, multi-discrete, multi-binary, tuple, dict)."
    )


def _v1_shape(shape: Any, where: str) -> list[int]:
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise PolicyExportError(f"{where}: the shape must be a list of sizes, got {shape!r:.60}.")
    return shape


def _v1_dtype(name: Any, allowed: tuple[str, ...], where: str) -> str:
    if not isinstance(name, str) or len(name) > 16:
        raise PolicyExportError(f"{where}: dtype must be a short string, got {name!r:.60}.")
    try:
        dtype = np.dtype(name)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in allowed:
        raise PolicyExportError(f"{where}: dtype {name!r} is not one of {', '.join(allowed)}.")
    return dtype.name


def _v1_array(payload: Any, where: str) -> np.ndarray:
    """A base64 zlib-compressed ``.npy`` payload as an array: numbers only, never pickles."""
    if not isinstance(payload, str) or len(payload) > MAX_COMPRESSED_NPY:
        raise PolicyExportError(f"{where}: a bound must be a base64 string (format 1).")
    try:
        packed = base64.b64decode(payload, validate=True)
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, MAX_COMPRESSED_NPY)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("the payload is truncated or too large")
        fp = io.BytesIO(raw)
        version = np.lib.format.read_magic(fp)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise ValueError(f".npy format version {version} is not read")
        shape, _, dtype = read_header(fp)
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"dtype {dtype} is not numeric (a pickled object?)")
        _check_size(list(shape))
        fp.seek(0)
        array = np.lib.format.read_array(fp, allow_pickle=False)
    except (binascii.Error, zlib.error, ValueError, OSError, EOFError) as err:
        raise PolicyExportError(
            f"{where}: a bound is not a plain numeric .npy array ({err}); loading it would "
            "need pickle, which policy exports never use (a genuine format-1 export holds "
            "numbers here; export_for_run re-exports a checkpoint you trust in format 2)."
        ) from None
    if np.isnan(array.astype(np.float64)).any():
        raise PolicyExportError(f"{where}: a bound holds NaN.")
    return array
