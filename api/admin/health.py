"""Liveness for load balancers and operators: is the database reachable?"""

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import ReadSessionDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/healthz", tags=["health"])


@router.get("")
def healthz(session: ReadSessionDep) -> JSONResponse:
    """200 when the database answers, 503 when it does not (no authentication)."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        log.warning("health check: database unreachable (%s)", type(error).__name__)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
