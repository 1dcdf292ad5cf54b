"""Runtime settings (ERAS_* environment variables or a .env file) and building a Runtime from them.

The settings class is instantiated at the edges only (CLI, API start-up); inner layers take a
Runtime. Secrets are read from the environment or from files named by it, never from the repo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.loader import PATHWAYS_DIR, load_pathway
from engine.model import Pathway
from engine.terminology import load_terminology
from fhir_adapters.auth import DEFAULT_SCOPE, BearerTokenAuth, FhirAuth, NoAuth, SmartBackendAuth
from fhir_adapters.client import FhirClient
from flows.runtime import DEFAULT_IDENTIFIER_SYSTEM, Runtime, WriteTarget
from store.db import database_url, make_engine
from store.migrate import upgrade

AuthMode = Literal["none", "bearer", "smart-backend"]


class RuntimeSettings(BaseSettings):
    """How the engine reaches the EHR, where it writes, and what it runs. Env prefix ERAS_."""

    model_config = SettingsConfigDict(env_prefix="ERAS_", env_file=".env", extra="ignore")

    database_url: str | None = Field(None, description="SQLAlchemy URL; unset = SQLite ./eras.db")
    fhir_base_url: str = Field("http://127.0.0.1:8103/fhir", description="the EHR's FHIR R4 base")
    fhir_auth: AuthMode = "none"
    fhir_bearer_token_file: Path | None = Field(None, description="file holding a static token")
    fhir_client_id: str | None = Field(None, description="SMART Backend Services client id")
    fhir_private_key_file: Path | None = Field(None, description="PEM key registered with the EHR")
    fhir_key_id: str | None = Field(None, description="the key's `kid` in the JWKS the EHR knows")
    fhir_key_algorithm: Literal["RS384", "ES384"] = "RS384"
    fhir_token_url: str | None = Field(None, description="unset = discovered from the EHR")
    fhir_scope: str = DEFAULT_SCOPE
    write_target: WriteTarget = Field(WriteTarget.EHR, description="ehr | fhir-store | none")
    task_store_url: str | None = Field(None, description="FHIR base for write_target=fhir-store")
    task_store_bearer_token_file: Path | None = None
    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
    timezone: str = Field("Europe/London", description="the hospital's zone: it decides POD1")
    pathways: list[Path] = Field(default_factory=lambda: [PATHWAYS_DIR / "lumbar_fusion.yaml"])
    terminology: Path | None = Field(None, description="a site terminology file (extends default)")
    fhir_timeout: float = 30.0
    fhir_max_retries: int = 4
    delivery_routes_file: Path | None = Field(
        None, description="reminder/escalation channels per role and ward (see flows/delivery.py)")
    clock_file: Path | None = Field(
        None, description="simulation only (the demo): read the current instant from this file")

    @model_validator(mode="after")
    def _consistent(self) -> RuntimeSettings:
        if self.write_target is WriteTarget.FHIR_STORE and not self.task_store_url:
            raise ValueError("ERAS_WRITE_TARGET=fhir-store needs ERAS_TASK_STORE_URL")
        if self.fhir_auth == "bearer" and not self.fhir_bearer_token_file:
            raise ValueError("ERAS_FHIR_AUTH=bearer needs ERAS_FHIR_BEARER_TOKEN_FILE")
        if self.fhir_auth == "smart-backend":
            missing = [name for name in ("fhir_client_id", "fhir_private_key_file", "fhir_key_id")
                       if not getattr(self, name)]
            if missing:
                names = ", ".join(f"ERAS_{m.upper()}" for m in missing)
                raise ValueError(f"ERAS_FHIR_AUTH=smart-backend needs {names}")
        ZoneInfo(self.timezone)
        return self


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} from {path}: {exc.strerror}") from exc


def ehr_auth(s: RuntimeSettings) -> FhirAuth:
    if s.fhir_auth == "bearer" and s.fhir_bearer_token_file:
        return BearerTokenAuth(_read_secret(s.fhir_bearer_token_file, "the FHIR bearer token"))
    if s.fhir_auth == "smart-backend":
        assert s.fhir_private_key_file and s.fhir_client_id and s.fhir_key_id
        key = _read_secret(s.fhir_private_key_file, "the SMART private key")
        return SmartBackendAuth(s.fhir_client_id, key, s.fhir_key_id, s.fhir_key_algorithm,
                                token_url=s.fhir_token_url, fhir_base_url=s.fhir_base_url,
                                scope=s.fhir_scope)
    return NoAuth()


def load_pathways(s: RuntimeSettings) -> dict[str, Pathway]:
    terms = load_terminology(s.terminology) if s.terminology else None
    loaded = [load_pathway(path, terms) for path in s.pathways]
    return {p.id: p for p in loaded}


@asynccontextmanager
async def open_runtime(s: RuntimeSettings, *, migrate: bool = True) -> AsyncIterator[Runtime]:
    """A Runtime with open FHIR clients and a migrated database; closed on exit."""
    url = database_url(s.database_url)
    if migrate:
        upgrade(url)
    db = make_engine(url)
    client_args: dict[str, Any] = {"timeout": s.fhir_timeout, "max_retries": s.fhir_max_retries}
    try:
        async with FhirClient(s.fhir_base_url, auth=ehr_auth(s), **client_args) as ehr:
            if s.write_target is WriteTarget.FHIR_STORE:
                assert s.task_store_url
                store_auth: FhirAuth = NoAuth()
                if s.task_store_bearer_token_file:
                    store_auth = BearerTokenAuth(_read_secret(s.task_store_bearer_token_file,
                                                              "the task store token"))
                async with FhirClient(s.task_store_url, auth=store_auth, **client_args) as store:
                    yield _runtime(s, ehr, store, db)
            else:
                yield _runtime(s, ehr, ehr if s.write_target is WriteTarget.EHR else None, db)
    finally:
        db.dispose()


def _runtime(s: RuntimeSettings, ehr: FhirClient, tasks: FhirClient | None, db) -> Runtime:
    rt = Runtime(pathways=load_pathways(s), ehr=ehr, tasks=tasks, target=s.write_target, db=db,
                 tz=ZoneInfo(s.timezone), identifier_system=s.identifier_system)
    if s.clock_file is not None:
        rt.clock = file_clock(s.clock_file)
    if s.delivery_routes_file is not None:
        from flows.delivery import delivering, load_routing

        rt.deliver = delivering(load_routing(s.delivery_routes_file, ehr=ehr), db, rt.clock)
    return rt


def file_clock(path: Path) -> Callable[[], datetime]:
    """A clock that reads an ISO instant from `path`: lets the demo replay weeks in seconds."""
    def now() -> datetime:
        return datetime.fromisoformat(path.read_text(encoding="utf-8").strip())
    return now
