"""FHIR client errors, split by what the caller should do next: give up or retry."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

TEMPORARY_STATUSES = frozenset({408, 429})
CONFLICT_STATUSES = frozenset({409, 412})


class FhirError(Exception):
    """Root of all FHIR errors; the message is one sentence without patient data."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        outcome_text: str = "",
        issues: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.outcome_text = outcome_text
        self.issues = issues or []


class FhirFatalError(FhirError):
    """Retrying will not help: bad request, missing resource, malformed response."""


class FhirTemporaryError(FhirError):
    """The server or network failed in a way that may pass: 5xx, 429, 408, timeouts."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class FhirAuthError(FhirFatalError):
    """Credentials were refused or a token could not be obtained."""

    def __init__(
        self,
        message: str,
        *,
        token_url: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.token_url = token_url
        self.error = error
        self.error_description = error_description


class FhirConflictError(FhirFatalError):
    """A version conflict (409/412): someone else changed the resource first."""

    def __init__(self, message: str, *, current_etag: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.current_etag = current_etag


def outcome_issues(body: Any) -> list[dict[str, str]]:
    """The issues of an OperationOutcome as plain severity/code/diagnostics dicts."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return []
    issues = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, Mapping):
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (
            details.get("text") if isinstance(details, Mapping) else None
        )
        issues.append(
            {
                "severity": str(issue.get("severity", "")),
                "code": str(issue.get("code", "")),
                "diagnostics": str(text or ""),
            }
        )
    return issues


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header given in seconds or as an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_response(method: str, path: str, response: httpx.Response) -> FhirError:
    """The error that a non-2xx response stands for; the caller raises it."""
    status = response.status_code
    try:
        issues = outcome_issues(response.json())
    except (ValueError, UnicodeDecodeError):
        issues = []
    outcome_text = "; ".join(i["diagnostics"] for i in issues if i["diagnostics"])
    detail = f": {outcome_text}" if outcome_text else ""
    fields: dict[str, Any] = {
        "status": status,
        "url": path,
        "outcome_text": outcome_text,
        "issues": issues,
    }
    if status >= 500 or status in TEMPORARY_STATUSES:
        return FhirTemporaryError(
            f"FHIR server failed {method} {path} ({status}){detail}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            **fields,
        )
    if status in CONFLICT_STATUSES:
        return FhirConflictError(
            f"FHIR server reported a version conflict on {method} {path} ({status}){detail}",
            current_etag=response.headers.get("ETag"),
            **fields,
        )
    return FhirFatalError(f"FHIR server rejected {method} {path} ({status}){detail}", **fields)


def malformed_response(method: str, path: str, status: int, why: str) -> FhirFatalError:
    """The error for a 2xx response whose body is not what FHIR promises."""
    return FhirFatalError(
        f"FHIR server sent a malformed response to {method} {path} ({status}): {why}",
        status=status,
        url=path,
    )


def describe_json_error(exc: json.JSONDecodeError | UnicodeDecodeError) -> str:
    """A short reason for an unparseable body that never quotes the body itself."""
    if isinstance(exc, json.JSONDecodeError):
        return f"body is not JSON (line {exc.lineno}, column {exc.colno})"
    return "body is not UTF-8 text"


def credentials_refused(
    method: str, path: str, response: httpx.Response, hint: str, token_url: str | None
) -> FhirAuthError:
    """The error for a 401 that a fresh token did not cure."""
    base = error_for_response(method, path, response)
    detail = f": {base.outcome_text}" if base.outcome_text else ""
    return FhirAuthError(
        f"FHIR server refused our credentials for {method} {path} (401){detail}; {hint}.",
        token_url=token_url,
        status=response.status_code,
        url=path,
        outcome_text=base.outcome_text,
        issues=base.issues,
    )
