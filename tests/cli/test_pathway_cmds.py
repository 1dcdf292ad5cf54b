"""`eras pathway ...` end to end: validate, show, export and simulate, run as a user would."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner, Result

from engine.loader import load_pathway
from engine.model import Pathway
from engine.terminology import load_terminology
from eras_cli.main import app

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
LUMBAR = PATHWAYS / "lumbar_fusion.yaml"
PATIENTS = ROOT / "deploy" / "demo" / "patients"
DEMO = {"a": PATIENTS / "a_fusion_ponv_anaemia.json",
        "b": PATIENTS / "b_decompression_smoker_diabetes.json",
        "c": PATIENTS / "c_fusion_fast_track.json"}
INVALID = ROOT / "tests" / "engine" / "data" / "invalid"
TERMS = ROOT / "tests" / "engine" / "data" / "terms.yaml"
INVALID_CASES = sorted(p for p in INVALID.glob("*.yaml") if not p.name.startswith("lib_"))
EXPECT = re.compile(r"^# expect: (?:(?P<file>[\w.]+):)?(?P<line>\d+): (?P<path>[^:]*): (?P<msg>.+)$")
CHECKPOINTS = ("booked+1d", "op-2w", "op-1h", "end+6h", "POD1 20:00", "POD3 20:00", "disch+2w",
               "disch+7w", "last fact")


@cache
def lumbar() -> Pathway:
    return load_pathway(LUMBAR)


def run(*args: str | Path) -> Result:
    # Wide enough that no table cell is folded, as in deploy/demo/simulate.sh.
    return CliRunner().invoke(app, ["pathway", *map(str, args)], env={"COLUMNS": "250"})


def schedule(output: str) -> dict[str, dict[str, str]]:
    """The simulate table as {element id: {checkpoint label: cell text}}.

    Cells are left-aligned under their header label, so the header gives each column's span."""
    lines = output.splitlines()
    head = next(line for line in lines if "last fact" in line)
    starts = sorted((head.index(label), label) for label in CHECKPOINTS if label in head)
    table: dict[str, dict[str, str]] = {}
    for line in lines:
        match = re.match(r"^  ([a-z][a-z0-9_]*) ", line)
        if match is None:
            continue
        spans = zip(starts, [*(s for s, _ in starts[1:]), None], strict=True)
        table[match.group(1)] = {label: line[start:end].strip() for (start, label), end in spans}
    return table


# ---------------------------------------------------------------- validate ------------------

@pytest.mark.parametrize("file", sorted(PATHWAYS.glob("*.yaml")), ids=lambda p: p.name)
def test_validate_shipped_pathway_succeeds(file: Path) -> None:
    result = run("validate", file)
    assert result.exit_code == 0, result.output
    assert f"{file}: {load_pathway(file).id} v" in result.stdout


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda p: p.stem)
def test_validate_invalid_fixture_exits_1_naming_file_line_and_key(case: Path) -> None:
    result = run("validate", case, "-t", TERMS)
    assert result.exit_code == 1
    for line in case.read_text().splitlines():
        if (want := EXPECT.match(line)) is None:
            continue
        where = f"{want['file'] or case.name}:{want['line']}: {want['path'] or '(top level)'}: "
        assert where in result.stderr and want["msg"] in result.stderr, result.stderr


def test_validate_several_files_reports_each_and_fails_once_any_fails() -> None:
    result = run("validate", LUMBAR, INVALID / "typo_key.yaml")
    assert result.exit_code == 1
    assert "lumbar_fusion v1" in result.stdout
    assert "typo_key.yaml:18: elements[0].evidance: unknown key" in result.stderr


# ---------------------------------------------------------------- show and export -----------

def test_show_lumbar_fusion_lists_every_element() -> None:
    result = run("show", LUMBAR)
    assert result.exit_code == 0, result.output
    missing = [el.id for el in lumbar().elements if el.id not in result.stdout]
    assert missing == []


def test_export_prints_r4b_bundle_with_one_action_per_element() -> None:
    pathway = lumbar()
    result = run("export", LUMBAR)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    Bundle.model_validate(data)
    resources = [entry["resource"] for entry in data["entry"]]
    plan = next(r for r in resources if r["resourceType"] == "PlanDefinition")
    assert plan["type"]["coding"][0]["code"] == "clinical-protocol"
    groups = [a for a in plan["action"] if a["id"].startswith("phase-")]
    actions = [action for group in groups for action in group["action"]]
    assert sorted(a["id"] for a in actions) == sorted(el.id.replace("_", "-") for el in pathway.elements)
    activities = [r for r in resources if r["resourceType"] == "ActivityDefinition"]
    assert len(activities) == sum(1 for el in pathway.elements if el.action is not None)


def test_export_unknown_format_exits_2() -> None:
    result = run("export", LUMBAR, "--format", "cql")
    assert result.exit_code == 2
    assert "unknown format 'cql'" in result.stderr


# ---------------------------------------------------------------- simulate ------------------

@pytest.mark.parametrize("patient", sorted(DEMO), ids=lambda p: f"demo-{p}")
def test_demo_patient_facts_use_default_terminology_concepts(patient: str) -> None:
    # An unknown concept would silently prove nothing in the demo.
    known = load_terminology(PATHWAYS / "terminology" / "default.yaml").concepts
    facts = json.loads(DEMO[patient].read_text())["facts"]
    assert sorted({f["concept"] for f in facts} - set(known)) == []


@pytest.fixture(scope="module")
def simulated() -> dict[str, Result]:
    """Each demo patient simulated once for the module's tests."""
    return {p: run("simulate", LUMBAR, "--patient", path) for p, path in DEMO.items()}


@pytest.mark.parametrize("patient", sorted(DEMO), ids=lambda p: f"demo-{p}")
def test_simulate_demo_patient_succeeds_without_warnings(simulated: dict[str, Result],
                                                         patient: str) -> None:
    result = simulated[patient]
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert len(schedule(result.stdout)) == len(lumbar().elements)


# (patient, element, checkpoint, expected cell): each row follows from the patient's facts.
SIMULATED = [
    # a: Hb 11.2 g/dL known 4 weeks before surgery, iron 11 days before: late, then done
    ("a", "anaemia_iron_therapy", "booked+1d", "n/a"),
    ("a", "anaemia_iron_therapy", "op-2w", "overdue"),
    ("a", "anaemia_iron_therapy", "last fact", "done"),
    # a: Apfel 4 (female, non-smoker, PONV history, opioid planned): PC6 bands, dexamethasone
    # and ondansetron are 3 distinct interventions (PC6 counts, Gan 2020)
    ("a", "ponv_prophylaxis_high_risk", "last fact", "done"),
    ("a", "ponv_prophylaxis_moderate_risk", "last fact", "n/a"),
    ("a", "ponv_rescue_nausea", "POD1 20:00", "done"),
    ("a", "preemptive_gabapentinoid", "end+6h", "n/a"),  # a site choice, off by default
    ("a", "urinary_catheter_removal", "end+6h", "due"),
    # removed 28 March 18:30, after the 24 h window: done late (not missing data, not compliant)
    ("a", "urinary_catheter_removal", "POD1 20:00", "done-late"),
    # a: only 2 walks on POD2, the day the clocks go forward
    ("a", "walk_three_times_daily", "POD3 20:00", "missed 2/3"),
    ("a", "smoking_cessation", "last fact", "n/a"),
    # b: current smoker, counselled 5 weeks before surgery
    ("b", "smoking_cessation", "booked+1d", "due"),
    ("b", "smoking_cessation", "last fact", "done"),
    ("b", "nicotine_free_reminder", "disch+2w", "done"),
    ("b", "glycaemic_optimisation", "last fact", "done"),
    ("b", "carbohydrate_loading", "op-1h", "n/a"),
    # b: vitamin D 35 nmol/L = 14 ng/mL, converted as the FHIR adapter would
    ("b", "vitamin_d_replacement", "last fact", "done"),
    ("b", "ponv_prophylaxis_moderate_risk", "last fact", "done"),
    ("b", "normothermia", "last fact", "missed"),
    # b: NRS 7 on POD0 14:00, opioid 14:05, rescored 14:45 -> done. NRS 4 at 22:00 rescored at
    # 22:50 but no analgesic until the 08:00 paracetamol next day: the `also` clause is met only
    # after the 1 h window, before discharge -> done late (clin-content's analgesic rule with
    # clin-engine's late proof). NRS 6 on POD1 09:00, opioid 09:10, rescored only at 17:00 ->
    # done late. Worst counted: done-late; 1 of 3 done in time.
    ("b", "pain_reassessment_within_1h", "end+6h", "done"),
    ("b", "pain_reassessment_within_1h", "last fact", "done-late 1/3"),
    # first walk on POD2 10:30, after the POD1-end close, before discharge (done late)
    ("b", "out_of_bed_day_of_surgery", "POD3 20:00", "done-late"),
    ("b", "walk_three_times_daily", "disch+2w", "missed 0/3"),
    ("b", "nsaid_short_course", "last fact", "declined"),
    ("b", "supervised_exercise_decompression", "disch+2w", "upcoming"),
    ("b", "supervised_exercise_decompression", "last fact", "done"),
    ("b", "supervised_exercise_fusion", "last fact", "n/a"),
    # c: Apfel 3, three antiemetics; catheter out at 18.5 h; 3 walks on POD1 and POD2
    ("c", "ponv_prophylaxis_high_risk", "end+6h", "done"),
    ("c", "urinary_catheter_removal", "POD1 20:00", "done"),
    ("c", "walk_three_times_daily", "POD1 20:00", "done"),
    ("c", "walk_three_times_daily", "POD3 20:00", "done 2/2"),
    ("c", "nsaid_within_limits", "last fact", "done"),
    ("c", "step_goal_week_6", "disch+2w", "upcoming"),
    ("c", "step_goal_week_6", "last fact", "done"),
    ("c", "step_goal_messages", "last fact", "done 6/6"),
    ("c", "supervised_exercise_fusion", "last fact", "done"),
    ("c", "odi_follow_up_3_months", "last fact", "done"),
]


@pytest.fixture(scope="module")
def schedules(simulated: dict[str, Result]) -> dict[str, dict[str, dict[str, str]]]:
    return {p: schedule(result.stdout) for p, result in simulated.items()}


@pytest.mark.parametrize(("patient", "element", "checkpoint", "expected"), SIMULATED,
                         ids=[f"{p}-{e}-{c}" for p, e, c, _ in SIMULATED])
def test_simulate_demo_patient_status(schedules: dict[str, dict[str, dict[str, str]]], patient: str,
                                      element: str, checkpoint: str, expected: str) -> None:
    assert schedules[patient][element][checkpoint] == expected


@pytest.mark.parametrize(("patient", "expected"), [
    ("a", "demo-a (female, 68 y) on lumbar_fusion v1, procedure_type fusion"),
    ("a", "apfel 4 (risk 79%)"),
    ("b", "demo-b (male, 52 y) on lumbar_fusion v1, procedure_type decompression"),
    ("b", "apfel 1 (risk 21%)"),
    ("c", "apfel 3 (risk 61%)"),
])
def test_simulate_header_names_patient_variant_and_scores(simulated: dict[str, Result], patient: str,
                                                         expected: str) -> None:
    assert expected in simulated[patient].stdout


def test_simulate_at_adds_a_column_in_local_time() -> None:
    result = run("simulate", LUMBAR, "--patient", DEMO["c"], "--at", "2026-06-08T09:00")
    assert result.exit_code == 0, result.output
    assert "2026-06-08T09:00" in result.stdout and "08 Jun 09:00" in result.stdout


def _patient_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ('{"id": "x", "facts": [', "patient.json:1: not valid JSON"),
    ('{"id": "x", "facts": [{"concept": "spine_surgery", "time": "2026-03-27T08:30:00"}]}',
     "facts[0]: '2026-03-27T08:30:00' needs a time zone offset"),
    ('{"id": "x", "facts": [{"concept": "spine_surgery", "time": "yesterday"}]}',
     "facts[0]: 'yesterday' is not an ISO 8601 instant"),
    ('{"id": "x", "facts": [{"time": "2026-03-27T08:30:00Z"}]}', "facts[0]: missing 'concept'"),
    ('["not", "an", "object"]', "a patient file must hold one JSON object"),
    ('{"id": "x", "birthDate": "1957-13-45"}', "not a valid patient file"),
], ids=["missing", "bad-json", "naive-datetime", "not-a-date", "no-concept", "a-list", "bad-birth-date"])
def test_simulate_bad_patient_file_exits_1_saying_why(tmp_path: Path, content: str | None,
                                                        message: str) -> None:
    path = tmp_path / "patient.json" if content is None else _patient_file(tmp_path, content)
    result = run("simulate", LUMBAR, "--patient", path)
    assert result.exit_code == 1
    assert "cannot simulate:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("option", "message"), [
    (["--tz", "Mars/Olympus_Mons"], "unknown time zone 'Mars/Olympus_Mons'"),
    (["--at", "next tuesday"], "--at 'next tuesday' is not an ISO 8601 date-time"),
], ids=["tz", "at"])
def test_simulate_bad_option_exits_1_saying_why(option: list[str], message: str) -> None:
    result = run("simulate", LUMBAR, "--patient", DEMO["a"], *option)
    assert result.exit_code == 1
    assert message in result.stderr


def test_simulate_fact_of_unknown_concept_is_reported(tmp_path: Path) -> None:
    facts = [{"concept": "spine_surgery", "time": "2026-03-27T08:30:00Z"},
             {"concept": "walkies", "time": "2026-03-28T08:30:00Z"}]
    result = run("simulate", LUMBAR, "--patient", _patient_file(tmp_path, json.dumps({"facts": facts})))
    assert result.exit_code == 0, result.output
    assert "does not know: walkies" in result.stderr
