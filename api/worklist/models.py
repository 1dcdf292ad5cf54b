"""Request and response models of the worklist API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from engine.results import Status

# What an open action is now, from its window and the clock (the members of OPEN_STATUSES).
# "late": the window has closed (completing it now is done late); not an action status.
LiveStatus = Literal[Status.UPCOMING, Status.DUE, Status.OVERDUE, "late"]

Role = Literal[
    "nurse",
    "charge_nurse",
    "physiotherapist",
    "anaesthetist",
    "quality",
    "admin",
    "nurse_educator",
    "dietitian",
    "surgeon",
    "pharmacist",
    "occupational_therapist",
]


class RecordPromptPublic(BaseModel):
    label: str
    unit: str | None = None


class WorklistItemBase(BaseModel):
    key: str
    title: str
    # late: the window has closed; completing it now records it as done late (not compliant)
    status: LiveStatus
    priority: str
    role: str
    due: datetime | None
    opens: datetime | None
    closes: datetime | None


class WorklistItemPublic(WorklistItemBase):
    """One open task as the nurse sees it. No names are stored: the patient is ward, bed and reference."""

    patient_ref: str
    patient_display: str
    ward: str
    bed: str | None
    element_id: str
    instructions: str | None
    record: RecordPromptPublic | None
    pathway_id: str
    pathway_title: str | None
    pod: int | None = Field(description="post-operative day: local days since surgery end, if known")
    fhir_task_id: str | None


class WorklistPublic(BaseModel):
    ward: str | None
    now: datetime
    items: list[WorklistItemPublic]
    total: int = Field(description="open tasks on the ward(s) within the window, on every page")
    next_cursor: str | None = Field(description="`cursor` of the next page; null on the last page")


class CompleteRequest(BaseModel):
    value: float | str | None = Field(default=None, description="the value the element asks for, if any")


class DeclineRequest(BaseModel):
    reason: str = Field(pattern=r"^[a-z][a-z0-9-]{0,63}$",
                        description="a decline reason the pathway's terminology documents")
    text: str | None = Field(default=None, max_length=1000)


class ReassignRequest(BaseModel):
    role: Role


class ActionResultPublic(BaseModel):
    key: str
    status: str
    role: str
    fhir_task_id: str | None
    fhir_version: str | None


class DevTokenRequest(BaseModel):
    subject: str = Field(min_length=1, max_length=200)
    roles: list[Literal["nurse", "charge_nurse", "physiotherapist", "anaesthetist", "quality", "admin"]]
    wards: list[str] = Field(default_factory=list)


class DevTokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
