"""The worklist web page: one server-rendered shell; the script signs in and polls the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from engine.plan import plan_of

router = APIRouter(prefix="/ui", tags=["pages"])


@router.get("/worklist", response_class=HTMLResponse)
async def worklist_page(request: Request) -> HTMLResponse:
    """The page (no patient data in it: the script fetches the list with the user's token)."""
    state = request.app.state.worklist
    reasons = {code: reason.display or code for pathway in state.pathways.values()
               for code, reason in plan_of(pathway).terminology.decline_reasons.items()}
    return state.templates.TemplateResponse(
        request, "worklist.html", {"dev_mode": state.settings.dev_mode, "poll_seconds": 10,
                                   "reasons": reasons}
    )
