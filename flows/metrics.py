"""Prometheus metrics: this process's work (applies, FHIR calls, drain batches) and the store's
state, read from the database at scrape time so that every API replica reports the same
cluster-wide backlog, parked patients and deliveries whichever process did the work.

No label carries a patient, resource id or clinical value (`eras_unbound_codes` carries codes
that no concept binds, by resource type, its top N only: flows.unbound_codes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

from fhir_adapters.client import FhirClient
from flows.unbound_codes import UNBOUND_CODES

if TYPE_CHECKING:
    from flows.drain import DrainResult
    from flows.runtime import Runtime

APPLY_SECONDS = Histogram(
    "eras_apply_seconds", "Time to apply one patient (read facts, evaluate, write, commit)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
DRAIN_PATIENTS = Counter(
    "eras_drain_patients", "Patients handled by this process's drain loop, by outcome", ["outcome"])
DRAIN_BATCH_SECONDS = Histogram(
    "eras_drain_batch_seconds", "Time to drain one batch of inbox events",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120))
FUTURE_DATED = Counter(
    "eras_future_dated_facts", "Facts held as dated in the future, counted at each evaluation that held them")
FHIR_CALLS = Counter(
    "eras_fhir_calls", "HTTP requests to the EHR or task store, by outcome", ["method", "outcome"])


def observe_drain(result: DrainResult, seconds: float) -> None:
    if result.claimed:
        DRAIN_BATCH_SECONDS.observe(seconds)
    for outcome, patients in (("applied", result.applied), ("deferred", result.deferred),
                              ("failed", result.failed)):
        if patients:
            DRAIN_PATIENTS.labels(outcome).inc(len(patients))


def fhir_outcome(status: int | str) -> str:
    """2xx, 4xx, 5xx, timeout or unreachable: few values, so the series stay few."""
    if isinstance(status, int):
        return f"{status // 100}xx"
    return status


def _count_fhir_call(method: str, status: int | str, _seconds: float) -> None:
    FHIR_CALLS.labels(method, fhir_outcome(status)).inc()


def instrument_client(client: FhirClient) -> None:
    client.on_call = _count_fhir_call


def instrument_runtime(rt: Runtime) -> None:
    """Count the FHIR calls of a Runtime's clients (the EHR and, if separate, the task store)."""
    instrument_client(rt.ehr)
    if rt.tasks is not None:
        instrument_client(rt.tasks)


_STORE_QUERIES = {
    "inbox": "SELECT status, count(*) FROM inbox_event GROUP BY status",
    "parked": "SELECT count(*) FROM enrolment WHERE parked_at IS NOT NULL",
    "deliveries": "SELECT channel, ok, count(*) FROM delivery GROUP BY channel, ok",
}


class StoreCollector(Collector):
    """Backlog, events done/failed, parked patients and deliveries, counted in the store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            inbox = {status: n for status, n in conn.execute(text(_STORE_QUERIES["inbox"]))}
            parked = conn.execute(text(_STORE_QUERIES["parked"])).scalar_one()
            deliveries = list(conn.execute(text(_STORE_QUERIES["deliveries"])))
        backlog = GaugeMetricFamily("eras_inbox_backlog", "Inbox events not yet processed, by status",
                                    labels=["status"])
        for status in ("pending", "processing"):
            backlog.add_metric([status], inbox.get(status, 0))
        yield backlog
        yield CounterMetricFamily("eras_events_processed", "Inbox events processed (all processes)",
                                  value=inbox.get("done", 0))
        yield CounterMetricFamily("eras_events_failed", "Inbox events that failed (all processes)",
                                  value=inbox.get("failed", 0))
        yield GaugeMetricFamily("eras_parked_patients", "Enrolments parked after repeated failures",
                                value=parked)
        sent = CounterMetricFamily("eras_reminders_delivered",
                                   "Reminder and escalation deliveries, by channel and result",
                                   labels=["channel", "result"])
        for channel, ok, n in deliveries:
            sent.add_metric([channel, "ok" if ok else "failed"], n)
        yield sent


def registry_for(engine: Engine) -> CollectorRegistry:
    """This process's metrics plus the store's, for one database."""
    from prometheus_client import REGISTRY

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics(REGISTRY))
    registry.register(StoreCollector(engine))
    registry.register(UNBOUND_CODES)
    return registry


class _ProcessMetrics(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
