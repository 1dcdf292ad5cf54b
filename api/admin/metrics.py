"""GET /metrics in the Prometheus text format: this process's counters and the store's state.

Unauthenticated like the probes (scrapers rarely carry tokens) and free of patient data;
expose it on the internal network only (docs/operations.md).
"""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flows.metrics import registry_for

router = APIRouter(tags=["metrics"])


def _registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = request.app.state.metrics_registry = registry_for(request.app.state.engine)
    return registry


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # The store's counts are queries: off the event loop.
    body = await run_in_threadpool(generate_latest, _registry(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
