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

This package imports neither torch nor Ray.

Modules: :mod:`~rl_platform.policy_manifest.allow_list` (allow-lists, limits, the error),
:mod:`~rl_platform.policy_manifest.spaces` (spaces <-> JSON),
:mod:`~rl_platform.policy_manifest.manifest` (the manifest's schema, reading and
validating it) and :mod:`~rl_platform.policy_manifest.format1` (reading format 1).
"""

from rl_platform.policy_manifest.allow_list import (
    ACTIVATIONS,
    CATALOG_CLASSES,
    FLOAT_DTYPES,
    FORMAT_VERSION,
    INF,
    INITIALIZERS,
    INT_DTYPES,
    MAX_COMPRESSED_NPY,
    MAX_DEPTH,
    MAX_SPACE_SIZE,
    MODULE_CLASSES,
    MODULE_ID_PATTERN,
    NEG_INF,
    READABLE_FORMATS,
    PolicyExportError,
)
from rl_platform.policy_manifest.format1 import (
    upgrade_format_1,
)
from rl_platform.policy_manifest.manifest import (
    EnvEntry,
    ModuleEntry,
    ModuleId,
    PolicyManifest,
    parse_manifest,
    validate_manifest,
)
from rl_platform.policy_manifest.spaces import (
    Bound,
    BoxSpace,
    DictSpace,
    DiscreteSpace,
    FloatOrIntDtype,
    IntDtype,
    MultiBinarySpace,
    MultiDiscreteSpace,
    Space,
    TupleSpace,
    space_from_json,
    space_to_json,
)

__all__ = [
    "ACTIVATIONS",
    "Bound",
    "BoxSpace",
    "CATALOG_CLASSES",
    "DictSpace",
    "DiscreteSpace",
    "EnvEntry",
    "FLOAT_DTYPES",
    "FORMAT_VERSION",
    "FloatOrIntDtype",
    "INF",
    "INITIALIZERS",
    "INT_DTYPES",
    "IntDtype",
    "MAX_COMPRESSED_NPY",
    "MAX_DEPTH",
    "MAX_SPACE_SIZE",
    "MODULE_CLASSES",
    "MODULE_ID_PATTERN",
    "ModuleEntry",
    "ModuleId",
    "MultiBinarySpace",
    "MultiDiscreteSpace",
    "NEG_INF",
    "PolicyExportError",
    "PolicyManifest",
    "READABLE_FORMATS",
    "Space",
    "TupleSpace",
    "parse_manifest",
    "space_from_json",
    "space_to_json",
    "upgrade_format_1",
    "validate_manifest",
]
