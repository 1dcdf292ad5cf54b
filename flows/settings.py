"""The one settings tree: every `ERAS_*` variable (environment or `.env`), read at the edges only.

Groups are nested models named by their prefix: `ERAS_FHIR_BASE_URL` is `settings.fhir.base_url`,
`ERAS_WORKLIST_OIDC_ISSUER` is `settings.worklist.oidc_issuer`; everything else is top level
(`ERAS_TIMEZONE` is `settings.timezone`). Relative paths are taken from the working directory,
which is also where `.env` is read, and made absolute when the settings are read (a Prefect
flow run or a later `chdir` sees the same files). Secrets never belong in the repository: give
them in the environment or in files outside it named by it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from engine.loader import PATHWAYS_DIR
from fhir_adapters.auth import DEFAULT_SCOPE
from fhir_adapters.locations import DEFAULT_WARD_BED_PATTERN, compile_ward_bed_pattern
from flows.logs import LogFormat
from flows.mllp_options import MllpSettings
from flows.poll_options import PollSettings
from flows.runtime import (
    DEFAULT_BUNDLE_MAX_ENTRIES,
    DEFAULT_CONCURRENT_APPLIES,
    DEFAULT_IDENTIFIER_SYSTEM,
    WriteTarget,
)
from store.db import DEFAULT_DATABASE_URL

MIB = 1024 * 1024
ENV_PREFIX = "ERAS_"
AuthMode = Literal["none", "bearer", "smart-backend"]


class FhirSettings(BaseModel):
    """`ERAS_FHIR_*`: how the engine (runtime and worklist alike) reaches the EHR."""

    base_url: str = Field("http://127.0.0.1:8103/fhir", description="the EHR's FHIR R4 base")
    auth: AuthMode = Field("none", description="none | bearer | smart-backend")
    bearer_token_file: Path | None = Field(None, description="file holding a static token")
    client_id: str | None = Field(None, description="SMART Backend Services client id")
    private_key_file: Path | None = Field(None, description="PEM key registered with the EHR")
    key_id: str | None = Field(None, description="the key's `kid` in the JWKS the EHR knows")
    key_algorithm: Literal["RS384", "ES384"] = "RS384"
    token_url: str | None = Field(None, description="unset = discovered from the EHR")
    scope: str = DEFAULT_SCOPE
    timeout: float = Field(30.0, gt=0, description="seconds per FHIR request")
    max_retries: int = Field(4, ge=0, description="retries of temporary FHIR errors (runtime)")
    concurrent_applies: int = Field(
        DEFAULT_CONCURRENT_APPLIES, gt=0,
        description="patients the drain applies at once; the FHIR connection pools hold more")
    bundle_max_entries: int = Field(
        DEFAULT_BUNDLE_MAX_ENTRIES, ge=0,
        description="most entries in one Bundle carrying several applies' reads or writes; 0: one each")
    ward_bed_pattern: str = Field(
        DEFAULT_WARD_BED_PATTERN,
        description="regex with groups `ward` and `bed` splitting a location display holding both")

    @field_validator("ward_bed_pattern")
    @classmethod
    def _ward_and_bed_groups(cls, value: str) -> str:
        compile_ward_bed_pattern(value)
        return value

    @model_validator(mode="after")
    def _credentials_given(self) -> FhirSettings:
        if self.auth == "bearer" and not self.bearer_token_file:
            raise ValueError("ERAS_FHIR_AUTH=bearer needs ERAS_FHIR_BEARER_TOKEN_FILE")
        if self.auth == "smart-backend":
            needed = ("client_id", "private_key_file", "key_id")
            missing = [name for name in needed if not getattr(self, name)]
            if missing:
                names = ", ".join(f"ERAS_FHIR_{m.upper()}" for m in missing)
                raise ValueError(f"ERAS_FHIR_AUTH=smart-backend needs {names}")
        return self


class TaskStoreSettings(BaseModel):
    """`ERAS_TASK_STORE_*`: the FHIR server holding Tasks when `ERAS_WRITE_TARGET=fhir-store`."""

    url: str | None = Field(None, description="its FHIR base")
    bearer_token_file: Path | None = Field(None, description="file holding its token")


class WorklistSettings(BaseModel):
    """`ERAS_WORKLIST_*`: the nurses' worklist and its sign-in."""

    dev_mode: bool = Field(False, description="local tokens at POST /auth/dev-token; demo only")
    oidc_issuer: str | None = Field(None, description="the `iss` every token must carry")
    oidc_audience: str | None = Field(None, description="the `aud` every token must carry")
    oidc_jwks_url: str | None = Field(None, description="where the identity provider's JWKS is")
    jwks_cache_seconds: float = Field(300.0, gt=0, description="how long a fetched JWKS is kept")
    jwks_min_refetch_seconds: float = Field(
        60.0, ge=0, description="an unknown key id refetches the JWKS at most this often")
    max_token_lifetime_seconds: float = Field(
        8 * 3600.0, gt=0, description="tokens whose exp - iat is longer are refused")
    roles_claim: str = Field("roles", description="the claim listing the user's roles")
    wards_claim: str = Field("wards", description="the claim listing the user's wards")
    evidence_identifier_system: str = Field(
        "http://eras-engine.org/fhir/identifier/evidence",
        description="system of the identifier of evidence written from the worklist")
    default_window_hours: float = Field(4.0, gt=0, description="upcoming tasks shown this far ahead")

    @model_validator(mode="after")
    def _dev_mode_alone(self) -> WorklistSettings:
        # Dev mode trusts only its own key: beside OIDC it would refuse real tokens and let anyone
        # mint an admin token, so the two never run together.
        given = [name for name in ("oidc_issuer", "oidc_audience", "oidc_jwks_url") if getattr(self, name)]
        if self.dev_mode and given:
            names = ", ".join(f"ERAS_WORKLIST_{name.upper()}" for name in given)
            raise ValueError(f"ERAS_WORKLIST_DEV_MODE=true cannot be used with OIDC ({names}): unset one")
        return self


class HttpSettings(BaseModel):
    """`ERAS_HTTP_*`: how `eras serve` holds connections, so slow or stuck clients cannot hold it."""

    keep_alive_seconds: int = Field(5, gt=0, description="an idle kept-alive connection is closed after")
    head_seconds: float = Field(
        10.0, gt=0, description="a new connection must have sent its request line and headers within")
    body_seconds: float = Field(
        30.0, gt=0, description="a notification body must have arrived within (else 408)")
    limit_concurrency: int = Field(
        200, gt=0, description="open connections and requests at once; beyond it new requests get 503")
    shutdown_seconds: int = Field(
        20, gt=0, description="on SIGTERM, requests in flight get this long to finish")


class AuditSettings(BaseModel):
    """`ERAS_AUDIT_*`: the quality audit's pseudonyms and nightly report."""

    pseudonym_key: SecretStr | None = Field(
        None, description="key of the HMAC pseudonyms quality users see; unset = random per start")
    report_dir: Path = Field(Path("audit-reports"), description="where the nightly report goes")
    reidentify_roles: tuple[str, ...] = Field(
        ("admin", "reidentify"), description="roles that see real patient references")


class SmartSettings(BaseModel):
    """`ERAS_SMART_*`: SMART App Launch of the worklist and patient view from inside the EHR."""

    allowed_issuers: list[str] = Field(
        default_factory=list, description='FHIR bases allowed to launch us, JSON: ["https://ehr/fhir"]')
    standalone_iss: str | None = Field(None, description="the FHIR base of a standalone launch")
    client_id: str | None = Field(None, description="the app's client id registered with the EHR")
    client_secret_file: Path | None = Field(
        None, description="file holding the client secret (confidential client); unset = public client")
    redirect_url: str | None = Field(
        None, description="registered redirect URL; unset = this server's /launch/callback")
    scope: str = Field("launch openid fhirUser patient/*.rs user/Task.u",
                       description="scopes asked for in an EHR launch")
    standalone_scope: str = Field("launch/patient openid fhirUser patient/*.rs user/Task.u",
                                  description="scopes asked for in a standalone launch")
    required_scopes: str = Field("openid fhirUser", description="a token granting fewer is refused")
    roles_claim: str = Field("roles", description="id_token claim listing the user's EHR roles")
    wards_claim: str = Field("wards", description="id_token claim listing the user's wards")
    role_map: dict[str, str] = Field(
        default_factory=dict, description='EHR role -> engine role, JSON: {"RN": "nurse"}; unmapped = none')
    launch_seconds: float = Field(600.0, gt=0, description="a started launch must return within this")
    session_seconds: float = Field(8 * 3600.0, gt=0, description="a launched session lasts this long")
    user_token_writeback: bool = Field(
        False, description="worklist write-backs of launched users use their own EHR token")
class CdsSettings(BaseModel):
    """`ERAS_CDS_*`: the CDS Hooks service the EHR calls (`/cds-services`)."""

    issuer: str | None = Field(None, description="the EHR's `iss` in its CDS Hooks JWTs; unset = refused")
    jwks_url: str | None = Field(None, description="where the EHR publishes the JWKS it signs them with")
    client_id: str | None = Field(None, description="the `sub` the EHR's JWTs must carry; unset = any")
    public_url: str | None = Field(
        None, description="the engine's URL as the EHR calls it (JWT `aud`, launch links); unset = "
                          "the request's own")
    budget_seconds: float = Field(0.4, gt=0, description="longest a hook waits for the EHR before "
                                                         "answering with a degraded card")
    max_token_lifetime_seconds: float = Field(
        300.0, gt=0, description="JWTs whose exp - iat is longer are refused (the spec: 5 minutes)")


class Settings(BaseSettings):
    """Everything the engine, the API and the CLI are configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore",
        env_nested_delimiter="_", env_nested_max_split=1)

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the store")
    timezone: str = Field("Europe/London", description="the hospital's zone: it decides POD and days")
    pathways: list[Path] = Field(default_factory=lambda: [PATHWAYS_DIR / "lumbar_fusion.yaml"])
    terminology: Path | None = Field(None, description="a site terminology file (extends default)")
    terminology_server_url: str | None = Field(
        None, description="FHIR terminology server whose ValueSet $expand adds children to subsumption")
    write_target: WriteTarget = Field(WriteTarget.EHR, description="ehr | fhir-store | none")
    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
    delivery_routes_file: Path | None = Field(None, description="reminder channels (flows/delivery.py)")
    clock_file: Path | None = Field(None, description="simulation only: read 'now' from this file")
    log_level: str = Field("INFO", description="logging level of `eras serve` and `eras worker`")
    log_format: LogFormat = Field("text", description="text, or json: one JSON object per log line")
    future_tolerance_minutes: float = Field(
        5.0, ge=0, description="facts that happened, dated further ahead of now, are held until then")
    notification_max_bytes: int = Field(MIB, gt=0, description="larger notifications get 413")
    subscriptions: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Subscription id -> notifier credential, as JSON: {"sub-123": "s3cret"}')
    subscriptions_file: Path | None = Field(
        None, description="JSON/YAML file of the same mapping, merged under `subscriptions`")
    ehr_origin: str | None = Field(
        None, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        description="the EHR origin allowed to frame the pages (SMART embedding); unset = none")
    api_docs: bool = Field(False, description="serve /docs and /redoc (their scripts come from a CDN)")
    migrate_on_startup: bool = Field(True, description="bring the store to the newest migration")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="SQLite PRAGMA synchronous (NORMAL may lose the last acks on power loss)")
    fhir: FhirSettings = Field(default_factory=FhirSettings)
    task_store: TaskStoreSettings = Field(default_factory=TaskStoreSettings)
    worklist: WorklistSettings = Field(default_factory=WorklistSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    smart: SmartSettings = Field(default_factory=SmartSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    mllp: MllpSettings = Field(default_factory=MllpSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    cds: CdsSettings = Field(default_factory=CdsSettings)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        return (init_settings, _GroupsOnlyEnv(settings_cls),
                _GroupsOnlyDotEnv(settings_cls, env_file=dotenv_settings.env_file), file_secret_settings)

    @field_validator("pathways", "terminology", "delivery_routes_file", "clock_file",
                     "subscriptions_file")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [path.absolute() for path in value]
        return value.absolute() if isinstance(value, Path) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        ZoneInfo(self.timezone)
        if self.write_target is WriteTarget.FHIR_STORE and not self.task_store.url:
            raise ValueError("ERAS_WRITE_TARGET=fhir-store needs ERAS_TASK_STORE_URL")
        if self.subscriptions_file is not None:
            self.subscriptions = {**load_subscriptions_file(self.subscriptions_file), **self.subscriptions}
        return self


class _GroupsOnlyEnv(EnvSettingsSource):
    """Split `ERAS_<GROUP>_<FIELD>` only into the nested groups, never into a dict field
    (`ERAS_SUBSCRIPTIONS_FILE` is its own variable, not a subscription called "file")."""

    def explode_env_vars(self, field_name: str, field: FieldInfo, env_vars: Any) -> dict[str, Any]:
        if not _is_group(field):
            return {}
        return super().explode_env_vars(field_name, field, env_vars)


class _GroupsOnlyDotEnv(DotEnvSettingsSource):
    def explode_env_vars(self, field_name: str, field: FieldInfo, env_vars: Any) -> dict[str, Any]:
        if not _is_group(field):
            return {}
        return super().explode_env_vars(field_name, field, env_vars)


def _is_group(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def settings_env_vars() -> set[str]:
    """Every environment variable the settings read (deployment files are checked against it)."""
    names = set()
    for name, field in Settings.model_fields.items():
        if _is_group(field):
            assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            names |= {f"{ENV_PREFIX}{name}_{sub}".upper() for sub in field.annotation.model_fields}
        else:
            names.add(f"{ENV_PREFIX}{name}".upper())
    return names


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
