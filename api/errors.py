"""Domain errors -> HTTP responses, in one place; FHIR routes answer with an OperationOutcome."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from api.intake.batcher import IntakeFailed
from fhir_adapters.notification_types import BadNotification

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
FHIR_PREFIX = "/fhir/"


class NotifierUnauthorized(Exception):
    """A notification without a credential, for an unknown subscription, or with a wrong one."""


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> dict[str, Any]:
    """An R4 OperationOutcome with one issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


def fhir_response(
    status_code: int,
    code: str,
    diagnostics: str,
    *,
    severity: str = "error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return FhirJSONResponse(
        operation_outcome(code, diagnostics, severity=severity),
        status_code=status_code,
        headers=headers,
    )


async def _bad_notification(_request: Request, error: Exception) -> Response:
    assert isinstance(error, BadNotification)
    return fhir_response(error.status_code, error.issue_code, error.message)


async def _unauthorized(_request: Request, error: Exception) -> Response:
    return fhir_response(401, "login", str(error), headers={"WWW-Authenticate": "Bearer"})


async def _intake_failed(_request: Request, error: Exception) -> Response:
    return fhir_response(503, "transient", str(error), headers={"Retry-After": "5"})


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if not request.url.path.startswith(FHIR_PREFIX):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    code = (
        "not-found"
        if error.status_code == 404
        else "not-supported"
        if error.status_code == 405
        else "invalid"
    )
    return fhir_response(error.status_code, code, str(error.detail), headers=dict(error.headers or {}))


async def _request_invalid(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    where = ".".join(str(part) for part in error.errors()[0]["loc"]) if error.errors() else "request"
    if request.url.path.startswith(FHIR_PREFIX):
        return fhir_response(400, "invalid", f"the request is malformed at {where}")
    return JSONResponse({"detail": f"the request is malformed at {where}"}, status_code=422)


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    if request.url.path.startswith(FHIR_PREFIX):
        return fhir_response(500, "exception", "the server failed unexpectedly; the request was not stored")
    return JSONResponse({"detail": "internal server error"}, status_code=500)


# The shapes the handlers above answer with, for the OpenAPI (`responses=` on each router), so a
# client, and schemathesis in tests/api/test_contract.py, can check every error against the schema.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}},
}
OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["severity", "code"],
            "properties": {"severity": {"type": "string"}, "code": {"type": "string"},
                           "diagnostics": {"type": "string"}},
        }},
    },
}
MEANINGS = {
    200: "Received: what was stored, as an OperationOutcome of severity information",
    400: "The request or its body is malformed",
    401: "No credential, or one that is not valid",
    403: "The caller's roles or wards do not allow this",
    404: "Nothing by that key",
    408: "The body did not arrive in time",
    409: "The task changed or closed meanwhile; reload",
    413: "The body is larger than the configured limit",
    415: "The body is not JSON",
    422: "A parameter or the body does not validate",
    502: "The EHR did not accept the change; nothing was saved",
    503: "A dependency is unavailable; retry later",
}
Responses = dict[int | str, dict[str, Any]]


def problems(*statuses: int) -> Responses:
    """`responses=` for the plain JSON routes: each status answers `{"detail": "..."}`."""
    return {s: {"description": MEANINGS[s], "content": {"application/json": {"schema": PROBLEM_SCHEMA}}}
            for s in statuses}


def outcomes(*statuses: int) -> Responses:
    """`responses=` for the FHIR routes: each status answers an OperationOutcome."""
    return {s: {"description": MEANINGS[s], "content": {FHIR_JSON: {"schema": OUTCOME_SCHEMA}}}
            for s in statuses}


def pages(*statuses: int) -> Responses:
    """`responses=` for the routes a browser follows: each status answers an HTML page saying why."""
    return {s: {"description": MEANINGS[s], "content": {"text/html": {"schema": {"type": "string"}}}}
            for s in statuses}


# Every route that takes a bearer token (`CurrentUser`, `allowed(...)`): refused or malformed.
SIGNED_IN = problems(401, 403, 422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BadNotification, _bad_notification)
    app.add_exception_handler(NotifierUnauthorized, _unauthorized)
    app.add_exception_handler(IntakeFailed, _intake_failed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, _unexpected)
