"""`GET /launch` (EHR and standalone launch) and `GET /launch/callback`: the SMART sign-in.

They are the sign-in itself, open to anyone like any login page; what the session may then
do is decided by `api/access.py` from the roles the EHR vouched for.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.errors import pages
from api.smart.discovery import LaunchError, discover, require_allowed
from api.smart.launch import authorize, digest, exchange, landing, verified_session
from api.smart.sessions import BROWSER_COOKIE, set_cookie
from api.smart.state import SmartState
from store.db import session_scope
from store.models import SmartLaunch
from store.sessions import LaunchRefused, claim_launch, save_launch, save_session

log = logging.getLogger(__name__)
# Every refusal is a page saying what happened (LaunchError.status).
router = APIRouter(prefix="/launch", tags=["smart"], responses=pages(400, 401, 403, 502))
Param = Annotated[str | None, Query(max_length=2000)]


@router.get("", response_class=HTMLResponse)
async def launch(request: Request, iss: Param = None, launch: Param = None) -> Response:
    """EHR launch (`iss` and `launch`) or standalone (no `launch`): off to the EHR's authorize page."""
    smart: SmartState = request.app.state.smart
    try:
        if launch and not iss:
            raise LaunchError("the EHR launch names no FHIR server (iss)")
        checked = require_allowed(iss or smart.settings.standalone_iss, smart.settings.allowed_issuers)
        smart.require_client()
        config = await discover(checked)
        now = datetime.now(UTC)
        started = authorize(smart.settings, config, iss=checked, launch=launch,
                            redirect_url=smart.redirect_url(request), now=now)
    except LaunchError as error:
        return _refused(request, error)

    def save() -> None:
        with session_scope(request.app.state.engine) as session:
            save_launch(session=session, launch=started.launch)

    await run_in_threadpool(save)
    response = RedirectResponse(started.url, status_code=302)
    set_cookie(request, response, BROWSER_COOKIE, started.browser, max_age=smart.settings.launch_seconds,
               embedded=smart.embedded, path="/launch")
    return response


@router.get("/callback", response_class=HTMLResponse)
async def callback(
    request: Request, code: Param = None, state: Param = None, error: Param = None
) -> Response:
    """The code exchanged (PKCE), the id_token checked, a session opened, the launch's page shown."""
    smart: SmartState = request.app.state.smart
    now = datetime.now(UTC)
    try:
        if error:
            raise LaunchError(f"the EHR did not authorize the launch ({error[:100]})", status=403)
        if not code or not state:
            raise LaunchError("the EHR's answer carries no code or no state (wrong state)")
        pending = await run_in_threadpool(_claim, request, state, now)
        if digest(request.cookies.get(BROWSER_COOKIE, "")) != pending.browser_hash:
            raise LaunchError("this sign-in was started in another browser (state does not match)",
                              status=403)
        body = await exchange(smart.settings, pending, code, secret=smart.client_secret())
        cookie, row = await verified_session(smart.settings, pending, body,
                                             keys=smart.keys(pending.endpoints["jwks_uri"]), now=now)
    except LaunchError as failure:
        return _refused(request, failure)

    def save() -> None:
        with session_scope(request.app.state.engine) as session:
            save_session(session=session, row=row)

    await run_in_threadpool(save)
    log.info("SMART launch from %s: session opened for %s", row.iss, row.subject)
    response = RedirectResponse(landing(row), status_code=303)
    set_cookie(request, response, smart.cookie_name, cookie, max_age=smart.settings.session_seconds,
               embedded=smart.embedded)
    response.delete_cookie(BROWSER_COOKIE, path="/launch")
    return response


def _claim(request: Request, state: str, now: datetime) -> SmartLaunch:
    try:
        with session_scope(request.app.state.engine) as session:
            found = claim_launch(session=session, state=state, at=now)
            session.expunge(found)
            return found
    except LaunchRefused as refused:
        raise LaunchError(str(refused), status=403) from None


def _refused(request: Request, error: LaunchError) -> HTMLResponse:
    """The browser gets a page saying what went wrong; the log gets the same line (no patient data)."""
    log.warning("SMART launch refused (%s): %r", error.status, str(error))  # repr: no forged log lines
    templates = request.app.state.worklist.templates
    response: HTMLResponse = templates.TemplateResponse(
        request, "launch_error.html", {"message": str(error)}, status_code=error.status)
    return response
