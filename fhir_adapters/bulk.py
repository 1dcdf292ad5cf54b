"""FHIR Bulk Data `Group/[id]/$export`: kick-off, status polling, ndjson download."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirFatalError


@dataclass(frozen=True)
class BulkExport:
    """The resources an export returned and its transactionTime: the next export's `_since`."""

    transaction_time: str
    resources: list[dict[str, Any]]


async def group_export(client: FhirClient, group_id: str, *, since: str | None, types: Sequence[str],
                       max_wait: float = 60.0, max_polls: int = 720,
                       sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> BulkExport:
    """Run one Group export to completion; waits as the server's Retry-After asks (capped)."""
    params = {"_type": ",".join(types)} | ({"_since": since} if since else {})
    kick_off = await client.request("GET", f"Group/{group_id}/$export", params=params,
                                    headers={"Prefer": "respond-async"})
    status_url = kick_off.headers.get("Content-Location")
    if kick_off.status_code != 202 or not status_url:
        raise FhirFatalError(f"Group/{group_id}/$export was not accepted as an async request "
                             f"({kick_off.status_code}, no Content-Location)")
    manifest = await _wait_for_manifest(client, status_url, max_wait, max_polls, sleep)
    resources: list[dict[str, Any]] = []
    for output in manifest.get("output") or []:
        response = await client.request("GET", str(output["url"]),
                                        headers={"Accept": "application/fhir+ndjson"})
        resources.extend(_ndjson(response.text, str(output.get("type"))))
    return BulkExport(transaction_time=str(manifest["transactionTime"]), resources=resources)


async def _wait_for_manifest(client: FhirClient, status_url: str, max_wait: float, max_polls: int,
                             sleep: Callable[[float], Awaitable[Any]]) -> dict[str, Any]:
    for _ in range(max_polls):
        response = await client.request("GET", status_url, headers={"Accept": "application/json"})
        if response.status_code == 200:
            manifest = response.json()
            if not isinstance(manifest, dict) or "transactionTime" not in manifest:
                raise FhirFatalError("the bulk export manifest has no transactionTime")
            return manifest
        retry_after = response.headers.get("Retry-After", "")
        await sleep(min(float(retry_after) if retry_after.isdigit() else max_wait, max_wait))
    raise FhirFatalError(f"the bulk export did not finish after {max_polls} status polls")


def _ndjson(text: str, resource_type: str) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            resource = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FhirFatalError(f"bulk export file of {resource_type}: line {number} is not JSON") from exc
        if isinstance(resource, dict) and resource.get("resourceType"):
            out.append(resource)
    return out
