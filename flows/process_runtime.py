"""One Runtime per process: the one `eras serve`/`eras worker` opened, shared by every flow run.

Opening a Runtime migrates the database, compiles the pathways and (with SMART Backend Services)
fetches a token, so the process owner opens it once and installs it here; flow runs on the same
event loop reuse it. A flow run in a fresh process (a Prefect Runner starts each scheduled run
in a subprocess) opens one for the whole run, without migrating: the worker that started it
already did. Its FHIR clients belong to one event loop, hence the loop check.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flows.config import open_runtime
from flows.metrics import instrument_runtime
from flows.runtime import Runtime
from flows.settings import Settings

_installed: tuple[Runtime, asyncio.AbstractEventLoop] | None = None


# Allocations between young-generation collections (CPython's default is 700): an apply's
# short-lived objects (the record's JSON, SQL rows, the evaluation) are mostly gone by then,
# instead of being promoted into the older generations the full collections scan.
YOUNG_GENERATION = 10_000


def tune_collector() -> None:
    """Take the process's long-lived start-up heap (modules, compiled pathways, the web and
    Prefect frameworks: ~260,000 objects) out of the cyclic collector's full scans, and collect
    the young generation less often. Without it the collector took ~15 % of an apply's CPU
    (bench/apply.py --breakdown), most of it full collections rescanning objects that live as
    long as the process. Call it once the Runtime is open, in a process's entry point: frozen
    objects are never freed, so not in tests that open many runtimes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])


def installed() -> Runtime | None:
    """The Runtime shared on the running event loop, if one is installed."""
    loop = asyncio.get_running_loop()
    return _installed[0] if _installed is not None and _installed[1] is loop else None


@asynccontextmanager
async def process_runtime(settings: Settings | None = None, *,
                          migrate: bool = False) -> AsyncIterator[Runtime]:
    """The installed Runtime, else one opened (and installed) for the duration of this block."""
    global _installed
    shared = installed()
    if shared is not None:
        yield shared
        return
    # No settings given: this flow run is the process's edge (a Runner's subprocess), read here.
    async with open_runtime(settings or Settings(), migrate=migrate) as rt:
        instrument_runtime(rt)
        previous, _installed = _installed, (rt, asyncio.get_running_loop())
        try:
            yield rt
        finally:
            _installed = previous
