"""The permission matrix, cell by cell, through HTTP with real (dev-signed) tokens, on both databases.

The expected matrix is written here by hand from the README's "Permissions" section (least
privilege: clinical roles act on their own wards; quality reads the audit only; admin runs the
service and reads any ward's worklist but does no clinical act). It is not imported from the code.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.api.worklist.conftest import TokenFactory, bearer
from tests.utils.worklist import seed_action, seed_enrolment

CLINICAL = ("nurse", "charge_nurse", "physiotherapist", "anaesthetist")
ROLES = (*CLINICAL, "quality", "admin")
OWN, OTHER = "own", "other"

# route -> role -> wards where it is allowed ("own" = wards in the token, "any" = every ward)
EXPECTED: dict[str, dict[str, str]] = {
    "worklist": {**{r: "own" for r in CLINICAL}, "admin": "any"},
    "complete": {r: "own" for r in CLINICAL},
    "decline": {r: "own" for r in CLINICAL},
    "reassign": {r: "own" for r in CLINICAL},
    "patient-pathway": {**{r: "own" for r in CLINICAL}, "admin": "any"},  # quality: only in the audit
    "audit": {"quality": "any", "admin": "any"},
    "access-log": {"admin": "any"},
    "runtime": {"admin": "any"},
}
BODIES = {"complete": {}, "decline": {"reason": "patient-refused"}, "reassign": {"role": "charge_nurse"}}
CELLS = [(route, role, ward) for route in EXPECTED for role in ROLES for ward in (OWN, OTHER)]


def _allowed(route: str, role: str, ward: str) -> bool:
    scope = EXPECTED[route].get(role)
    return scope == "any" or (scope == "own" and ward == OWN)


async def _call(app: FastAPI, api: httpx.AsyncClient, route: str, target: str, token: str) -> httpx.Response:
    headers = bearer(token)
    if route in ("complete", "decline", "reassign"):
        enrolment = seed_enrolment(app.state.engine, ward=target)
        app.state.seeded.append(enrolment.id)
        action = seed_action(app.state.engine, enrolment, "drain_removal", due=None)  # no Task: store only
        return await api.post(f"/worklist/{action.key}/{route}", json=BODIES[route], headers=headers)
    if route == "patient-pathway":  # the ward is the patient's enrolment's
        enrolment = seed_enrolment(app.state.engine, ward=target)
        app.state.seeded.append(enrolment.id)
        patient_id = enrolment.patient_ref.removeprefix("Patient/")
        return await api.get(f"/patients/{patient_id}/pathway", headers=headers)
    path = {
        "worklist": f"/worklist?ward={target}",
        "audit": "/audit/compliance?pathway=lumbar_fusion",
        "access-log": "/admin/audit",
        "runtime": "/runtime/status",
    }[route]
    return await api.get(path, headers=headers)


@pytest.mark.parametrize(("route", "role", "ward"), CELLS, ids=["-".join(c) for c in CELLS])
async def test_permission_cell(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory, route: str, role: str, ward: str
) -> None:
    own = f"W{uuid.uuid4().hex[:6]}"
    target = own if ward == OWN else f"X{uuid.uuid4().hex[:6]}"
    response = await _call(worklist_app, api, route, target, token(f"{role}.a", (role,), (own,)))
    expected = 200 if _allowed(route, role, ward) else 403
    assert response.status_code == expected, response.text


def test_permission_readme_section_is_the_enforced_table() -> None:
    from api.access import matrix_markdown

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    assert matrix_markdown() in readme
