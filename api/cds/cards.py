"""CDS Hooks cards: the pathway status, not-enrolled, degraded, enrolment suggestion and discharge cards.

Every card names its kind in `source.topic` (system `CARD_KIND`), so an EHR (and a test) can tell
a degraded card from a status card without reading its text.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from api.cds.status import OpenItem, PathwayStatus
from engine.model import Pathway
from engine.results import Status

CARD_KIND = "http://eras-engine.org/fhir/CodeSystem/cds-card-kind"
SOURCE_LABEL = "ERAS pathway engine"
SUMMARY_MAX = 139  # the spec: a summary is shorter than 140 characters


def status_card(status: PathwayStatus, *, launch_url: str, tz: tzinfo) -> dict[str, Any]:
    """Overdue items, what is due next and compliance so far; a warning when anything is overdue."""
    title = _pathway_name(status.pathway, status.variant)
    compliance = status.eras if status.eras is not None else status.compliance
    what = "ERAS items" if status.eras is not None else "elements"
    parts = [f"{len(status.overdue)} overdue" if status.overdue else "nothing overdue"]
    if status.next_due is not None:
        parts.append(f"next: {status.next_due.title}")
    summary = f"ERAS {title}: " + "; ".join(parts) + f"; compliance {compliance}"
    lines = [f"**Compliance so far**: {compliance} of {what} due so far "
             f"(all elements {status.compliance})."]
    if status.overdue:
        lines += ["", "**Overdue**:", *(f"- {t}" for t in status.overdue)]
    if status.next_due is not None:
        lines += ["", f"**Next due**: {status.next_due.title}{_when(status.next_due.due, tz)}"]
    return card("pathway-status", summary, "\n".join(lines),
                "warning" if status.overdue else "info", launch_url)


def not_enrolled_card() -> dict[str, Any]:
    return card("not-enrolled", "Not on an ERAS pathway", None, "info", None)


def degraded_card(launch_url: str) -> dict[str, Any]:
    """The EHR was too slow or failed: say so, and offer the pathway itself."""
    return card("status-unavailable", "ERAS pathway status unavailable: open the pathway",
                "The engine could not read the record in time; the pathway view has the full status.",
                "info", launch_url)


def enrolment_card(pathway: Pathway, variant: str | None, suggestion_uuid: str,
                   card_uuid: str) -> dict[str, Any]:
    """Suggest enrolling the patient; accepting it (feedback) enrols with this variant."""
    name = _pathway_name(pathway, variant)
    body = card("enrolment-suggestion", f"Enrol on the ERAS pathway: {name}",
                f"This order is for {name}. Enrolment plans the pre-admission, in-hospital and "
                "recovery items of the pathway from now.", "info", None)
    body["uuid"] = card_uuid
    body["selectionBehavior"] = "at-most-one"
    body["suggestions"] = [{"label": f"Enrol on {pathway.title}" + (f" ({variant})" if variant else ""),
                            "uuid": suggestion_uuid, "isRecommended": True}]
    return body


def discharge_card(items: Sequence[OpenItem], *, launch_url: str) -> dict[str, Any]:
    """ERAS items still open or missed before discharge."""
    missed = sum(1 for i in items if i.status is Status.MISSED)
    summary = f"{len(items)} ERAS items not done before discharge ({missed} missed)"
    detail = "\n".join(f"- {i.title}: {'missed' if i.status is Status.MISSED else f'open ({i.status})'}"
                       for i in items)
    return card("discharge-open-items", summary, detail, "warning", launch_url)


def card(kind: str, summary: str, detail: str | None, indicator: str,
         launch_url: str | None) -> dict[str, Any]:
    """One card with the engine as its source; a SMART link to the pathway view when given."""
    body: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[:SUMMARY_MAX - 1] + "…",
        "indicator": indicator,
        "source": {"label": SOURCE_LABEL, "topic": {"system": CARD_KIND, "code": kind}},
    }
    if detail:
        body["detail"] = detail
    if launch_url is not None:
        body["links"] = [{"label": "Open the ERAS pathway", "url": launch_url, "type": "smart"}]
    return body


def card_kind(body: dict[str, Any]) -> str:
    return str(body["source"]["topic"]["code"])


def _pathway_name(pathway: Pathway, variant: str | None) -> str:
    return f"{pathway.id.replace('_', ' ')}" + (f" ({variant})" if variant else "")


def _when(at: datetime | None, tz: tzinfo) -> str:
    return "" if at is None else f", due {at.astimezone(tz):%a %d %b %H:%M}"
