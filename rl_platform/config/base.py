"""What every part of the experiment config shares: its error and its model base."""

from __future__ import annotations

from pydantic import ConfigDict

from rl_platform.yaml_model import YamlModel


class ConfigError(ValueError):
    """An experiment file, dict or override that cannot be used.

    The message is meant for people: one paragraph naming the source, the field path,
    the offending value and what was expected.
    """


class ConfigModel(YamlModel):
    """A section of the experiment YAML: unknown keys refused, frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
