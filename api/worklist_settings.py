"""Settings of the worklist, its sign-in and its FHIR write-back, read from `ERAS_WORKLIST_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATHWAYS = (ROOT / "pathways" / "lumbar_fusion.yaml",)


class WorklistSettings(BaseSettings):
    """Configuration given to `api.worklist_app.mount_worklist`."""

    model_config = SettingsConfigDict(env_prefix="ERAS_WORKLIST_", extra="ignore")

    dev_mode: bool = Field(
        default=False,
        description="Issue local tokens at POST /auth/dev-token (a key generated at start-up). "
        "Demo only: never in production.",
    )
    oidc_issuer: str | None = Field(default=None, description="The `iss` every token must carry.")
    oidc_audience: str | None = Field(default=None, description="The `aud` every token must carry.")
    oidc_jwks_url: str | None = Field(default=None, description="Where the identity provider's JWKS is.")
    jwks_cache_seconds: float = Field(default=300.0, gt=0, description="How long a fetched JWKS is kept.")
    roles_claim: str = Field(default="roles", description="The claim listing the user's roles.")
    wards_claim: str = Field(default="wards", description="The claim listing the user's wards.")
    fhir_base_url: str | None = Field(
        default=None, description="FHIR server holding the Tasks; none: the store is the worklist."
    )
    timezone: str = Field(default="Europe/London", description="The hospital's zone: it decides POD.")
    pathway_files: tuple[Path, ...] = Field(default=DEFAULT_PATHWAYS, description="Pathways to show.")
    evidence_identifier_system: str = Field(
        default="http://eras-engine.org/fhir/identifier/evidence",
        description="System of the business identifier of evidence written from the worklist.",
    )
    default_window_hours: float = Field(default=4.0, gt=0, description="Upcoming tasks shown this far ahead.")
