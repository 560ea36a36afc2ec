"""The ``tracking`` section: where runs are also logged (Weights & Biases, MLflow).

Pydantic only, like every config model; :mod:`rl_platform.tracking` turns it into Tune's
logger callbacks. No secrets here: W&B reads its API key from ``WANDB_API_KEY`` or
``wandb login``, MLflow its credentials from ``MLFLOW_TRACKING_*`` variables.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from rl_platform.config.base import ConfigModel

# W&B refuses these in a project name; tags are at most 64 characters.
_WANDB_NAME = r"^[^/\\#?%:]+$"


class WandbSpec(ConfigModel):
    """A Weights & Biases project each trial logs to (one W&B run per trial)."""

    project: str = Field(
        min_length=1, max_length=128, pattern=_WANDB_NAME, description="The W&B project."
    )
    entity: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The W&B user or team; null = the API key's default entity.",
    )
    group: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The W&B group of the runs; null = the experiment name (`rlp train`) or "
        "<name>/<sweep or group directory> (`rlp tune`, `rlp train --seeds`).",
    )
    mode: Literal["online", "offline", "disabled"] | None = Field(
        default=None,
        description="online: upload as it runs; offline: write under <run dir>/wandb (or "
        "$WANDB_DIR) for `wandb sync` later; null = $WANDB_MODE, else online.",
    )
    tags: list[str] = Field(
        default_factory=list, description="W&B tags of every run (64 characters at most)."
    )

    @field_validator("tags")
    @classmethod
    def _short_tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not 1 <= len(tag) <= 64:
                raise ValueError(f"tag {tag!r}: W&B tags have 1 to 64 characters")
        return tags


class MLflowSpec(ConfigModel):
    """An MLflow tracking server or database each trial logs to (one MLflow run per trial)."""

    tracking_uri: str = Field(
        min_length=1,
        description="Where MLflow records runs: http(s)://HOST:PORT of a tracking server, "
        "sqlite:///mlflow.db (a local database file), postgresql://HOST/DB, databricks. "
        "Credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN, "
        "never from this file.",
    )
    experiment_name: str | None = Field(
        default=None,
        min_length=1,
        description="The MLflow experiment (created if missing); null = the experiment name.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags set on every MLflow run.")

    @field_validator("tracking_uri")
    @classmethod
    def _no_password(cls, uri: str) -> str:
        parts = urlsplit(uri)
        if not parts.scheme or len(parts.scheme) == 1:  # a bare path or a Windows drive
            raise ValueError(
                f"{uri!r} is a path, not a URI: MLflow 3 keeps runs in a database or a "
                "server; write sqlite:///PATH/mlflow.db for a local file"
            )
        if parts.password is not None:
            raise ValueError(
                "the URI holds a password: keep secrets out of experiment files "
                "(MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN, or the database's own "
                "password file)"
            )
        return uri


class TrackingSpec(ConfigModel):
    """Experiment trackers every trial also logs to: its config, then each iteration's metrics."""

    wandb: WandbSpec | None = Field(
        default=None, description="Weights & Biases (needs the tracking extra)."
    )
    mlflow: MLflowSpec | None = Field(
        default=None, description="MLflow (needs the tracking extra)."
    )
