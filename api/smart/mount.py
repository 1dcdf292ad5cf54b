"""Mounts SMART App Launch on the API: the launch routes and the session cookie as a sign-in."""

from __future__ import annotations

from fastapi import FastAPI

from api.smart import routes
from api.smart.sessions import SessionStore
from api.smart.state import SmartState
from flows.settings import Settings


def mount_smart(app: FastAPI, settings: Settings) -> None:
    """Add `/launch` and `/launch/callback`; `api.auth.current_user` then accepts session cookies."""
    app.state.smart = SmartState(settings=settings.smart, embedded=settings.ehr_origin is not None)
    app.state.sessions = SessionStore(engine=lambda: app.state.engine)
    app.include_router(routes.router)
