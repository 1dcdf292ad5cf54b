"""How the engine polls an EHR that pushes nothing: the mode and its limits (`ERAS_POLL_*`)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, model_validator


class PollMode(StrEnum):
    """How changes are found. EHR FHIR APIs (Epic, Cerner and most others) refuse searches
    that name no patient, so the default asks per enrolled patient."""

    PATIENT = "patient"  # patient-scoped searches with _lastUpdated, batched and rate-limited
    SYSTEM = "system"  # one search per resource type across all patients, where allowed
    BULK = "bulk"  # FHIR Bulk Data Group/[id]/$export?_since=, where the EHR offers it


class PollSettings(BaseModel):
    """Polling (`ERAS_POLL_*` in flows.settings): the mode, patients per batch, searches per second."""

    mode: PollMode = PollMode.PATIENT
    patients_per_batch: int = Field(10, ge=1, description="patients whose searches share one batch")
    searches_per_second: float | None = Field(
        None, gt=0, description="the EHR's rate limit for searches (batch entries count one each)")
    bulk_group_id: str | None = Field(None, description="mode bulk: the Group of the enrolled patients")
    bulk_max_wait: float = Field(60.0, gt=0, description="longest wait between export status polls")

    @model_validator(mode="after")
    def _group_for_bulk(self) -> PollSettings:
        if self.mode is PollMode.BULK and not self.bulk_group_id:
            raise ValueError("ERAS_POLL_MODE=bulk needs ERAS_POLL_BULK_GROUP_ID")
        return self
