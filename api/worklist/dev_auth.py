"""Development sign-in: local tokens for the demo, mounted only when dev mode is on."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, HTTPException, Request

from api.errors import problems
from api.worklist.models import DevTokenPublic, DevTokenRequest

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/dev-token", response_model=DevTokenPublic, responses=problems(400, 403, 422))
async def dev_token(body: DevTokenRequest, request: Request) -> DevTokenPublic:
    """A token signed with the key generated at start-up (dev mode only, loopback clients only)."""
    if not is_loopback(request.client.host if request.client else None):
        raise HTTPException(status_code=403, detail="dev tokens are issued to this machine only")
    issuer = request.app.state.worklist.dev_issuer
    return DevTokenPublic(access_token=issuer.issue(body.subject, body.roles, body.wards))


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address: not trusted
        return False
