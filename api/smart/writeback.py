"""Write-backs in the user's name: where the EHR requires user-level writes, a launched user's
worklist actions reach the EHR with the access token their launch was granted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import HTTPException, Request

from api.auth import Principal
from api.smart.sessions import RELAUNCH
from fhir_adapters.auth import BearerTokenAuth
from fhir_adapters.client import FhirClient
from flows.runtime import WriteTarget

USER_WRITE_RETRIES = 1  # as the worklist's own client: a nurse waits on it


@asynccontextmanager
async def user_task_client(request: Request, user: Principal) -> AsyncIterator[FhirClient | None]:
    """A FHIR client on the user's EHR token when `ERAS_SMART_USER_TOKEN_WRITEBACK` is on, Tasks
    live in the EHR and the user came by launch; else None (the app's own client is used)."""
    app = request.app.state
    if not (app.smart.settings.user_token_writeback and user.session is not None
            and app.settings.write_target is WriteTarget.EHR):
        yield None
        return
    row = await app.sessions.row(user.session)
    if row is None or row.token_expires_at <= datetime.now(UTC):
        raise HTTPException(status_code=401, detail=f"your EHR access token has expired; {RELAUNCH}")
    # The token is for the server that launched us (its `aud`), never sent anywhere else.
    async with FhirClient(row.iss, auth=BearerTokenAuth(row.access_token), timeout=app.settings.fhir.timeout,
                          max_retries=USER_WRITE_RETRIES) as client:
        yield client
