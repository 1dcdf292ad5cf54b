"""Synthetic ERAS patients for benchmarks and the demo: ~50 facts over a spine surgery timeline."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from engine.facts import Fact, PatientFacts

BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# Process evidence the record usually holds, with its typical time from surgery start (hours).
_PROCESS = [
    ("preop_education_delivered", -24 * 14), ("prehabilitation_programme", -24 * 30),
    ("psychological_screening", -24 * 20), ("discharge_plan_documented", -24 * 10),
    ("fasting_status_documented", -3), ("carbohydrate_drink", -2.5),
    ("pc6_bands_applied", -0.6), ("acetaminophen_administered", -0.5),
    ("gabapentinoid_administered", -0.5), ("antibiotic_prophylaxis_administered", -0.4),
    ("tranexamic_acid_administered", 0.1), ("goal_directed_fluid_therapy", 1),
    ("pc6_bands_checked", 5), ("oral_fluids_started", 6), ("pc6_bands_removed", 24),
    ("oral_diet_started", 26), ("physiotherapy_session", 28), ("protein_supplement", 48),
]


def synthetic_patient(i: int, rng: random.Random) -> tuple[PatientFacts, datetime]:
    """Patient i with a booking, surgery, stay, labs, scores and mobilisation; and a `now`."""
    start = BASE + timedelta(days=rng.randint(0, 300), hours=rng.randint(0, 8))
    booked = start - timedelta(days=rng.randint(20, 70))
    end = start + timedelta(hours=rng.uniform(2, 5))
    discharge = end + timedelta(days=rng.randint(2, 6))
    f: list[Fact] = [
        Fact("spine_surgery_booked", start, recorded=booked, source=f"ServiceRequest/{i}"),
        # The adapter emits one fact per concept a code means: fusion is also "spine surgery".
        Fact("spinal_fusion", start, end, source=f"Procedure/s{i}"),
        Fact("spine_surgery", start, end, source=f"Procedure/s{i}"),
        Fact("inpatient_stay", start - timedelta(hours=3), discharge, source=f"Encounter/{i}"),
        Fact("tobacco_smoking_status", booked, value=rng.choice(
            ["current_smoker", "never_smoker", "ex_smoker"]), source=f"Observation/sm{i}"),
        Fact("haemoglobin", booked + timedelta(days=2), value=round(rng.uniform(10, 16), 1),
             unit="g/dL", source=f"Observation/hb{i}"),
        Fact("albumin", booked + timedelta(days=2), value=round(rng.uniform(2.8, 4.8), 1),
             unit="g/dL", source=f"Observation/al{i}"),
    ]
    if rng.random() < 0.2:
        f.append(Fact("diabetes", booked - timedelta(days=400), source=f"Condition/dm{i}"))
        f.append(Fact("hba1c", booked + timedelta(days=2), value=rng.uniform(42, 80),
                      source=f"Observation/a1c{i}"))
    if rng.random() < 0.3:
        f.append(Fact("ponv_history", booked - timedelta(days=900), source=f"Condition/pv{i}"))
    if rng.random() < 0.7:
        f.append(Fact("opioid_planned", booked + timedelta(days=3), source=f"MedicationRequest/o{i}"))
    for concept, offset_h in _PROCESS:
        if rng.random() < 0.75:
            at = start + timedelta(
                hours=offset_h + rng.uniform(-2, 2))
            f.append(Fact(concept, at, value=1, source=f"Procedure/{concept[:6]}{i}"))
    for k in range(14):
        t = end + timedelta(hours=1 + k * 4 + rng.uniform(0, 2))
        f.append(Fact("pain_score", t, value=rng.randint(0, 9), source=f"Observation/p{i}-{k}"))
    for k in range(6):
        t = end + timedelta(hours=4 + k * 9 + rng.uniform(0, 3))
        f.append(Fact("ambulation", t, source=f"Procedure/a{i}-{k}"))
    for k in range(3):
        f.append(Fact("antiemetic_administered", start - timedelta(minutes=20 - k * 30),
                      source=f"MedicationAdministration/ae{i}-{k}"))
    f.append(Fact("urinary_catheter_removed", end + timedelta(hours=rng.uniform(6, 40)),
                  source=f"Procedure/c{i}"))
    patient = PatientFacts(
        patient_id=f"bench-{i}", enrolment_id=f"enr-{i}", sex=rng.choice(["female", "male"]),
        birth_date=date(rng.randint(1940, 1995), rng.randint(1, 12), rng.randint(1, 28)),
        enrolled_at=booked, parameters={}, facts=tuple(f),
    )
    now = booked + (discharge + timedelta(days=30) - booked) * rng.random()
    return patient, now
