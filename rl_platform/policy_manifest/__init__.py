"""The policy export manifest as plain data: its schema, its spaces, its allow-lists.

A manifest (``policies/manifest.json``) may come from anyone, so it is parsed as strict
JSON and validated whole before anything is built; classes are names from
:data:`MODULE_CLASSES` / :data:`CATALOG_CLASSES` and nothing else is imported (the rules:
docs/security.md). This package imports neither torch nor Ray. Modules: ``allow_list``
(allow-lists, limits, the error), ``spaces`` (spaces <-> JSON), ``manifest`` (the schema,
reading and validating) and ``format1`` (reading format 1).
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
