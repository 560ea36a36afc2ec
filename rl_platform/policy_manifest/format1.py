"""Format-1 manifests (RLlib's space encoding) read without unpickling.

Format 1 encodes bounds as zlib-compressed ``.npy`` payloads in base64; they are decoded
with ``allow_pickle=False``. RLlib's own decoder unpickles and is never used.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib
from typing import Any

import numpy as np

from rl_platform.policy_manifest.allow_list import (
    FLOAT_DTYPES,
    FORMAT_VERSION,
    INT_DTYPES,
    MAX_COMPRESSED_NPY,
    MAX_DEPTH,
    PolicyExportError,
)
from rl_platform.policy_manifest.spaces import _bounds_json, _check_size


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
