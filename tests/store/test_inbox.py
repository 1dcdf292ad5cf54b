"""Tests for the durable inbox: deduplication, claims, leases, gaps and watermarks."""

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from store.db import session_scope
from store.inbox import (
    InboxStatus,
    claim_batch,
    gaps_to_catch_up,
    get_subscription_state,
    get_watermark,
    give_back,
    mark_done,
    mark_failed,
    pending_count,
    record_event_number,
    record_handshake,
    record_heartbeat,
    release,
    resolve_gap,
    set_watermark,
    store_event,
    store_events,
    store_received,
)
from store.models import InboxEvent
from tests.utils.notifications import clear_intake_tables, new_event
from tests.utils.store_factories import T0

LEASE = timedelta(minutes=5)


@pytest.fixture
def inbox(db: Session) -> Session:
    """The rolled-back session with an empty inbox, whatever other tests committed."""
    db.execute(delete(InboxEvent))
    return db


@pytest.fixture
def committed(db_engine: Engine) -> Iterator[Engine]:
    """The engine, for tests whose rows must be committed (several connections); cleaned after."""
    clear_intake_tables(db_engine)
    yield db_engine
    clear_intake_tables(db_engine)


def test_store_event_new_is_pending(inbox: Session) -> None:
    row, created = store_event(session=inbox, event=new_event(patient_ref="Patient/p1"), at=T0)

    assert created
    assert row.id is not None
    stored = inbox.get(InboxEvent, row.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.received_at) == (InboxStatus.PENDING, 0, T0)
    assert stored.patient_ref == "Patient/p1"
    assert stored.payload == row.payload


def test_store_event_duplicate_stored_once(inbox: Session) -> None:
    first, created_first = store_event(session=inbox, event=new_event(key="sub:s1:7"), at=T0)
    again, created_again = store_event(session=inbox, event=new_event(key="sub:s1:7"), at=T0 + timedelta(1))

    assert (created_first, created_again) == (True, False)
    assert again.id == first.id
    assert again.received_at == T0
    assert pending_count(session=inbox) == 1


def test_claim_batch_oldest_first_up_to_limit(inbox: Session) -> None:
    ids = [
        store_event(session=inbox, event=new_event(), at=T0 + timedelta(seconds=i))[0].id for i in range(3)
    ]

    claimed = claim_batch(session=inbox, worker="w1", limit=2, now=T0 + timedelta(minutes=1), lease=LEASE)

    assert [row.id for row in claimed] == ids[:2]
    assert {(row.status, row.claimed_by, row.attempts) for row in claimed} == {("processing", "w1", 1)}
    assert pending_count(session=inbox) == 1


def test_claim_batch_fresh_claim_not_taken_again(inbox: Session) -> None:
    store_event(session=inbox, event=new_event(), at=T0)
    claim_batch(session=inbox, worker="w1", limit=10, now=T0, lease=LEASE)

    assert claim_batch(session=inbox, worker="w2", limit=10, now=T0 + LEASE, lease=LEASE) == []


def test_claim_batch_the_sessions_copy_reads_the_claim(inbox: Session) -> None:
    stored, _ = store_event(session=inbox, event=new_event(), at=T0)
    held = inbox.get(InboxEvent, stored.id)
    assert held is not None and held.status == "pending"

    [claimed] = claim_batch(session=inbox, worker="w1", limit=10, now=T0, lease=LEASE)

    assert (claimed.id, claimed.status, claimed.claimed_by, claimed.attempts) == (
        stored.id, "processing", "w1", 1)
    assert (held.status, held.claim_token, held.claimed_at, held.attempts) == (
        "processing", claimed.claim_token, T0, 1)
    assert claimed.payload == stored.payload and claimed.received_at == T0


def test_claim_batch_stale_claim_reclaimed(inbox: Session) -> None:
    row, _ = store_event(session=inbox, event=new_event(), at=T0)
    claim_batch(session=inbox, worker="dead-worker", limit=10, now=T0, lease=LEASE)

    later = T0 + LEASE + timedelta(seconds=1)
    reclaimed = claim_batch(session=inbox, worker="w2", limit=10, now=later, lease=LEASE)

    assert [(r.id, r.claimed_by, r.claimed_at, r.attempts) for r in reclaimed] == [(row.id, "w2", later, 2)]


def test_mark_done_and_failed_leave_the_queue(inbox: Session) -> None:
    done, _ = store_event(session=inbox, event=new_event(), at=T0)
    failed, _ = store_event(session=inbox, event=new_event(), at=T0)
    token = claim_batch(session=inbox, worker="w1", limit=10, now=T0, lease=LEASE)[0].claim_token
    assert token is not None

    mark_done(session=inbox, ids=[done.id or 0], token=token, at=T0 + timedelta(seconds=5))
    mark_failed(session=inbox, id=failed.id or 0, token=token, error="Observation/x could not be read",
                at=T0)

    rows = {r.id: r for r in inbox.exec(select(InboxEvent).execution_options(populate_existing=True))}
    assert (rows[done.id].status, rows[done.id].processed_at) == ("done", T0 + timedelta(seconds=5))
    assert (rows[failed.id].status, rows[failed.id].last_error) == (
        "failed",
        "Observation/x could not be read",
    )
    far_later = T0 + timedelta(days=1)
    assert claim_batch(session=inbox, worker="w2", limit=10, now=far_later, lease=LEASE) == []


def test_expired_and_reclaimed_batch_is_not_settled_by_the_old_claimant(inbox: Session) -> None:
    row, _ = store_event(session=inbox, event=new_event(), at=T0)
    old = claim_batch(session=inbox, worker="w1", limit=10, now=T0, lease=LEASE)[0].claim_token
    # w1 stalls past its lease; w2 takes the batch again.
    new = claim_batch(session=inbox, worker="w2", limit=10, now=T0 + LEASE * 2, lease=LEASE)
    assert old is not None and new[0].claim_token not in (None, old)

    assert mark_done(session=inbox, ids=[row.id or 0], token=old, at=T0 + LEASE * 3) == []
    assert not mark_failed(session=inbox, id=row.id or 0, token=old, error="late", at=T0)
    release(session=inbox, ids=[row.id or 0], token=old)
    stored = inbox.exec(select(InboxEvent).execution_options(populate_existing=True)).one()
    assert (stored.status, stored.claimed_by, stored.last_error) == ("processing", "w2", None)

    assert mark_done(session=inbox, ids=[row.id or 0], token=new[0].claim_token or "",
                     at=T0 + LEASE * 3) == [row.id]
    assert mark_done(session=inbox, ids=[row.id or 0], token=new[0].claim_token or "",
                     at=T0 + LEASE * 4) == []  # done once: a second settle changes nothing
    stored = inbox.exec(select(InboxEvent).execution_options(populate_existing=True)).one()
    assert (stored.status, stored.processed_at) == ("done", T0 + LEASE * 3)


def test_settling_a_batch_changes_only_its_unsettled_events(inbox: Session) -> None:
    rows = [store_event(session=inbox, event=new_event(), at=T0)[0] for _ in range(4)]
    ids = [row.id or 0 for row in rows]
    token = claim_batch(session=inbox, worker="w1", limit=3, now=T0, lease=LEASE)[0].claim_token or ""
    later = T0 + timedelta(seconds=5)

    assert sorted(mark_done(session=inbox, ids=ids[:2], token=token, at=later)) == ids[:2]
    # Of the claim, the event not settled goes back; the settled ones and the unclaimed one stay.
    assert give_back(session=inbox, ids=ids, token=token) == 1
    assert give_back(session=inbox, ids=ids, token=token) == 0

    stored = {r.id: r for r in inbox.exec(select(InboxEvent).execution_options(populate_existing=True))}
    assert [(stored[i].status, stored[i].processed_at, stored[i].payload) for i in ids[:2]] == [
        ("done", later, None)] * 2
    back = stored[ids[2]]
    assert (back.status, back.claim_token, back.claimed_by) == ("pending", None, None)
    assert back.payload == rows[2].payload
    assert stored[ids[3]].attempts == 0
    assert claim_batch(session=inbox, worker="w2", limit=10, now=later, lease=LEASE)[0].id == ids[2]


def test_claim_batch_leaves_a_patients_events_while_a_live_claim_of_theirs_applies(inbox: Session) -> None:
    """Another worker (or batch) would only wait for the patient's lock: they wait in the inbox,
    then the next claim takes them all; a claim whose lease ran out holds no patient."""
    def store(patient: str | None, at: datetime) -> int:
        return store_event(session=inbox, event=new_event(patient_ref=patient), at=at)[0].id or 0

    first = store("Patient/p1", T0)
    [claimed] = claim_batch(session=inbox, worker="w1", limit=1, now=T0, lease=LEASE)
    later = [store("Patient/p1", T0 + timedelta(seconds=k)) for k in (1, 2)]
    others = [store("Patient/p2", T0 + timedelta(seconds=3)), store(None, T0 + timedelta(seconds=4))]

    taken = claim_batch(session=inbox, worker="w2", limit=10, now=T0 + timedelta(seconds=5), lease=LEASE)
    mark_done(session=inbox, ids=[first], token=claimed.claim_token or "", at=T0 + timedelta(seconds=6))
    after = claim_batch(session=inbox, worker="w2", limit=10, now=T0 + timedelta(seconds=7), lease=LEASE)

    assert claimed.id == first
    assert [row.id for row in taken] == others
    assert [row.id for row in after] == later  # both, for one apply


def test_claim_batch_a_dead_workers_claim_holds_its_patient_only_for_the_lease(inbox: Session) -> None:
    first = store_event(session=inbox, event=new_event(patient_ref="Patient/p1"), at=T0)[0].id
    claim_batch(session=inbox, worker="dead-worker", limit=1, now=T0, lease=LEASE)
    second = store_event(session=inbox, event=new_event(patient_ref="Patient/p1"), at=T0 + timedelta(1))[0].id

    inside = claim_batch(session=inbox, worker="w2", limit=10, now=T0 + LEASE, lease=LEASE)
    expired = claim_batch(session=inbox, worker="w2", limit=10, now=T0 + LEASE + timedelta(seconds=1),
                          lease=LEASE)

    assert (inside, [row.id for row in expired]) == ([], [first, second])


def test_claim_batch_concurrent_workers_never_share_an_event(committed: Engine) -> None:
    with session_scope(committed) as session:
        for _ in range(20):
            store_event(session=session, event=new_event(), at=T0)
    both_claimed = threading.Barrier(2, timeout=30)
    results: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        with session_scope(committed) as session:
            rows = claim_batch(session=session, worker=name, limit=8, now=T0, lease=LEASE)
            results[name] = [row.id or 0 for row in rows]
            if committed.dialect.name == "postgresql":
                both_claimed.wait()  # hold the row locks until the other worker has claimed too

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results["w1"]) == len(results["w2"]) == 8
    assert not set(results["w1"]) & set(results["w2"])
    with Session(committed) as session:
        statuses = session.exec(select(InboxEvent.status, InboxEvent.claimed_by)).all()
    assert sorted(statuses, key=str).count(("processing", "w1")) == 8
    assert len([s for s in statuses if s[0] == "pending"]) == 4


def test_record_event_number_in_order_no_gap(db: Session) -> None:
    gaps = [record_event_number(session=db, subscription_id="s-order", number=n, at=T0) for n in (1, 2, 3)]

    assert gaps == [None, None, None]
    state = get_subscription_state(session=db, subscription_id="s-order")
    assert state is not None and state.last_event_number == 3


def test_record_event_number_skip_records_gap(db: Session) -> None:
    record_event_number(session=db, subscription_id="s-gap", number=1, at=T0)

    gap = record_event_number(session=db, subscription_id="s-gap", number=5, at=T0 + timedelta(1))

    assert gap == (2, 4)
    open_gaps = [g for g in gaps_to_catch_up(session=db) if g.subscription_id == "s-gap"]
    assert [(g.from_number, g.to_number, g.last_seen_at) for g in open_gaps] == [(2, 4, T0)]


def test_record_event_number_late_events_fill_gap(db: Session) -> None:
    record_event_number(session=db, subscription_id="s-late", number=1, at=T0)
    record_event_number(session=db, subscription_id="s-late", number=4, at=T0)

    for late in (2, 3):
        assert record_event_number(session=db, subscription_id="s-late", number=late, at=T0) is None

    assert [g for g in gaps_to_catch_up(session=db) if g.subscription_id == "s-late"] == []


def test_record_event_number_first_seen_late_is_a_gap(db: Session) -> None:
    assert record_event_number(session=db, subscription_id="s-new", number=3, at=T0) == (1, 2)


def test_record_handshake_sets_baseline(db: Session) -> None:
    record_handshake(session=db, subscription_id="s-hs", at=T0, status="requested", events_since_start=10)

    assert record_event_number(session=db, subscription_id="s-hs", number=11, at=T0) is None


def test_record_heartbeat_ahead_of_events_is_a_gap(db: Session) -> None:
    record_event_number(session=db, subscription_id="s-hb", number=2, at=T0)

    gap = record_heartbeat(session=db, subscription_id="s-hb", at=T0, status="active", events_since_start=4)
    same = record_heartbeat(session=db, subscription_id="s-hb", at=T0, status="active", events_since_start=4)

    assert (gap, same) == ((3, 4), None)
    state = get_subscription_state(session=db, subscription_id="s-hb")
    assert state is not None and (state.last_heartbeat_at, state.status) == (T0, "active")


def test_resolve_gap_removes_it_from_catch_up(db: Session) -> None:
    record_event_number(session=db, subscription_id="s-res", number=3, at=T0)
    (gap,) = [g for g in gaps_to_catch_up(session=db) if g.subscription_id == "s-res"]

    resolve_gap(session=db, gap_id=gap.id or 0, at=T0)

    assert not [g for g in gaps_to_catch_up(session=db) if g.subscription_id == "s-res"]


def test_set_watermark_never_moves_back(db: Session) -> None:
    assert get_watermark(session=db, resource_type="Procedure") is None

    set_watermark(session=db, resource_type="Procedure", last_updated=T0, at=T0)
    kept = set_watermark(session=db, resource_type="Procedure", last_updated=T0 - timedelta(1), at=T0)
    ahead = set_watermark(session=db, resource_type="Procedure", last_updated=T0 + timedelta(1), at=T0)

    assert (kept, ahead) == (T0, T0 + timedelta(1))
    assert get_watermark(session=db, resource_type="Procedure") == T0 + timedelta(1)


def test_pending_count_counts_only_pending(inbox: Session) -> None:
    for _ in range(3):
        store_event(session=inbox, event=new_event(), at=T0)
    claim_batch(session=inbox, worker="w1", limit=1, now=T0, lease=LEASE)

    assert pending_count(session=inbox) == 2
    assert len(inbox.exec(select(InboxEvent).where(col(InboxEvent.status) == "processing")).all()) == 1


def test_store_events_one_statement_first_of_a_key_wins(inbox: Session) -> None:
    existing, _ = store_event(session=inbox, event=new_event(key="sub:s9:1"), at=T0)
    events = [new_event(key="sub:s9:1"), new_event(key="sub:s9:2"), new_event(key="sub:s9:2"), new_event()]

    new_ids = store_events(session=inbox, events=events, at=T0)

    assert new_ids[0] is None and new_ids[2] is None
    assert new_ids[1] is not None and new_ids[3] is not None and existing.id not in new_ids
    assert pending_count(session=inbox) == 3


def test_store_received_each_at_its_instant_settled_ones_done_without_payload(inbox: Session) -> None:
    events = [(new_event(), T0 + timedelta(seconds=k)) for k in range(3)]

    new_ids = store_received(session=inbox, events=events, settled={1})

    rows = [inbox.get(InboxEvent, new_id) for new_id in new_ids]
    assert [(r.status, r.received_at, r.processed_at, r.payload is None) for r in rows if r is not None] == [
        ("pending", T0, None, False),
        ("done", T0 + timedelta(seconds=1), T0 + timedelta(seconds=1), True),
        ("pending", T0 + timedelta(seconds=2), None, False),
    ]
    assert [row.id for row in claim_batch(session=inbox, worker="w1", limit=10, now=T0, lease=LEASE)] == [
        new_ids[0], new_ids[2]]


def test_store_events_insert_compiled_once_per_shape(db_engine: Engine) -> None:
    """The dialect's INSERT ... ON CONFLICT is compiled once for one row and once for several,
    then served from the statement cache (SQLAlchemy leaves such statements out of it unless
    told their cache key)."""
    cache: dict[object, object] = {}

    def inserts() -> list[str]:
        return [str(c) for c in cache.values() if str(c).startswith("INSERT INTO inbox_event")]

    with db_engine.connect() as connection, \
            Session(connection.execution_options(compiled_cache=cache)) as session:
        for size in (1, 3):
            store_events(session=session, events=[new_event() for _ in range(size)], at=T0)
        compiled = inserts()
        for size in (1, 2, 5):
            store_events(session=session, events=[new_event() for _ in range(size)], at=T0)
        session.rollback()
    assert len(compiled) == 2 and all("ON CONFLICT (dedup_key) DO NOTHING" in sql for sql in compiled)
    assert inserts() == compiled
