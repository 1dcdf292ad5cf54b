"""Async FHIR R4 REST client over httpx: authentication, retries, paging and typed errors."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson

from fhir_adapters.auth import FhirAuth, NoAuth
from fhir_adapters.errors import (
    FhirFatalError,
    FhirTemporaryError,
    credentials_refused,
    describe_json_error,
    error_for_response,
    malformed_response,
)

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
SearchParams = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]]
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class ServerType(enum.Enum):
    """The EHR vendor, for the few quirks that need special handling.

    EPIC: every request carries an `Epic-Client-ID` header with the auth's client id, which Epic
    asks for on some endpoints (fhir.epic.com, "Epic-Client-ID Header"). No other quirk is
    encoded; CERNER and MEDPLUM exist so callers can record what they talk to.
    """

    GENERIC = "generic"
    EPIC = "epic"
    CERNER = "cerner"
    MEDPLUM = "medplum"


def detect_server_type(capability_statement: Mapping[str, Any]) -> ServerType:
    """Guess the vendor from a CapabilityStatement's publisher and software name."""
    publisher = str(capability_statement.get("publisher") or "")
    software = capability_statement.get("software") or {}
    name = str(software.get("name") or "") if isinstance(software, Mapping) else ""
    if publisher in {"Cerner", "Oracle Health"}:
        return ServerType.CERNER
    if name == "Epic":
        return ServerType.EPIC
    if "medplum" in f"{publisher} {name}".lower():
        return ServerType.MEDPLUM
    return ServerType.GENERIC


class FhirClient:
    """A FHIR R4 server: `async with FhirClient(base_url, auth=...) as client: ...`."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: FhirAuth | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        server_type: ServerType = ServerType.GENERIC,
        max_connections: int = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.server_type = server_type
        self.round_trips = 0
        self.max_connections = max_connections  # the pool's size: requests in flight at once
        # Called after every request with (method, status or 'timeout'/'unreachable', seconds).
        self.on_call: Callable[[str, int | str, float], None] | None = None
        self._origin = _origin(httpx.URL(self.base_url))
        self._base_path = httpx.URL(self.base_url).path
        self._auth = auth or NoAuth()
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def __aenter__(self) -> FhirClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The resource, with the ETag's version in `meta.versionId` if the body lacked it."""
        path = f"{_checked_type(resource_type)}/{_checked_id(resource_id)}"
        response = await self.request("GET", path)
        resource = self._resource(response, "GET", path)
        version = _version_of(response.headers.get("ETag"))
        if version and not resource.get("meta", {}).get("versionId"):
            resource.setdefault("meta", {})["versionId"] = version
        return resource

    async def search_bundle(
        self, resource_type: str, params: SearchParams | None = None
    ) -> dict[str, Any]:
        """The first page of a search, as the server's Bundle."""
        return await self._bundle("GET", _checked_type(resource_type), params=params)

    async def search(
        self, resource_type: str, params: SearchParams | None = None, *, max_pages: int = 100
    ) -> list[dict[str, Any]]:
        """Every entry's resource (matches and includes), following `next` links."""
        bundle = await self.search_bundle(resource_type, params)
        resources = _entry_resources(bundle)
        for _ in range(max_pages - 1):
            next_url = _next_link(bundle)
            if next_url is None:
                return resources
            bundle = await self._bundle("GET", next_url)
            resources.extend(_entry_resources(bundle))
        if _next_link(bundle) is not None:
            raise FhirFatalError(
                f"FHIR search of {resource_type} has more than {max_pages} pages; "
                "narrow the search or raise max_pages.",
                url=f"/{resource_type}",
            )
        return resources

    async def create(
        self, resource: Mapping[str, Any], *, if_none_exist: str | None = None
    ) -> dict[str, Any]:
        """The created (or, for a conditional create, the matching) resource."""
        path = _checked_type(str(resource.get("resourceType", "")))
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else {}
        response = await self.request("POST", path, json=resource, headers=headers)
        created = self._optional_resource(response, "POST", path)
        if created is not None:
            return created
        location = response.headers.get("Location") or response.headers.get("Content-Location")
        if not location:
            why = "neither a body nor a Location header"
            raise malformed_response("POST", f"/{path}", response.status_code, why)
        return await self.request_resource("GET", location.split("/_history/")[0])

    async def update(
        self, resource: Mapping[str, Any], *, if_match: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """The stored resource and its ETag; `if_match` is an ETag or a bare versionId."""
        path = f"{_checked_type(str(resource.get('resourceType', '')))}/"
        path += _checked_id(str(resource.get("id", "")))
        precondition = _etag(if_match)
        headers = {"If-Match": precondition} if precondition else {}
        response = await self.request("PUT", path, json=resource, headers=headers)
        updated = self._optional_resource(response, "PUT", path)
        if updated is None:
            updated = await self.read(*path.split("/"))
        etag = response.headers.get("ETag") or _etag(updated.get("meta", {}).get("versionId"))
        return updated, etag

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """The transaction-response Bundle; the server applies all entries or none."""
        return await self._bundle("POST", "", json=_typed_bundle(bundle, "transaction"))

    async def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """The batch-response Bundle; check each entry's `response.status`."""
        return await self._bundle("POST", "", json=_typed_bundle(bundle, "batch"))

    async def capabilities(self) -> dict[str, Any]:
        """The server's CapabilityStatement."""
        return await self.request_resource("GET", "metadata")

    async def request_resource(
        self, method: str, path: str, *, params: SearchParams | None = None, json: Any = None
    ) -> dict[str, Any]:
        """`request` whose 2xx body must be a FHIR resource."""
        response = await self.request(method, path, params=params, json=json)
        return self._resource(response, method, self._display(self._url(path)))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: SearchParams | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A successful response, retrying temporary errors with backoff; raises FhirError."""
        url = self._url(path)
        display = self._display(url)
        content = None if json is None else _dumps(json)
        sent = self._headers(method, content is not None, headers)
        attempt = 0
        while True:
            try:
                return await self._send_authorized(method, url, display, params, content, sent)
            except FhirTemporaryError as exc:
                if attempt >= self._max_retries:
                    raise
                await self._sleep(self._delay(attempt, exc.retry_after))
                attempt += 1

    def _headers(
        self, method: str, has_body: bool, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON}
        if has_body:
            headers["Content-Type"] = FHIR_JSON
        if method in {"POST", "PUT", "PATCH"}:
            headers["Prefer"] = "return=representation"
        if self.server_type is ServerType.EPIC and self._auth.client_id:
            headers["Epic-Client-ID"] = self._auth.client_id
        headers.update(extra or {})
        return headers

    async def _send_authorized(
        self,
        method: str,
        url: str,
        display: str,
        params: SearchParams | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        auth_headers = await self._auth.headers(self._http)
        send = {**headers, **auth_headers}
        response = await self._send(method, url, display, params, content, send)
        if response.status_code == 401 and await self._auth.unauthorized(auth_headers):
            send = {**headers, **await self._auth.headers(self._http)}
            response = await self._send(method, url, display, params, content, send)
        if response.status_code == 401:
            token_url = getattr(self._auth, "token_url", None)
            raise credentials_refused(method, display, response, self._auth.hint(), token_url)
        if response.is_error:
            raise error_for_response(method, display, response)
        return response

    async def _send(
        self,
        method: str,
        url: str,
        display: str,
        params: SearchParams | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        self.round_trips += 1
        started = time.perf_counter()
        outcome: int | str = "error"
        try:
            response = await self._http.request(
                method, url, params=params, content=content, headers=headers  # type: ignore[arg-type]
            )
            outcome = response.status_code
            return response
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            message = f"FHIR request {method} {display} to {self.base_url} timed out"
            raise FhirTemporaryError(message, url=display) from exc
        except httpx.TransportError as exc:
            outcome = "unreachable"
            raise FhirTemporaryError(
                f"Could not reach the FHIR server at {self.base_url} for {method} {display} "
                f"({type(exc).__name__})",
                url=display,
            ) from exc
        finally:
            if self.on_call is not None:
                self.on_call(method, outcome, time.perf_counter() - started)
            log.debug(
                "FHIR %s %s -> %s in %.1f ms (round trip %d)",
                method,
                display.strip("/").split("/")[0] or "(base)",
                outcome,
                (time.perf_counter() - started) * 1000,
                self.round_trips,
            )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._backoff_max)
        return random.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt))

    async def _bundle(
        self, method: str, path: str, *, params: SearchParams | None = None, json: Any = None
    ) -> dict[str, Any]:
        response = await self.request(method, path, params=params, json=json)
        display = self._display(self._url(path))
        bundle = self._resource(response, method, display)
        if bundle.get("resourceType") != "Bundle":
            raise malformed_response(method, display, response.status_code, "expected a Bundle")
        return bundle

    def _resource(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        resource = self._optional_resource(response, method, path)
        if resource is None:
            display = path if path.startswith("/") else f"/{path}"
            raise malformed_response(method, display, response.status_code, "empty body")
        return resource

    def _optional_resource(
        self, response: httpx.Response, method: str, path: str
    ) -> dict[str, Any] | None:
        """The body as a FHIR resource, or None for an empty body (some EHRs send none)."""
        display = path if path.startswith("/") else f"/{path}"
        if not response.content.strip():
            return None
        try:
            body = _decode(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise malformed_response(
                method, display, response.status_code, describe_json_error(exc)
            ) from exc
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise malformed_response(
                method, display, response.status_code, "JSON is not a FHIR resource"
            )
        return body

    def _url(self, path: str) -> str:
        if "://" not in path:
            return urljoin(self.base_url, path.lstrip("/"))
        if _origin(httpx.URL(path)) != self._origin:
            raise FhirFatalError(
                f"Refusing to follow a link to another server ({httpx.URL(path).host}); "
                f"only {self._origin[1]} is trusted with our credentials."
            )
        return path

    def _display(self, url: str) -> str:
        """The URL's path relative to the base, without the query (it may identify patients)."""
        path = httpx.URL(url).path
        if path.startswith(self._base_path):
            return "/" + path[len(self._base_path) :]
        return path


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


def _checked_type(resource_type: str) -> str:
    if not _TYPE.match(resource_type):
        raise ValueError(f"Not a FHIR resource type: {resource_type!r}")
    return resource_type


def _checked_id(resource_id: str) -> str:
    if not _ID.match(resource_id):
        raise ValueError(f"Not a FHIR resource id: {resource_id!r}")
    return resource_id


def _etag(version: str | None) -> str | None:
    if not version:
        return None
    return version if version.startswith(("W/", '"')) else f'W/"{version}"'


def _version_of(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"') or None


def _dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON by orjson (a plan's transaction is the largest body an apply sends);
    what orjson refuses (a key that is not a string) goes through the stdlib as before."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _typed_bundle(bundle: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if bundle.get("type") not in (None, kind):
        raise ValueError(f"Expected a {kind} Bundle, got type {bundle.get('type')!r}")
    return {"resourceType": "Bundle", **bundle, "type": kind}


def _entry_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def _decode(content: bytes) -> Any:
    """JSON parsed by orjson (a patient's record in one batch response is the largest thing an
    apply parses; orjson takes a fraction of the stdlib's time); a body it refuses is parsed
    again by the stdlib, whose errors say what was wrong in the words the rest of us use."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)
