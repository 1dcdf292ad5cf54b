"""Settings of the quality audit (pseudonym key, hospital zone, report directory), from `ERAS_AUDIT_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuditSettings(BaseSettings):
    """Configuration given to `api.audit_app.mount_audit` and to the nightly audit report."""

    model_config = SettingsConfigDict(env_prefix="ERAS_AUDIT_", extra="ignore")

    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="Secret of the keyed HMAC that pseudonymises patient references for the quality "
        "role. Set it so pseudonyms stay the same across restarts; unset, a random key is made at "
        "start-up.",
    )
    timezone: str = Field(default="Europe/London", description="The hospital's zone: months and days.")
    report_dir: Path = Field(default=Path("audit-reports"), description="Where the nightly report goes.")
    reidentify_roles: tuple[str, ...] = Field(
        default=("admin", "reidentify"), description="Roles that see real patient references."
    )
