"""Development sign-in: local tokens for the demo, mounted only when dev mode is on."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.worklist.models import DevTokenPublic, DevTokenRequest

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/dev-token", response_model=DevTokenPublic)
async def dev_token(body: DevTokenRequest, request: Request) -> DevTokenPublic:
    """A token signed with the key generated at start-up (dev mode only)."""
    issuer = request.app.state.worklist.dev_issuer
    return DevTokenPublic(access_token=issuer.issue(body.subject, body.roles, body.wards))
