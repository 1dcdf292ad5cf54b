"""Concurrent batch reads and transactions to one FHIR server go as one request while another
is in flight (fhir_adapters.coalesce): each caller gets exactly the answer its own Bundle would
have had alone, a transaction part the server refuses fails alone, and nothing waits when the
server is idle. Against the sandbox EHR; the 503 comes from respx (a real server gives none on
demand)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from fhir_adapters.client import FhirClient
from fhir_adapters.coalesce import Coalescer, Flight
from fhir_adapters.errors import FhirAuthError, FhirConflictError, FhirTemporaryError
from fhir_adapters.facts import resources_from_batch_response
from tests.utils import ehr

AT = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)


class Held:
    """The client as the coalescer uses it: what each request carried, and requests held until
    `release` (so that later Bundles are submitted while one is in flight, deterministically)."""

    def __init__(self, client: FhirClient) -> None:
        self.client = client
        self.sent: list[tuple[str, int]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        return await self._send("batch", bundle)

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        return await self._send("transaction", bundle)

    async def _send(self, kind: str, bundle: Mapping[str, Any]) -> dict[str, Any]:
        self.sent.append((kind, len(bundle.get("entry") or [])))
        await self.open.wait()
        send = self.client.batch if kind == "batch" else self.client.transaction
        return await send(bundle)

    async def first_then_rest(self, submit: Any, bundles: list[dict[str, Any]]) -> list[Any]:
        """The first Bundle submitted and held in flight, the rest submitted while it is; then
        all answered (an error as its exception)."""
        self.open.clear()
        first = asyncio.create_task(submit(bundles[0]))
        await self.in_flight(1)
        rest = [asyncio.create_task(submit(bundle)) for bundle in bundles[1:]]
        await asyncio.sleep(0)
        self.open.set()
        return list(await asyncio.gather(first, *rest, return_exceptions=True))

    async def in_flight(self, count: int) -> None:
        """Until `count` requests have gone out."""
        for _ in range(1000):
            if len(self.sent) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{len(self.sent)} requests went out, not {count}")


def coalescer(held: Held, max_entries: int = 100) -> Coalescer:
    return Coalescer(held, max_entries=max_entries)  # type: ignore[arg-type]


def reads(pid: str) -> dict[str, Any]:
    """A patient's record read as an apply reads it: a batch of searches."""
    urls = [f"Patient/{pid}", f"Observation?patient=Patient/{pid}", f"Procedure?patient=Patient/{pid}"]
    return {"resourceType": "Bundle", "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}} for url in urls]}


def pain_write(pid: str, system: str) -> dict[str, Any]:
    """A transaction creating one Observation, conditional on its business identifier."""
    observation = {**ehr.pain(pid, AT, 7), "identifier": [{"system": system, "value": pid}]}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": observation,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={system}|{pid}"}}]}


def ids(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["resourceType"], r["id"]) for r in resources)


@pytest.fixture
async def client(fhir_sandbox: Any) -> Any:
    async with FhirClient(fhir_sandbox.base_url) as fhir:
        yield fhir


@pytest.fixture
async def patients(client: FhirClient) -> list[str]:
    """Four patients, each with a record of their own."""
    pids = [f"co-{uuid.uuid4().hex[:10]}-{i}" for i in range(4)]
    for i, pid in enumerate(pids):
        records = [ehr.patient(pid), ehr.pain(pid, AT, i),
                   *(ehr.procedure(pid, "out-of-bed", AT + timedelta(hours=k)) for k in range(i + 1))]
        await client.transaction(ehr.transaction(*records))
    return pids


async def test_reads_waiting_for_one_in_flight_go_as_one_and_each_gets_its_own_record(
        client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    answers = await held.first_then_rest(coalescer(held).batch, [reads(pid) for pid in patients])
    alone = [await client.batch(reads(pid)) for pid in patients]
    assert held.sent == [("batch", 3), ("batch", 9)]  # the first at once, the three waiting as one
    for pid, answer, own in zip(patients, answers, alone, strict=True):
        got = resources_from_batch_response(answer, reads(pid))
        assert ids(got) == ids(resources_from_batch_response(own, reads(pid)))
        about = {r.get("subject", {}).get("reference", f"Patient/{r['id']}") for r in got}
        assert about == {f"Patient/{pid}"}


async def test_an_idle_server_gets_each_bundle_at_once(client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    bundles = coalescer(held)
    for pid in patients:
        await bundles.batch(reads(pid))
    assert held.sent == [("batch", 3)] * 4


async def test_no_request_carries_more_than_max_entries(client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    bundles = coalescer(held, max_entries=7)
    answers = await held.first_then_rest(bundles.batch, [reads(pid) for pid in patients])
    assert held.sent == [("batch", 3), ("batch", 6), ("batch", 3)]
    assert [len(a["entry"]) for a in answers] == [3, 3, 3, 3]


async def test_max_entries_zero_sends_each_alone_at_once(client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    bundles = coalescer(held, max_entries=0)
    held.open.clear()
    tasks = [asyncio.create_task(bundles.batch(reads(pid))) for pid in patients]
    await held.in_flight(4)  # all four out while none has been answered
    held.open.set()
    await asyncio.gather(*tasks)
    assert held.sent == [("batch", 3)] * 4


async def test_transactions_waiting_go_as_one_and_each_gets_its_own_entries(
        client: FhirClient, patients: list[str]) -> None:
    system = f"urn:test:{uuid.uuid4().hex}"
    held = Held(client)
    writes = [pain_write(pid, system) for pid in patients]
    answers = await held.first_then_rest(coalescer(held).transaction, writes)
    assert held.sent == [("transaction", 1), ("transaction", 3)]
    for pid, answer in zip(patients, answers, strict=True):
        assert answer["type"] == "transaction-response" and len(answer["entry"]) == 1
        written = await client.request_resource("GET", answer["entry"][0]["response"]["location"])
        assert (written["subject"]["reference"], written["identifier"][0]["value"]) == (f"Patient/{pid}", pid)


async def test_a_refused_part_fails_alone_and_the_others_are_written(
        client: FhirClient, patients: list[str]) -> None:
    """A stale If-Match in one patient's writes: the merged transaction is refused (all or
    nothing), then each part goes alone; only that caller sees the conflict."""
    system = f"urn:test:{uuid.uuid4().hex}"
    task = await client.create({"resourceType": "Task", "status": "requested", "intent": "order",
                                "for": {"reference": f"Patient/{patients[2]}"}})
    stale = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {**task, "status": "completed"},
        "request": {"method": "PUT", "url": f"Task/{task['id']}", "ifMatch": 'W/"stale"'}}]}
    held = Held(client)
    writes = [pain_write(patients[0], system), pain_write(patients[1], system), stale,
              pain_write(patients[3], system)]
    answers = await held.first_then_rest(coalescer(held).transaction, writes)
    assert held.sent == [("transaction", 1), ("transaction", 3)] + [("transaction", 1)] * 3
    assert isinstance(answers[2], FhirConflictError)
    for pid, answer in zip([patients[0], patients[1], patients[3]], [answers[0], answers[1], answers[3]],
                           strict=True):
        assert isinstance(answer, dict), answer
        found = await client.search("Observation", {"identifier": f"{system}|{pid}"})
        assert [o["subject"]["reference"] for o in found] == [f"Patient/{pid}"]  # written once
    assert (await client.read("Task", task["id"]))["status"] == "requested"


async def test_a_caller_stopped_while_waiting_is_not_sent(client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    bundles = coalescer(held)
    held.open.clear()
    first = asyncio.create_task(bundles.batch(reads(patients[0])))
    await held.in_flight(1)
    stopped = asyncio.create_task(bundles.batch(reads(patients[1])))
    kept = asyncio.create_task(bundles.batch(reads(patients[2])))
    await asyncio.sleep(0)
    stopped.cancel()
    held.open.set()
    await asyncio.gather(first, kept)
    assert stopped.cancelled()
    assert held.sent == [("batch", 3), ("batch", 3)]  # the stopped one's entries never went


@pytest.mark.parametrize(("status", "error"), [(503, FhirTemporaryError), (401, FhirAuthError)])
async def test_a_temporary_error_or_refused_credentials_reach_every_waiting_caller(
        status: int, error: type[Exception]) -> None:
    """Not sent again part by part: alone, each would meet the same."""
    with respx.mock(base_url="http://ehr.test/fhir") as mock:
        mock.post("/").mock(return_value=httpx.Response(status))
        async with FhirClient("http://ehr.test/fhir", max_retries=0) as fhir:
            held = Held(fhir)
            answers = await held.first_then_rest(coalescer(held).batch, [reads(pid) for pid in "abc"])
    assert [type(a) for a in answers] == [error] * 3
    assert held.sent == [("batch", 3), ("batch", 6)]  # the waiting two were sent once, together


class Apply:
    """One apply joined to a Flight, as a task of its own (the drain runs each so): it does its
    store work until `go` is set, then sends its Bundles in turn, pausing at `at_work` between
    them when given."""

    def __init__(self, flight: Flight, *sends: Any, at_work: asyncio.Event | None = None) -> None:
        self.go, self.at_work, self.paused = asyncio.Event(), at_work, asyncio.Event()
        self.task = asyncio.create_task(self._run(flight, sends))

    async def _run(self, flight: Flight, sends: tuple[Any, ...]) -> list[Any]:
        answers = []
        with flight.joined():
            await self.go.wait()
            for k, send in enumerate(sends):
                if k and self.at_work is not None:
                    self.paused.set()
                    await self.at_work.wait()
                answers.append(await send())
        return answers


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def flight_and_coalescer(held: Held, linger: float) -> tuple[Flight, Coalescer]:
    flight = Flight(linger=linger)
    return flight, Coalescer(held, max_entries=100, flight=flight)  # type: ignore[arg-type]


async def test_a_window_waits_until_every_joined_apply_waits_for_the_ehr(
        client: FhirClient, patients: list[str]) -> None:
    """Applies of one drain batch reach the EHR one after another (their store work in turn):
    with three joined, the first two wait for the third, and the three go as one request."""
    held = Held(client)
    flight, bundles = flight_and_coalescer(held, linger=30.0)
    applies = [Apply(flight, lambda pid=pid: bundles.batch(reads(pid))) for pid in patients[:3]]
    applies[0].go.set()
    applies[1].go.set()
    await turns()
    assert held.sent == []  # the third apply is still at its store work
    applies[2].go.set()
    await asyncio.wait_for(asyncio.gather(*(a.task for a in applies)), timeout=10)
    assert held.sent == [("batch", 9)]


async def test_an_apply_that_ends_without_a_request_lets_the_others_go(
        client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    flight, bundles = flight_and_coalescer(held, linger=30.0)
    sending = Apply(flight, lambda: bundles.batch(reads(patients[0])))
    settling = Apply(flight)  # an apply that settles with nothing to send to the EHR
    sending.go.set()
    await turns()
    assert held.sent == []
    settling.go.set()
    await asyncio.wait_for(sending.task, timeout=10)  # not the linger's 30 s
    assert held.sent == [("batch", 3)]


async def test_a_window_waits_no_longer_than_the_linger(client: FhirClient, patients: list[str]) -> None:
    """An apply stuck elsewhere (its patient's lock held by another process) delays the others
    by `linger` at most."""
    held = Held(client)
    flight, bundles = flight_and_coalescer(held, linger=0.05)
    stuck = Apply(flight)
    sending = Apply(flight, lambda: bundles.batch(reads(patients[0])))
    sending.go.set()
    await asyncio.wait_for(sending.task, timeout=20)
    stuck.go.set()
    await stuck.task
    assert held.sent == [("batch", 3)]


async def test_a_window_does_not_wait_for_an_apply_past_its_kind_but_the_next_kind_does(
        client: FhirClient, patients: list[str]) -> None:
    """The drain starts applies continuously, so some are always at their store work: a read
    does not wait for an apply that has read already (now working out its plan), and that
    apply's write is waited for by the writes waiting then."""
    held = Held(client)
    flight, bundles = flight_and_coalescer(held, linger=30.0)
    system = f"urn:test:{uuid.uuid4().hex}"
    planning = asyncio.Event()
    first = Apply(flight, lambda: bundles.batch(reads(patients[0])),
                  lambda: bundles.transaction(pain_write(patients[0], system)), at_work=planning)
    first.go.set()
    await asyncio.wait_for(first.paused.wait(), timeout=10)  # read; at its store work until `planning`
    second = Apply(flight, lambda: bundles.batch(reads(patients[1])),
                   lambda: bundles.transaction(pain_write(patients[1], system)), at_work=asyncio.Event())
    assert second.at_work is not None
    second.at_work.set()
    second.go.set()
    await asyncio.wait_for(second.paused.wait(), timeout=10)  # read at once, not after the linger's 30 s
    await turns()
    assert held.sent == [("batch", 3), ("batch", 3)]  # the second's write waits for the first's
    planning.set()
    await asyncio.wait_for(asyncio.gather(first.task, second.task), timeout=10)
    assert held.sent[2:] == [("transaction", 2)]


async def test_a_window_does_not_wait_for_an_apply_that_joined_after_it_began_to(
        client: FhirClient, patients: list[str]) -> None:
    held = Held(client)
    flight, bundles = flight_and_coalescer(held, linger=30.0)
    sending = Apply(flight, lambda: bundles.batch(reads(patients[0])))
    at_work = Apply(flight, lambda: bundles.batch(reads(patients[1])))
    sending.go.set()
    await turns()  # the window waits for `at_work`
    late = Apply(flight)  # a later batch's apply, stuck at its store work
    await turns()
    at_work.go.set()
    await asyncio.wait_for(asyncio.gather(sending.task, at_work.task), timeout=10)
    late.go.set()
    await late.task
    assert held.sent == [("batch", 6)]
