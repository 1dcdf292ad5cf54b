"""Required code bindings of what the engine writes: every bound element, in and out of Bundles."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_adapters.valuesets import BINDINGS, HTTP_VERBS, InvalidFhirCode, check_resource

VALID = {
    "Task": {"resourceType": "Task", "status": "ready", "intent": "order", "priority": "routine"},
    "CommunicationRequest": {"resourceType": "CommunicationRequest", "status": "active",
                             "priority": "urgent"},
    "CarePlan": {"resourceType": "CarePlan", "status": "active", "intent": "plan"},
    "Bundle": {"resourceType": "Bundle", "type": "transaction"},
}


@pytest.mark.parametrize("resource", list(VALID.values()), ids=list(VALID))
def test_check_resource_valid_codes_pass(resource: dict[str, Any]) -> None:
    check_resource(resource)


BAD_ROWS = [
    ("Task", "status", "done"),
    ("Task", "intent", "plan "),
    ("Task", "priority", "high"),
    ("CommunicationRequest", "status", "requested"),
    ("CommunicationRequest", "priority", "Routine"),
    ("CarePlan", "status", "ready"),
    ("CarePlan", "intent", "order-set"),
    ("Bundle", "type", "batch-request"),
]


@pytest.mark.parametrize(("resource_type", "element", "bad"), BAD_ROWS)
def test_check_resource_bad_code_names_path_value_and_allowed(resource_type: str, element: str,
                                                               bad: str) -> None:
    with pytest.raises(InvalidFhirCode) as caught:
        check_resource({**VALID[resource_type], element: bad})
    error = caught.value
    path = f"{resource_type}.{element}"
    assert (error.resource_type, error.path, error.value) == (resource_type, path, bad)
    assert error.allowed == BINDINGS[resource_type][element]
    assert f"{resource_type}.{element}" in str(error) and repr(bad) in str(error)
    assert ", ".join(error.allowed) in str(error)


def test_check_resource_bad_task_status_lists_task_statuses() -> None:
    with pytest.raises(InvalidFhirCode, match="'bogus'.*draft, requested, received, accepted, rejected, "
                                              "ready, cancelled, in-progress, on-hold, failed, completed, "
                                              "entered-in-error"):
        check_resource({**VALID["Task"], "status": "bogus"})


def test_check_resource_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_resource({**VALID["CarePlan"], "status": None})


def test_check_resource_bundle_entry_method_checked() -> None:
    bundle = {**VALID["Bundle"], "entry": [{"request": {"method": "GET", "url": "Task"}},
                                           {"request": {"method": "post", "url": "Task"}}]}
    with pytest.raises(InvalidFhirCode) as caught:
        check_resource(bundle)
    assert caught.value.path == "Bundle.entry[1].request.method"
    assert caught.value.allowed == HTTP_VERBS


def test_check_resource_bundle_entry_resources_checked() -> None:
    bundle = {**VALID["Bundle"], "entry": [{"resource": VALID["CarePlan"]},
                                           {"resource": {**VALID["Task"], "status": "bogus"}}]}
    with pytest.raises(InvalidFhirCode) as caught:
        check_resource(bundle)
    assert (caught.value.resource_type, caught.value.path) == ("Task", "Bundle.entry[1].resource.status")


def test_check_resource_unbound_types_and_absent_elements_pass() -> None:
    check_resource({"resourceType": "Observation", "status": "anything"})
    check_resource({"resourceType": "Task"})
