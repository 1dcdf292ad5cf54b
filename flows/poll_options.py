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


# Why each mode exists: the `--poll-seconds` help and the start-up log line say it.
WHY = {
    PollMode.PATIENT: "EHR FHIR APIs (Epic, Cerner and most others) refuse searches that name "
                      "no patient, so each enrolled patient is searched with _lastUpdated",
    PollMode.BULK: "the EHR offers FHIR Bulk Data: one Group/<id>/$export?_since= per poll "
                   "instead of a search per patient",
    PollMode.SYSTEM: "the server allows searches across all patients: one search per resource "
                     "type (most EHRs refuse these)",
}
POLL_HELP = (
    "poll the EHR every N s; 0 = no polling. ERAS_POLL_MODE picks how: `patient` (default: "
    "patient-scoped _lastUpdated searches per enrolled patient, batched and rate-limited, "
    "because EHR FHIR APIs refuse searches naming no patient), `bulk` (Bulk Data "
    "Group/<id>/$export?_since=, when the EHR offers it; needs ERAS_POLL_BULK_GROUP_ID) or "
    "`system` (one search per type across patients, only where the server allows it).")


def describe_polling(settings: PollSettings, seconds: float | None) -> str:
    """The start-up line: whether the engine polls, in which mode, chosen how, and why."""
    if not seconds:
        return "EHR polling off (--poll-seconds 0): changes come from notifications and the HL7 feed"
    chosen = "set by ERAS_POLL_MODE" if "mode" in settings.model_fields_set else "the default"
    detail = {
        PollMode.PATIENT: f"{settings.patients_per_batch} patients a batch, "
                          + (f"at most {settings.searches_per_second:g} searches/s"
                             if settings.searches_per_second else "no rate limit"),
        PollMode.BULK: f"Group/{settings.bulk_group_id}",
        PollMode.SYSTEM: "all patients",
    }[settings.mode]
    return (f"EHR polling every {seconds:g} s in {settings.mode.value} mode ({chosen}; {detail}): "
            f"{WHY[settings.mode]}")
