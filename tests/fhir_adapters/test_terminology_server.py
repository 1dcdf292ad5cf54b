"""ValueSet $expand against a terminology server: the request's shape and the table it yields.

respx, because the sandbox FHIR server implements no terminology operations ($expand answers
404 there); the HTTP shape is the FHIR R4 ValueSet/$expand with an inline is-a ValueSet.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import respx

from engine.subsumption import CodeRef
from engine.terminology import load_terminology
from fhir_adapters.client import FhirClient
from fhir_adapters.terminology_server import expand_parents

BASE = "https://tx.example/fhir"
SCT = "http://snomed.info/sct"
DEFAULT = Path(__file__).resolve().parents[2] / "pathways" / "terminology" / "default.yaml"


def _expansion(*codes: str) -> dict:
    nested = {"system": SCT, "code": codes[-1], "display": "nested"}
    top = [{"system": SCT, "code": c} for c in codes[:-1]]
    top.append({"abstract": True, "display": "group", "contains": [nested]})
    return {"resourceType": "ValueSet", "status": "active", "expansion": {"contains": top}}


@respx.mock
async def test_expand_posts_an_is_a_value_set_and_children_bind() -> None:
    sent: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        include = body["parameter"][0]["resource"]["compose"]["include"][0]
        if include["filter"][0]["value"] == "73211009":
            return httpx.Response(200, json=_expansion("44054006", "190372001"))
        return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "not-found", "diagnostics": "unknown code system"}]})

    respx.post(f"{BASE}/ValueSet/$expand").mock(side_effect=answer)
    parents = (CodeRef(system=SCT, code="73211009"), CodeRef(system="http://local", code="x"))
    async with FhirClient(BASE, max_retries=0) as server:
        table = await expand_parents(server, parents)
    assert [p["parameter"][0]["name"] for p in sent] == ["valueSet", "valueSet"]
    assert sent[0]["parameter"][0]["resource"]["compose"]["include"][0] == {
        "system": SCT, "filter": [{"property": "concept", "op": "descendent-of", "value": "73211009"}]}
    # the unknown system is skipped; the nested code is found, the abstract group is not a code
    assert [c.code for c in table.descendants(SCT, "73211009")] == ["44054006", "190372001"]

    terms = load_terminology(DEFAULT).with_subsumption(table)
    assert terms.concepts_for(SCT, "190372001") == ("diabetes",)
    assert load_terminology(DEFAULT).concepts_for(SCT, "190372001") == ()
