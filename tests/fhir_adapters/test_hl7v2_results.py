"""OBX -> Observation mapping details: timestamps, structured numerics, coded values, local systems."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fhir_adapters.hl7v2 import parse_message
from fhir_adapters.hl7v2_results import LOCAL_SYSTEM, observations_from_oru, results_transaction, v2_instant

LONDON = ZoneInfo("Europe/London")
MSH = "MSH|^~\\&|LAB|ROYALHOSP|ERAS|ROYALHOSP|20260701120000||ORU^R01^ORU_R01|C42|P|2.5.1"
PID = "PID|1||M1^^^HOSPMRN^MR"


def test_v2_timestamps_take_their_zone_or_the_hospitals() -> None:
    assert v2_instant("20260701083000", LONDON) == "2026-07-01T08:30:00+01:00"  # BST
    assert v2_instant("20260701083000-0500", LONDON) == "2026-07-01T08:30:00-05:00"
    assert v2_instant("202607", LONDON) == "2026-07"
    assert v2_instant("not a time", LONDON) is None


def test_sn_cwe_local_codes_and_statuses_map_as_sent() -> None:
    message = parse_message("\r".join([
        MSH, PID, "OBR|1||X|1|||20260701080000",
        "OBX|1|SN|1989-3^Vitamin D^LN||^42|ng/mL|||||C",
        "OBX|2|CWE|72166-2^Smoking status^LN||77176002^Smoker^SCT||||||F",
        "OBX|3|NM|NAUS^Nausea score^99LOC||3||||||D|||20260701090000"]))
    vit_d, smoking, nausea = observations_from_oru(message, "p1", LONDON)
    assert vit_d["valueQuantity"] == {"value": 42, "unit": "ng/mL", "code": "ng/mL"}
    assert vit_d["status"] == "corrected" and vit_d["effectiveDateTime"] == "2026-07-01T08:00:00+01:00"
    assert smoking["valueCodeableConcept"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "77176002", "display": "Smoker"}]
    assert nausea["code"]["coding"][0]["system"] == f"{LOCAL_SYSTEM}/99LOC"
    assert nausea["status"] == "entered-in-error"
    entry = results_transaction([nausea])["entry"][0]["request"]
    assert entry["ifNoneExist"] == ("identifier=http%3A%2F%2Feras-engine.org%2Ffhir%2Fidentifier%2F"
                                    "hl7v2-result%7CLAB%5EROYALHOSP%3AC42%3A3")
