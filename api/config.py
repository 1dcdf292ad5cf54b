"""The API's settings: one `Settings`, read from `ERAS_*` environment variables at the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.db import DEFAULT_DATABASE_URL

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Configuration of `api.main.create_app`; every field can be set as `ERAS_<FIELD>`.

    Secrets (the notifier credentials) never belong in the repository: give them in the
    environment or in a file outside it named by `ERAS_SUBSCRIPTIONS_FILE`.
    """

    model_config = SettingsConfigDict(env_prefix="ERAS_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the store: the SQLite file ./eras.db by default, "
        "or postgresql://user@host/db for production.",
    )
    notification_max_bytes: int = Field(
        default=MIB,
        gt=0,
        description="Largest notification body accepted, in bytes (1 MiB); larger ones get 413.",
    )
    subscriptions: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="FHIR Subscription id -> the credential its notifier must present, either as "
        "`Authorization: Bearer <token>` or as `X-Subscription-Secret: <secret>`. In the "
        'environment as JSON: ERAS_SUBSCRIPTIONS=\'{"sub-123": "s3cret"}\'. Notifications for '
        "a subscription not listed here get 401.",
    )
    subscriptions_file: Path | None = Field(
        default=None,
        description="A JSON or YAML file mapping subscription id -> credential, merged under "
        "`subscriptions` (an id in both takes the environment's value).",
    )
    migrate_on_startup: bool = Field(
        default=True,
        description="Bring the database to the newest migration when the app starts "
        "(safe with several API processes on PostgreSQL: they take an advisory lock).",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite `PRAGMA synchronous`. FULL (default) syncs the WAL on every commit, so "
        "an acknowledged notification survives a power cut; NORMAL survives a crash of the "
        "process but may lose the last commits on power loss or an OS crash.",
    )

    @model_validator(mode="after")
    def _merge_subscriptions_file(self) -> Settings:
        if self.subscriptions_file is not None:
            from_file = load_subscriptions_file(self.subscriptions_file)
            self.subscriptions = {**from_file, **self.subscriptions}
        return self


def load_subscriptions_file(path: Path) -> dict[str, SecretStr]:
    """The subscription id -> credential mapping in a JSON or YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"ERAS_SUBSCRIPTIONS_FILE {path} cannot be read: {error.strerror}") from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        raise ValueError(f"ERAS_SUBSCRIPTIONS_FILE {path} is not valid JSON or YAML") from None
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(value, str) and value for key, value in data.items()
    ):
        raise ValueError(f"ERAS_SUBSCRIPTIONS_FILE {path} must map subscription ids to non-empty strings")
    return {key: SecretStr(value) for key, value in data.items()}
