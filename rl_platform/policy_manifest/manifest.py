"""``policies/manifest.json``: its schema, and reading it as validated plain data.

The manifest is parsed as data only: strict JSON (no ``NaN`` or ``Infinity``), validated
whole by the pydantic models here before anything is built.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from rl_platform.policy_manifest.allow_list import (
    ACTIVATIONS,
    CATALOG_CLASSES,
    INITIALIZERS,
    MAX_DEPTH,
    MODULE_CLASSES,
    MODULE_ID_PATTERN,
    READABLE_FORMATS,
    PolicyExportError,
)
from rl_platform.policy_manifest.format1 import upgrade_format_1
from rl_platform.policy_manifest.spaces import Space, _Data, _describe

# --------------------------------------------------------------------------- schema


def _module_id(name: str) -> str:
    if not re.fullmatch(MODULE_ID_PATTERN, name):
        raise ValueError(
            "a module id names its weights file: 1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.'"
        )
    return name


ModuleId = Annotated[str, AfterValidator(_module_id)]


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
