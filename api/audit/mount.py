"""Mounts the quality audit on the API (after the worklist, whose sign-in it shares)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from api.audit import outcomes, page, routes
from api.audit.pseudonyms import Pseudonymiser, identity
from api.auth import Principal
from api.config import AuditSettings, Settings


@dataclass(frozen=True)
class AuditState:
    """What the audit routes read from `app.state.audit`."""

    settings: AuditSettings
    pseudonymiser: Pseudonymiser
    tz: ZoneInfo

    def label_for(self, user: Principal) -> Callable[[str], str]:
        """Real ids for roles that may re-identify, pseudonyms for everyone else."""
        if user.roles & frozenset(self.settings.reidentify_roles):
            return identity
        return self.pseudonymiser


def mount_audit(app: FastAPI, settings: Settings) -> None:
    """Add /audit (JSON, CSV, FHIR) and /ui/audit; needs `mount_worklist` first (sign-in, pathways)."""
    chosen = settings.audit
    key = chosen.pseudonym_key.get_secret_value().encode() if chosen.pseudonym_key else None
    app.state.audit = AuditState(chosen, Pseudonymiser(key or secrets.token_bytes(32)),
                                 ZoneInfo(settings.timezone))
    app.include_router(routes.router)
    app.include_router(outcomes.router)
    app.include_router(page.router)
