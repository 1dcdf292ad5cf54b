"""SQLModel tables of the engine's own state, with their public read models."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime


def new_id() -> str:
    return str(uuid.uuid4())


class PathwayVersionBase(SQLModel):
    pathway_id: str
    version: int
    sha256: str
    title: str
    loaded_at: datetime = Field(sa_type=UTCDateTime)


class PathwayVersion(PathwayVersionBase, table=True):
    __tablename__ = "pathway_version"
    __table_args__ = (
        UniqueConstraint("pathway_id", "version", name="uq_pathway_version_id_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    content: str = Field(sa_type=Text)


class PathwayVersionPublic(PathwayVersionBase):
    id: int


class EnrolmentBase(SQLModel):
    patient_ref: str
    pathway_id: str
    pathway_version: int
    parameters: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    anchors: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    status: str
    exit_reason: str | None = Field(default=None, sa_type=Text)
    enrolled_at: datetime = Field(sa_type=UTCDateTime)
    enrolled_by: str
    updated_at: datetime = Field(sa_type=UTCDateTime)
    careplan_id: str | None = None
    careplan_version: str | None = None
    encounter_ref: str | None = None
    ward: str | None = None
    bed: str | None = None
    next_check_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    parked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    parked_error: str | None = Field(default=None, sa_type=Text)
    failure_count: int = 0


class Enrolment(EnrolmentBase, table=True):
    __tablename__ = "enrolment"
    __table_args__ = (
        UniqueConstraint("patient_ref", "pathway_id", name="uq_enrolment_patient_pathway"),
        Index("ix_enrolment_status_next_check_at", "status", "next_check_at"),
        Index("ix_enrolment_parked_at", "parked_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)


class EnrolmentPublic(EnrolmentBase):
    id: str


class PlannedActionBase(SQLModel):
    enrolment_id: str = Field(foreign_key="enrolment.id")
    element_id: str
    occurrence: str
    kind: str
    role: str
    priority: str
    title: str
    opens: datetime | None = Field(default=None, sa_type=UTCDateTime)
    due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closes: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str
    ward: str | None = None
    fhir_type: str | None = None
    fhir_id: str | None = None
    fhir_version: str | None = None
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_by: str | None = None
    decline_reason: str | None = None
    decline_text: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # When the engine's evaluation says to remind (before due) and escalate (after due, to whom):
    # the reminders flow reads these instead of working the times out again.
    remind_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    escalations: list[list[str]] = Field(default_factory=list, sa_type=JSON)


# Optimistic concurrency: every UPDATE says WHERE version = <the version read>, so two writers
# of one row cannot both win; the loser gets StaleDataError instead of a silent lost update.
_action_version = Column("version", Integer, nullable=False, server_default="1")


class PlannedActionRow(PlannedActionBase, table=True):
    """One planned piece of work; `revision` counts its changes so that FHIR writes can lag.

    `fhir_synced_revision` is the revision last written to the FHIR server: an action whose
    revision is ahead of it still has to be written (see `store.actions.pending_fhir_writes`).
    """

    __tablename__ = "planned_action"
    __table_args__ = (
        # the worklist: filter, count and sort keys from the index (migration 0007)
        Index("ix_planned_action_worklist", "ward", "status", "kind", "due", "key", "opens"),
        Index("ix_planned_action_enrolment_id", "enrolment_id"),
    )

    __mapper_args__ = {"version_id_col": _action_version}

    key: str = Field(primary_key=True)
    revision: int = 1
    fhir_synced_revision: int | None = None
    version: int | None = Field(default=None, sa_column=_action_version)


class PlannedActionPublic(PlannedActionBase):
    key: str


class ElementStatusBase(SQLModel):
    enrolment_id: str = Field(foreign_key="enrolment.id")
    element_id: str
    action_key: str | None = Field(default=None, foreign_key="planned_action.key")
    from_status: str | None = None
    to_status: str
    at: datetime = Field(sa_type=UTCDateTime)
    cause: str = Field(sa_type=Text)


class ElementStatus(ElementStatusBase, table=True):
    """One status transition of an element (or one of its actions), kept for the audit."""

    __tablename__ = "element_status"
    __table_args__ = (
        Index("ix_element_status_enrolment_id_at", "enrolment_id", "at"),
        Index("ix_element_status_action_key", "action_key"),
    )

    id: int | None = Field(default=None, primary_key=True)


class ElementStatusPublic(ElementStatusBase):
    id: int


class AccessLogEntryBase(SQLModel):
    """Who did what to which resource, and why. Never a clinical value."""

    at: datetime = Field(sa_type=UTCDateTime)
    actor: str
    action: str
    resource: str
    purpose: str = Field(sa_type=Text)
    outcome: str


class AccessLogEntry(AccessLogEntryBase, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
        Index("ix_audit_log_resource_at", "resource", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)


class AccessLogEntryPublic(AccessLogEntryBase):
    id: int


class InboxEventBase(SQLModel):
    """An EHR event as taken in: what arrived, from where, about which resource and patient."""

    source: str
    kind: str
    dedup_key: str
    resource_type: str | None = None
    resource_id: str | None = None
    patient_ref: str | None = None
    event_number: int | None = Field(default=None, sa_type=BigInteger)
    payload: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class InboxEventCreate(InboxEventBase):
    """An event to store; `store.inbox.store_event` adds the bookkeeping columns."""


class InboxEvent(InboxEventBase, table=True):
    """One event in the durable inbox, claimed and processed in batches by the drainer."""

    __tablename__ = "inbox_event"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_inbox_event_dedup_key"),
        Index("ix_inbox_event_status_received_at", "status", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_type=UTCDateTime)
    status: str
    claimed_by: str | None = None
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # New at every claim: a worker whose lease expired cannot settle events claimed again since.
    claim_token: str | None = None
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SubscriptionState(SQLModel, table=True):
    """What we last heard from one FHIR Subscription: event number, heartbeat, status."""

    __tablename__ = "subscription_state"

    subscription_id: str = Field(primary_key=True)
    last_event_number: int | None = Field(default=None, sa_type=BigInteger)
    last_event_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    handshake_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str | None = None
    error: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class SubscriptionGap(SQLModel, table=True):
    """Backport event numbers that never arrived; a flow catches up by querying the EHR."""

    __tablename__ = "subscription_gap"
    __table_args__ = (Index("ix_subscription_gap_resolved_at", "resolved_at"),)

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str
    from_number: int = Field(sa_type=BigInteger)
    to_number: int = Field(sa_type=BigInteger)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    detected_at: datetime = Field(sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PollWatermark(SQLModel, table=True):
    """The newest `meta.lastUpdated` seen when polling the EHR for one resource type."""

    __tablename__ = "poll_watermark"

    resource_type: str = Field(primary_key=True)
    last_updated: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ReminderSent(SQLModel, table=True):
    """A reminder (level 0) or escalation (level 1..n) for one action: claimed, then sent once.

    The row is inserted (claimed) before anything is sent; `sent_at` is set after. A claim
    never marked sent (the sender crashed) may be taken again after its lease, and the repeat
    carries the same idempotency key, so the receiver can drop it.
    """

    __tablename__ = "reminder_sent"
    __table_args__ = (Index("ix_reminder_sent_sent_at", "sent_at"),)

    action_key: str = Field(primary_key=True, foreign_key="planned_action.key")
    kind: str = Field(primary_key=True)
    level: int = Field(primary_key=True)
    role: str
    ward: str | None = None
    due_at: datetime = Field(sa_type=UTCDateTime)
    claimed_by: str | None = None
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fhir_id: str | None = None


class PatientFailure(SQLModel, table=True):
    """Failed applies of a patient the store has no enrolment for (an unknown patient, say),
    parked like an enrolment after repeats so that operators see it in `eras parked`."""

    __tablename__ = "patient_failure"

    patient_ref: str = Field(primary_key=True)
    failure_count: int = 0
    error: str | None = Field(default=None, sa_type=Text)
    parked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ElementResultRow(SQLModel, table=True):
    """One element's latest result for one enrolment, as the engine decided it (audit source).

    `counts` is the engine's ElementResult.counts (done, not-done or null) and `missing` its
    `engine.audit.is_missing`, stored so that the audit sums them instead of re-deciding them.
    """

    __tablename__ = "element_result"
    # Covering the audit's per-element sums, so they read the index, not the table.
    # Partial indexes on the few results done late or declined, which the audit reads apart.
    __table_args__ = (
        Index("ix_element_result_element_counts", "element_id", "counts", "missing", "enrolment_id"),
        Index("ix_element_result_done_late", "element_id", "enrolment_id",
              sqlite_where=text("status = 'done-late'"),
              postgresql_where=text("status = 'done-late'")),
        Index("ix_element_result_declined", "enrolment_id", sqlite_where=text("decline_reason IS NOT NULL"),
              postgresql_where=text("decline_reason IS NOT NULL")),
    )

    enrolment_id: str = Field(foreign_key="enrolment.id", primary_key=True)
    element_id: str = Field(primary_key=True)
    phase: str
    category: str
    status: str
    counts: str | None = None
    missing: bool = False
    occurrences_done: int = 0
    occurrences_counted: int = 0
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    evidence: list[str] = Field(default_factory=list, sa_type=JSON)
    decline_reason: str | None = Field(default=None, sa_type=Text)
    occurrences: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    evaluated_at: datetime = Field(sa_type=UTCDateTime)
    # `store.results.result_digest` of the columns above but the keys and evaluated_at, written
    # with them: equal digests, equal values. Null: unknown (compared in full). Whatever else
    # changes those columns must set it to null.
    digest: str | None = None


class AuditEpisode(SQLModel, table=True):
    """The cohort attributes of one enrolment that the audit filters on, and its compliance
    (`engine.compliance.patient_compliance`: done and counted elements and ERAS items; missing
    data and elements done late), so that the audit sums the engine's figures."""

    __tablename__ = "audit_episode"
    __table_args__ = (Index("ix_audit_episode_pathway_surgery_start", "pathway_id", "surgery_start"),)

    enrolment_id: str = Field(foreign_key="enrolment.id", primary_key=True)
    patient_ref: str
    pathway_id: str
    pathway_version: int
    surgery_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    variant: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    ward: str | None = None
    surgeon: str | None = None
    sex: str | None = None
    age_at_surgery: int | None = None
    apfel: int | None = None
    done: int = 0
    counted: int = 0
    missing: int = 0
    done_late: int = 0
    # The ERAS items counted and done (`PatientCompliance.by_item`) as bit masks, bit n for item
    # n, so the audit sums items per patient and per item in one pass over episodes. Null for
    # episodes stored before these columns (until `eras audit recompute`) or items above 62.
    items_counted: int | None = Field(default=None, sa_type=BigInteger)
    items_done: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # The plan (`plan_digest.digest`) that decided these results at `updated_at`: a recompute
    # re-evaluates only what changed since. Null: unknown (stored before it was kept).
    plan_digest: str | None = None


class PlanDigestRow(SQLModel, table=True):
    """The digests of a plan that decided stored results (`engine.fingerprint.PlanDigest`): what
    every element shares and each element's own, so a recompute knows which results may change."""

    __tablename__ = "plan_digest"

    digest: str = Field(primary_key=True)
    pathway_id: str
    shared: str
    elements: dict[str, str] = Field(default_factory=dict, sa_type=JSON)


class EpisodeFacts(SQLModel, table=True):
    """What the engine read for one enrolment's latest evaluation (a patient file, see
    `engine.patientfile`) and that evaluation's instant: `eras audit recompute` re-evaluates
    history from it after a pathway version change, without reading the EHR again."""

    __tablename__ = "episode_facts"

    enrolment_id: str = Field(foreign_key="enrolment.id", primary_key=True)
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    evaluated_at: datetime = Field(sa_type=UTCDateTime)


class AuditOutcome(SQLModel, table=True):
    """One enrolment's outcomes (engine.outcomes), computed by the nightly audit report."""

    __tablename__ = "audit_outcome"

    enrolment_id: str = Field(foreign_key="enrolment.id", primary_key=True)
    values: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    computed_at: datetime = Field(sa_type=UTCDateTime)


class DeliveryRecord(SQLModel, table=True):
    """One attempt to deliver a reminder or escalation on one channel (never patient data)."""

    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_action_key", "action_key"),)

    id: int | None = Field(default=None, primary_key=True)
    action_key: str
    kind: str
    level: int
    role: str
    channel: str
    ok: bool
    attempts: int
    error: str | None = None
    at: datetime = Field(sa_type=UTCDateTime)


class SmartLaunch(SQLModel, table=True):
    """A SMART launch sent to the EHR's authorize endpoint, awaiting its callback (used once)."""

    __tablename__ = "smart_launch"
    __table_args__ = (Index("ix_smart_launch_expires_at", "expires_at"),)

    state: str = Field(primary_key=True)
    browser_hash: str  # sha256 of the cookie that binds the callback to the browser that started it
    code_verifier: str
    iss: str
    redirect_url: str
    endpoints: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SmartSession(SQLModel, table=True):
    """A user signed in by SMART launch: who, with which context and EHR token, until when."""

    __tablename__ = "smart_session"
    __table_args__ = (Index("ix_smart_session_expires_at", "expires_at"),)

    id_hash: str = Field(primary_key=True)  # sha256 of the cookie: a database read gives no cookie
    subject: str
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    wards: list[str] = Field(default_factory=list, sa_type=JSON)
    iss: str
    patient_id: str | None = None
    encounter_id: str | None = None
    ward: str | None = None
    access_token: str = Field(sa_type=Text)
    token_expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class CdsSuggestion(SQLModel, table=True):
    """An enrolment a CDS Hooks card suggested; the EHR's feedback names it by `uuid`."""

    __tablename__ = "cds_suggestion"

    uuid: str = Field(primary_key=True)
    card_uuid: str
    patient_ref: str
    pathway_id: str
    variant: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CdsJwtUse(SQLModel, table=True):
    """A CDS Hooks JWT already presented (by its `jti`), kept until it expires: no replay."""

    __tablename__ = "cds_jwt_use"

    jti: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
