"""CDS Hooks calls as an EHR makes them (signed JWTs, hook bodies, draft orders), its key set on
loopback, and a patient's pathway status seeded in the store: for the tests and the bench."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fhir_adapters.jwks import PrivateKey, jwks_document, public_jwk
from store.models import (
    AccessLogEntry,
    CdsJwtUse,
    CdsSuggestion,
    ElementResultRow,
    ElementStatus,
    Enrolment,
    PlannedActionRow,
)
from tests.conftest import SANDBOX_TOKEN
from tests.utils.loopback import serve
from tests.utils.worklist import seed_action, seed_enrolment

ISSUER = "https://ehr.example/cds-client"
CLIENT = "ehr-cds-client"
KID = "ehr-key-1"
BASE = "http://eras.test"


@contextmanager
def serve_jwks(key: PrivateKey) -> Iterator[str]:
    """The EHR's public key set, published as the EHR publishes it (HTTP on loopback): its URL."""
    document = jwks_document([public_jwk(key, KID, "ES384")])

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse(document)

    with serve(Starlette(routes=[Route("/jwks.json", jwks)])) as base:
        yield f"{base}/jwks.json"


def sign_with(key: PrivateKey, aud: str, *, lifetime: float = 300, issued: float | None = None,
              headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """A CDS Hooks JWT as the spec has the EHR sign it: iss, sub, aud, iat, exp, jti."""
    now = time.time() if issued is None else issued
    body = {"iss": ISSUER, "sub": CLIENT, "aud": aud, "iat": int(now), "exp": int(now + lifetime),
            "jti": uuid.uuid4().hex} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="ES384",
                      headers={"kid": KID, "typ": "JWT"} | (headers or {}))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_patient_id() -> str:
    return f"cds-{uuid.uuid4().hex[:10]}"


def put_patient(base_url: str, resource: dict[str, Any]) -> None:
    """Store a resource (with its id) on the protected sandbox EHR."""
    response = httpx.put(f"{base_url}/{resource['resourceType']}/{resource['id']}", json=resource,
                         headers=auth(SANDBOX_TOKEN))
    response.raise_for_status()


def clear_cds_patients(engine: Engine) -> None:
    """Remove the enrolments of the `cds-` patients and everything hanging off them."""
    with Session(engine) as session:
        ids = list(session.exec(select(Enrolment.id).where(col(Enrolment.patient_ref).like("Patient/cds-%"))))
        for table in (ElementResultRow, ElementStatus, PlannedActionRow):
            session.exec(delete(table).where(col(table.enrolment_id).in_(ids)))  # type: ignore[call-overload]
        session.exec(delete(Enrolment).where(col(Enrolment.id).in_(ids)))  # type: ignore[call-overload]
        session.exec(delete(CdsSuggestion).where(col(CdsSuggestion.patient_ref).like("Patient/cds-%")))  # type: ignore[call-overload]
        session.exec(delete(CdsJwtUse))  # type: ignore[call-overload]
        session.exec(delete(AccessLogEntry))  # type: ignore[call-overload]
        session.commit()


def hook_body(hook: str, patient_id: str, *, fhir_server: str | None = None,
              prefetch: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                            "context": {"userId": "Practitioner/example", "patientId": patient_id, **context}}
    if fhir_server is not None:
        body |= {"fhirServer": fhir_server, "fhirAuthorization": {
            "access_token": SANDBOX_TOKEN, "token_type": "Bearer", "expires_in": 300,
            "scope": "user/Patient.read user/Encounter.read", "subject": "cds-service"}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


SCT, CPT, LOINC = "http://snomed.info/sct", "http://www.ama-assn.org/go/cpt", "http://loinc.org"


def draft_orders(*codings: tuple[str, str], pid: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "ServiceRequest", "id": f"draft-{i}", "status": "draft",
                      "intent": "order", "subject": {"reference": f"Patient/{pid}"},
                      "code": {"coding": [{"system": system, "code": code}]}}}
        for i, (system, code) in enumerate(codings)]}


SCT, CPT, LOINC = "http://snomed.info/sct", "http://www.ama-assn.org/go/cpt", "http://loinc.org"




def seed_status(engine: Engine, patient_id: str) -> Enrolment:
    """POD1: catheter removal overdue (due 2 h ago), walking due in 3 h; education and fasting
    done, smoking cessation missed; the catheter's element overdue; nicotine reminders (after
    discharge) upcoming; the drain not applicable."""
    now = datetime.now(UTC)
    enrolment = seed_enrolment(engine, ward="4B", patient_id=patient_id)
    seed_action(engine, enrolment, "urinary_catheter_removal", opens=now - timedelta(hours=10),
                due=now - timedelta(hours=2), closes=now + timedelta(hours=4))
    seed_action(engine, enrolment, "walk_three_times_daily", opens=now - timedelta(hours=1),
                due=now + timedelta(hours=3), closes=now + timedelta(hours=12))
    results = [("patient_education", "pre-admission", "done", "done"),
               ("smoking_cessation", "pre-admission", "missed", "not-done"),
               ("preop_fasting", "pre-op", "done", "done"),
               ("urinary_catheter_removal", "post-op", "overdue", None),
               ("nicotine_free_reminder", "post-discharge", "upcoming", None),
               ("drain_removal", "post-op", "not-applicable", None)]
    with Session(engine) as session:
        for element_id, phase, status, counts in results:
            session.add(ElementResultRow(enrolment_id=enrolment.id, element_id=element_id, phase=phase,
                                         category="-", status=status, counts=counts, evaluated_at=now))
        session.commit()
    return enrolment
