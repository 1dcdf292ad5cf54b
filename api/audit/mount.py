"""Mounts the quality audit on the API (after the worklist, whose sign-in it shares)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from sqlmodel import Session, select

from api.audit import chart_routes, outcomes, page, routes
from api.audit.pseudonyms import Pseudonymiser, identity
from api.auth import Principal
from flows.settings import AuditSettings, Settings
from store.models import AuditEpisode


@dataclass(frozen=True)
class AuditState:
    """What the audit routes read from `app.state.audit`."""

    settings: AuditSettings
    pseudonymiser: Pseudonymiser
    episodes: Pseudonymiser
    tz: ZoneInfo

    def reidentifies(self, user: Principal) -> bool:
        return bool(user.roles & frozenset(self.settings.reidentify_roles))

    def label_for(self, user: Principal) -> Callable[[str], str]:
        """Real patient ids for roles that may re-identify, pseudonyms for everyone else."""
        return identity if self.reidentifies(user) else self.pseudonymiser

    def episode_for(self, user: Principal) -> Callable[[str], str]:
        """The key an episode is shown and fetched by: its enrolment id, or a pseudonym of it
        (enrolment ids begin worklist task keys, so they would re-identify)."""
        return identity if self.reidentifies(user) else self.episodes

    def enrolment_of(self, session: Session, user: Principal, key: str) -> str | None:
        """The enrolment id an episode key names for this user, or None."""
        if self.reidentifies(user):
            return key
        ids = session.exec(select(AuditEpisode.enrolment_id)).all()
        return next((one for one in ids if self.episodes(one) == key), None)


def mount_audit(app: FastAPI, settings: Settings) -> None:
    """Add /audit (JSON, CSV, FHIR) and /ui/audit; needs `mount_worklist` first (sign-in, pathways)."""
    chosen = settings.audit
    key = chosen.pseudonym_key.get_secret_value().encode() if chosen.pseudonym_key else None
    key = key or secrets.token_bytes(32)
    app.state.audit = AuditState(chosen, Pseudonymiser(key), Pseudonymiser(key, prefix="ep"),
                                 ZoneInfo(settings.timezone))
    app.include_router(routes.router)
    app.include_router(chart_routes.router)
    app.include_router(outcomes.router)
    app.include_router(page.router)
