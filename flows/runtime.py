"""What a unit of work needs, built once at the edges: pathways, FHIR endpoints, store, clock."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine

from engine.model import Pathway
from engine.outcomes import OutcomeDefinitions, load_outcome_definitions
from fhir_adapters.client import FhirClient
from fhir_adapters.coalesce import Coalescer, Flight
from fhir_adapters.locations import DEFAULT_PATTERN
from fhir_adapters.plandefinition import CANONICAL_BASE
from flows.poll_options import PollSettings
from store.db import reading, redoable, session_scope

DEFAULT_IDENTIFIER_SYSTEM = f"{CANONICAL_BASE}/identifier/action"
# Patients the drain applies at once, whatever batch they came in (ApplySlots). An apply is mostly
# waiting for the EHR (~0.1 s of this process's CPU in ~0.8 s, bench/hospital_feed.py), so one at
# a time made a batch as long as the sum of its applies, and each event waited for the batch
# before its own and its place in it.
DEFAULT_CONCURRENT_APPLIES = 8
# The most entries in one Bundle that carries several applies' reads or writes (fhir_adapters.
# coalesce): 8 applies' reads of a pathway's ~12 searches, and their usual writes, fit in one.
DEFAULT_BUNDLE_MAX_ENTRIES = 100
# How long an apply's request may wait for the drain's other applies to reach the EHR, so that
# they share it (fhir_adapters.coalesce.Flight): on PostgreSQL their store work ends ~20-40 ms apart.
BUNDLE_LINGER_SECONDS = 0.2
# Connections (FHIR, database) and store threads beyond the drain's applies, so that the tick, a
# poll or a worklist write-back running beside a full batch does not queue behind it.
SPARE_CONNECTIONS = 2

P = ParamSpec("P")
T = TypeVar("T")


class WriteTarget(StrEnum):
    """Where the engine's Tasks, CarePlans and CommunicationRequests are written."""

    EHR = "ehr"  # the EHR's own FHIR API accepts Task writes
    FHIR_STORE = "fhir-store"  # a FHIR server the hospital runs beside the EHR
    NONE = "none"  # no FHIR writes: the engine's store is the task list


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ApplySlots:
    """The applies a process runs at once, shared by the drain batches it has in flight.

    `free()` says whether another batch could start an apply now: a slot is free and no apply is
    waiting for one. Listeners are called as each apply ends (flows.loops claims again then).
    """

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self._waiting = 0
        self.listeners: list[Callable[[], None]] = []

    def free(self) -> bool:
        return self._waiting == 0 and not self._semaphore.locked()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()
            for listener in self.listeners:
                listener()


@dataclass
class Runtime:
    """The engine wired to one hospital. `tasks` is None when the write target is NONE."""

    pathways: Mapping[str, Pathway]
    ehr: FhirClient
    tasks: FhirClient | None
    target: WriteTarget
    db: Engine
    tz: tzinfo
    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
    clock: Callable[[], datetime] = field(default=_utcnow)
    # Delivers reminders/escalations to people (flows.delivery); None: FHIR requests only.
    deliver: Callable[[list[Any]], Awaitable[None]] | None = None
    # How poll-ehr finds changes (patient-scoped searches unless the site says otherwise).
    poll: PollSettings = field(default_factory=PollSettings)
    report_dir: Path = Path("audit-reports")  # where the nightly audit report is written
    # Where ORU results are written and Observations also read (ERAS_MLLP_RESULTS_STORE_URL).
    results: FhirClient | None = None
    # Splits a location display holding ward and bed ("Ward 5B, bed 12"): ERAS_FHIR_WARD_BED_PATTERN.
    ward_bed: re.Pattern[str] = DEFAULT_PATTERN
    # How far in the future a fact that happened may be dated and still count (engine.facts.HAPPENED).
    future_tolerance: timedelta = timedelta(minutes=5)
    # Patients the drain applies at once (ERAS_FHIR_CONCURRENT_APPLIES): an apply mostly waits
    # for the EHR. The FHIR clients' pools are larger (flows.config.fhir_connections).
    concurrent_applies: int = DEFAULT_CONCURRENT_APPLIES
    # Concurrent applies' batch reads and transactions go to the EHR together, up to this many
    # entries a Bundle (ERAS_FHIR_BUNDLE_MAX_ENTRIES; 0: each apply's alone).
    bundle_max_entries: int = DEFAULT_BUNDLE_MAX_ENTRIES
    # The audit outcomes, read and stored by every apply (None: outcomes are not kept).
    outcomes: OutcomeDefinitions | None = field(default_factory=load_outcome_definitions)
    # One apply per patient at a time in this process (drain, tick and API share the loop).
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    # The EHR searches each set of pathways needs (flows.apply), worked out once.
    search_plans: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    _coalescers: dict[int, Coalescer] = field(default_factory=dict, repr=False)
    # The drain's applies running (flows.drain), as the coalescers see them.
    flight: Flight = field(default_factory=lambda: Flight(BUNDLE_LINGER_SECONDS), repr=False)
    # Threads that run store work off the event loop on a database server (in_store).
    _store_threads: ThreadPoolExecutor | None = field(default=None, repr=False)

    async def in_store(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run synchronous store work (its own transactions) without blocking the event loop.

        On PostgreSQL every statement waits for the server: run on the loop, one apply's waits
        stopped the others' reads, writes and evaluations (a worker kept ~40 % of its time
        waiting there, bench/end_to_end.py). It runs on a thread of this runtime's: one per
        apply at once and SPARE_CONNECTIONS more. On SQLite a statement is work in this process,
        not a wait, and one writer at a time: threads would only queue on its lock (sleeping in
        its busy handler), so the work runs here, as before.
        """
        if self.db.dialect.name == "sqlite":
            return work(*args, **kwargs)
        if self._store_threads is None:
            self._store_threads = ThreadPoolExecutor(self.concurrent_applies + SPARE_CONNECTIONS,
                                                     thread_name_prefix="eras-store")
        call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._store_threads, call)

    async def in_transaction(self, work: Callable[..., T], *, read_only: bool = False, **kwargs: Any) -> T:
        """`work(session=..., **kwargs)` in one store transaction (committed), run by `in_store`:
        the store functions take their session by keyword. `read_only`: on SQLite, no write lock."""
        return await self.in_store(_transaction, self.db, work, read_only, kwargs)

    def close_store_threads(self) -> None:
        """Stop the store threads (each finishes the work it has); a later in_store starts them again."""
        if self._store_threads is not None:
            self._store_threads.shutdown(wait=True)
            self._store_threads = None

    @functools.cached_property
    def slots(self) -> ApplySlots:
        """The drain's applies at once in this process (`concurrent_applies`), whatever the batch."""
        return ApplySlots(self.concurrent_applies)

    @functools.cached_property
    def work_db(self) -> Engine:
        """`db` for the drain's and the applies' own transactions, done again if a power cut
        undoes them: on SQLite their commits do not wait for the disk (store.db.redoable)."""
        return redoable(self.db)

    def bundles(self, client: FhirClient) -> Coalescer:
        """Where an apply sends its batch read and its transaction to `client` (rt.ehr, rt.tasks):
        with the other applies' in flight at the same time, as one request (fhir_adapters.coalesce)."""
        found = self._coalescers.get(id(client))
        if found is None or found.client is not client or found.max_entries != self.bundle_max_entries:
            # On SQLite the applies' store work runs on the loop, one after another: a request
            # sent alone while the next apply works overlaps the EHR's time with ours, and the
            # ones that come meanwhile go together (with the Flight: no gain, bench/end_to_end.py).
            flight = None if self.db.dialect.name == "sqlite" else self.flight
            found = self._coalescers[id(client)] = Coalescer(client, max_entries=self.bundle_max_entries,
                                                             flight=flight)
        return found

    def patient_lock(self, patient_id: str) -> asyncio.Lock:
        return self._locks.setdefault(patient_id, asyncio.Lock())

    def pathway(self, pathway_id: str) -> Pathway:
        try:
            return self.pathways[pathway_id]
        except KeyError:
            known = ", ".join(sorted(self.pathways)) or "none"
            raise KeyError(f"pathway '{pathway_id}' is not configured (configured: {known})") from None

    @property
    def round_trips(self) -> int:
        """HTTP requests sent so far to the EHR and the task store (retries included)."""
        extra = self.tasks.round_trips if self.tasks is not None and self.tasks is not self.ehr else 0
        return self.ehr.round_trips + extra


def _transaction(db: Engine, work: Callable[..., T], read_only: bool, kwargs: Mapping[str, Any]) -> T:
    with session_scope(reading(db) if read_only else db) as session:
        return work(session=session, **kwargs)
