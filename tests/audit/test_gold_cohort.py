"""The gold-standard cohort: expected numbers worked out by hand from pathways/lumbar_fusion.yaml.

How the numbers were derived (see tests/audit/cohort.py for the episodes):

- `compliant()` is a male fusion patient who never smoked, is neither diabetic nor anaemic, has
  Apfel 1 (male, non-smoker), no catheter, drain (a positive "none placed" record), ketorolac,
  pain >= 4, nausea or vomiting, and daily step counts. Of the 66 elements, 25 do not apply to
  him: smoking_cessation, alcohol_cessation, dietitian_referral_low_albumin (albumin 4.0, no
  BMI), vitamin_d_replacement (30 ng/mL), anaemia_iron_therapy (Hb 14.5), glycaemic_screening,
  glycaemic_optimisation, psychology_referral (PHQ-9 4, GAD-7 3), opioid_tolerant_plan (no
  pre-operative opioid), preemptive_gabapentinoid (a site choice, off by default),
  antibiotic_prophylaxis_120min (no vancomycin/fluoroquinolone), antibiotic_redosing (the
  cohort's cefazolin carries no re-dose attr; 4 h operations need none anyway),
  vte_pharmacological_prophylaxis (site choice, off), ponv_prophylaxis_high_risk,
  urinary_catheter_removal, drain_removal, discharge_opioid_limit_and_taper (no discharge
  opioid), ponv_rescue_nausea, ponv_rescue_vomiting (no trigger), nsaid_within_limits,
  nsaid_limit_alert, pain_reassessment_within_1h (no trigger), nicotine_free_reminder,
  supervised_exercise_decompression, persistent_pain_referral (NRS 2, no opioids at 12 weeks).
  The other 41 are done, in windows closed at AUDIT_NOW: pre-admission 9 (with
  preop_opioid_use_review), pre-op 5 (fasting from the recorded last clear fluids 2.5 h and last
  solids 8 h before induction), intra-op 7 (with vte_mechanical_prophylaxis), post-op 11,
  post-discharge 9 (with persistent_pain_follow_up_3_months).
- Issue 9 (second clinical review) changed every row by the same +2 (+3 new elements done, the
  gabapentinoid now not applicable), except where a line says otherwise.
- Every other patient is that episode with named deviations; each line below says which.
"""

from __future__ import annotations

import csv
import io

import pytest

from engine.audit import AuditReport, audit_report, patient_timeline
from engine.audit_cells import Breakdown, DeclinedNotApplicable
from engine.audit_export import declines_csv, matrix_csv, summary_csv
from engine.compliance import Ratio
from engine.outcomes import load_outcome_definitions
from engine.results import Status
from tests.audit.cohort import (
    LONDON,
    H,
    content_cohort,
    gold_cohort,
    lumbar,
    outcomes_cohort,
    p36_analgesia_plan_task_completed_late,
    p37_psychological_screening_documented_not_done,
)

# (done, counted) per patient.
PATIENT_COMPLIANCE: dict[str, tuple[int, int]] = {
    "P01": (41, 41),  # the compliant episode
    "P02": (40, 41),  # education declined, patient-refused -> counted, not done
    "P03": (41, 41),  # gabapentinoid declined as contraindicated; now not applicable anyway
    "P04": (41, 42),  # smoker, Apfel 0: +smoking_cessation (done) +nicotine_free_reminder (3 of 6
    #                   messages -> not done), -ponv_prophylaxis_moderate_risk (not applicable)
    "P05": (41, 42),  # diabetic HbA1c 9.1: +glycaemic_screening (done) +glycaemic_optimisation
    #                   (no task -> missed), -carbohydrate_loading (not for diabetics)
    "P06": (42, 42),  # anaemic woman (Hb 11.0, Apfel 2): +anaemia_iron_therapy, done at -7w
    "P07": (40, 41),  # cefazolin 1 min after incision (window closes at 0) -> missed
    "P08": (41, 41),  # cefazolin exactly at incision: the window is [opens, closes] -> done
    "P09": (40, 42),  # catheter: +urinary_catheter_removal; removed at end+26h (window closes 24h)
    #                   -> missed; no_routine_drain_or_catheter not done (the "none placed"
    #                   record is contradicted by the catheter records)
    "P10": (41, 42),  # catheter removed 1 min before end+24h -> done; no_routine not done
    "P11": (40, 42),  # catheter removed 1 min after end+24h -> missed; no_routine not done
    "P12": (40, 41),  # walks 3/2/1 on POD1/2/3 -> walk_three_times_daily not done
    "P13": (41, 41),  # decompression: supervised_exercise_decompression at 5w done, fusion n/a
    "P14": (40, 41),  # decompression, physiotherapy at 11w (window 4w-10w) -> missed
    "P15": (40, 41),  # fusion, physiotherapy at 6w (window opens 8w) -> missed
    "P16": (41, 41),  # readmitted on POD14: compliance unchanged (anchors use the first stay)
    "P17": (42, 42),  # nausea 6 at end+3h: +ponv_rescue_nausea, droperidol (new class) -> done
    "P18": (41, 42),  # vomited at end+21h: +ponv_rescue_vomiting, no rescue -> missed
    "P19": (42, 42),  # nausea 5 at end+30h: +ponv_rescue_nausea, rescued -> done
    "P20": (40, 41),  # Apfel 4: high-risk prophylaxis replaces moderate; 2 classes (5-HT3 x2, PC6) < 3
    "P21": (42, 42),  # ketorolac 3 x 30 mg (age 63, cap 110): +nsaid_within_limits done
    "P22": (42, 43),  # ketorolac 3 x 40 mg = 120 mg/24 h > 110: +nsaid_within_limits (missed)
    #                   +nsaid_limit_alert (review task completed -> done)
    "P23": (42, 42),  # pain 6 on POD1, paracetamol 10 min later, reassessed at 40 min:
    #                   +pain_reassessment_within_1h done (analgesia AND reassessment)
    "P24": (40, 41),  # one 4-hourly pain block without a score -> pain_score_every_4h not done
    "P25": (39, 40),  # no step counts -> step_goal_week_6 n/a; no 3-month ODI -> missed
    "P26": (40, 41),  # one pain block declined (patient-unavailable, counts not-done)
    "P27": (40, 41),  # prehabilitation proved by a completed Task; no PHQ-9/GAD-7 -> missed
    "P28": (38, 38),  # PC6 bands declined as contraindicated -> excluded; so check/removal n/a
    "P29": (39, 41),  # first out of bed on POD2: out_of_bed missed, walk POD1 missed
    "P30": (29, 30),  # in hospital on POD1 at the audit: pre-admission 9 + pre-op 5 + intra-op 7
    #                   done; post-op 9 counted (protein DUE and walk POD1 DUE excluded), PC6
    #                   removal OVERDUE (due start+24h); post-discharge all upcoming
    "P31": (40, 41),  # carbohydrate drink 1 min before its window opens (-3h) -> missed
    "P32": (40, 41),  # 35.8 C at the end of surgery -> normothermia missed
    "P33": (25, 39),  # nothing before surgery: 9 pre-admission + 5 pre-op (fasting times,
    #                   carbohydrate, PONV risk, PC6, paracetamol) missed; PC6 check and removal
    #                   n/a (no bands applied) -> 39 counted
    "P34": (32, 40),  # lost to follow-up: 4 rehab messages, step messages, physiotherapy, ODI,
    #                   3-month pain review missed; no steps -> step_goal_week_6 n/a
    "P35": (23, 40),  # P33's pre-admission gaps (9) + P34's follow-up gaps (8)
}

# (done, counted) per element, over the 35 patients.
ELEMENT_COMPLIANCE: dict[str, tuple[int, int]] = {
    "patient_education": (32, 35),           # P02 refused (counted), P33 and P35 missing
    "odi_baseline": (33, 35),                # P33, P35
    "prehabilitation": (33, 35),             # P27 done by Task; P33, P35 missing
    "psychological_screening": (32, 35),     # P27, P33, P35
    "smoking_cessation": (1, 1),             # only P04 smokes
    "glycaemic_screening": (1, 1),           # only P05 is diabetic
    "glycaemic_optimisation": (0, 1),        # P05, no optimisation task
    "anaemia_iron_therapy": (1, 1),          # only P06 is anaemic
    "carbohydrate_loading": (32, 34),        # P05 n/a (diabetic); P31 1 min early, P33 none
    "preop_opioid_use_review": (33, 35),     # P33, P35 (nothing before admission)
    "preop_fasting": (34, 35),               # P33: no recorded fluid/solid times
    "vte_mechanical_prophylaxis": (35, 35),
    "pc6_bands_applied": (33, 34),           # P28 contraindicated (excluded); P33 none
    "antibiotic_prophylaxis": (34, 35),      # P07 1 min late; P08 at incision counts
    "normothermia": (34, 35),                # P32
    "no_routine_drain_or_catheter": (32, 35),  # P09, P10, P11 had catheters
    "ponv_prophylaxis_moderate_risk": (33, 33),  # Apfel 1-2: all but P04 (0) and P20 (4)
    "ponv_prophylaxis_high_risk": (0, 1),    # P20
    "urinary_catheter_removal": (1, 3),      # P10 only; P09 at 26 h, P11 at 24 h 1 min
    "ponv_rescue_nausea": (2, 2),            # P17, P19
    "ponv_rescue_vomiting": (0, 1),          # P18
    "pc6_bands_removed": (32, 33),           # n/a P28, P33; P30 overdue
    "nsaid_within_limits": (1, 2),           # P21 yes, P22 no
    "nsaid_limit_alert": (1, 1),             # P22 reviewed
    "pain_score_every_4h": (33, 35),         # P24 missed, P26 declined; P30's closed blocks done
    "pain_reassessment_within_1h": (1, 1),   # P23
    "scheduled_paracetamol": (35, 35),       # P30: block 0 done, later blocks not yet due
    "out_of_bed_day_of_surgery": (34, 35),   # P29
    "walk_three_times_daily": (32, 34),      # P30 POD1 still due; P12, P29 not done
    "protein_supplementation": (34, 34),     # P30 due (day 3 end), not counted
    "nicotine_free_reminder": (0, 1),        # P04: 3 of 6 messages
    "rehab_milestone_week_0_2": (32, 34),    # P30 waits for discharge; P34, P35 missing
    "step_goal_week_6": (31, 31),            # n/a without step counts: P25, P30, P34, P35
    "supervised_exercise_fusion": (29, 32),  # P13, P14 decompression; P30 upcoming;
    #                                          P15 too early, P34, P35 none
    "supervised_exercise_decompression": (1, 2),  # P13 done, P14 after the window
    "odi_follow_up_3_months": (31, 34),      # P30 upcoming; P25, P34, P35 missing
    "persistent_pain_follow_up_3_months": (32, 34),  # P30 upcoming; P34, P35 lost
}

# Sums of PATIENT_COMPLIANCE.
OVERALL = Ratio(1366, 1429)
# Intra-op elements: 7 counted per patient (P04: 6, no prophylaxis at Apfel 0) = 244; not done:
# P07 antibiotic, P09-P11 catheter, P20 high-risk prophylaxis, P32 normothermia.
INTRA_OP = Ratio(238, 244)
# >= 70 %: all but P33 (64 %) and P35 (57.5 %).
HIGH = Ratio(33, 35)
TREND = [
    ("2025-11", 18, Ratio(733, 746), Ratio(18, 18)),  # P01-P18
    ("2025-12", 16, Ratio(604, 653), Ratio(14, 16)),  # P19-P29, P31-P35
    ("2026-04", 1, Ratio(29, 30), Ratio(1, 1)),       # P30
]
# Done after the window closed, before the phase ended: not compliant, not missing either.
DONE_LATE = {
    "P07": "antibiotic_prophylaxis",              # cefazolin 1 min after incision
    "P09": "urinary_catheter_removal",            # removed at end + 26 h (window 24 h)
    "P11": "urinary_catheter_removal",            # removed at end + 24 h 1 min
    "P14": "supervised_exercise_decompression",   # physiotherapy at 11 w (window 4-10 w)
    "P29": "out_of_bed_day_of_surgery",           # first walked POD2 09:00 (window: POD1 end)
}
# (Issue 9's content rules change none of these five timelines: P07's cefazolin is still the
# 60-min antibiotic element, the others are catheter, physiotherapy and mobilisation times.)
# Missing data (nothing documented when the window closed): all 63 not-done elements
# (1429 - 1366, PATIENT_COMPLIANCE) but P02's and P26's declines and the 5 done late above.
# (clin-content alone, without done-late: 61; clin-engine before the content fixes: 53.)
MISSING = Ratio(56, 1429)
MOST_UNDOCUMENTED = [
    ("supervised_exercise_fusion", Ratio(3, 32)),    # 3 missing, ties broken by share missing
    ("odi_follow_up_3_months", Ratio(3, 34)),
    ("psychological_screening", Ratio(3, 35)),       # then by pathway order
    ("no_routine_drain_or_catheter", Ratio(3, 35)),
    ("carbohydrate_loading", Ratio(2, 34)),          # P31 1 min early, P33: 2 of 34 is the
    #                                                  highest share of the 2s (P09/P11's
    #                                                  catheters, 2 of 3, are done late now)
]


@pytest.fixture(scope="module")
def report() -> AuditReport:
    return audit_report(lumbar(), gold_cohort(), procedures=40, outcomes=load_outcome_definitions(),
                        tz=LONDON)


def test_gold_cohort_per_patient_compliance(report: AuditReport) -> None:
    got = {p.patient_id: (p.compliance.overall.done, p.compliance.overall.counted)
           for p in report.patients}
    assert got == PATIENT_COMPLIANCE


@pytest.mark.parametrize(("element", "expected"), ELEMENT_COMPLIANCE.items())
def test_gold_cohort_per_element_compliance(report: AuditReport, element: str,
                                            expected: tuple[int, int]) -> None:
    ratio = report.compliance.by_element[element]
    assert (ratio.done, ratio.counted) == expected


def test_gold_cohort_overall_phase_high_and_trend(report: AuditReport) -> None:
    assert report.compliance.overall == OVERALL
    assert report.phases["intra-op"] == INTRA_OP
    assert sum(report.phases.values(), Ratio()) == OVERALL
    assert report.compliance.high == HIGH
    assert [(t.month, t.patients, t.compliance, t.high) for t in report.trend] == TREND


def test_gold_cohort_completeness(report: AuditReport) -> None:
    done = report.completeness
    assert done.coverage == Ratio(35, 40)
    assert done.missing == MISSING
    assert done.by_element["patient_education"] == Ratio(2, 35)  # P02's refusal is documented
    assert done.by_element["pain_score_every_4h"] == Ratio(1, 35)  # P26's decline too
    assert done.by_element["pc6_bands_removed"] == Ratio(1, 33)  # P30 overdue
    assert list(done.most_undocumented) == MOST_UNDOCUMENTED


# Every counted element result split as EIAS keeps them (done + done late + not done + missing
# = counted): 1366 done; 5 done late (DONE_LATE); 2 documented not done (P02's refusal, P26's
# pain block declined as patient-unavailable); 56 missing data (MISSING).
BREAKDOWN = Breakdown(done=1366, done_late=5, not_done=2, missing=56)
ELEMENT_BREAKDOWN = {
    "urinary_catheter_removal": Breakdown(1, 2, 0, 0),  # P10 done; P09, P11 done late
    "patient_education": Breakdown(32, 0, 1, 2),        # P02 refused; P33, P35 missing
    "pain_score_every_4h": Breakdown(33, 0, 1, 1),      # P26 declined; P24 missing
    "antibiotic_prophylaxis": Breakdown(34, 1, 0, 0),   # P07 1 min late
    "out_of_bed_day_of_surgery": Breakdown(34, 1, 0, 0),  # P29 first up on POD2
}
# Intra-op (INTRA_OP 238/244, 6 not done): P07's antibiotic done late; P09-P11
# (no_routine_drain...), P20 (high-risk prophylaxis), P32 (normothermia): nothing documented
# in the window -> missing.
INTRA_OP_BREAKDOWN = Breakdown(238, 1, 0, 5)
# P29 (39/41): 39 done, out of bed done late, walk POD1 missing (2 of 3 walks are POD2's).
P29_BREAKDOWN = Breakdown(39, 1, 0, 1)
# Declined as not applicable: P28 (ward W2) PC6 bands, "contraindicated": not counted, listed.
# P03's gabapentinoid Task is also cancelled as contraindicated, but the gabapentinoid is now a
# site setting, off by default (clin-content): the element does not apply to P03 whatever the
# Task says, so it is plain n/a and not a decline to list.
DECLINED_NOT_APPLICABLE = [
    DeclinedNotApplicable("pc6_bands_applied", "W2", "contraindicated", 1),
]


def test_gold_cohort_done_late_not_done_and_missing_kept_apart(report: AuditReport) -> None:
    assert report.breakdown == BREAKDOWN
    assert report.breakdown.counted == OVERALL.counted
    summaries = {e.element_id: e for e in report.elements}
    assert {e: summaries[e].breakdown for e in ELEMENT_BREAKDOWN} == ELEMENT_BREAKDOWN
    assert report.phase_breakdown["intra-op"] == INTRA_OP_BREAKDOWN
    rows = {p.patient_id: p for p in report.patients}
    assert rows["P29"].breakdown == P29_BREAKDOWN
    assert rows["P29"].cells["out_of_bed_day_of_surgery"] == "done-late"
    assert rows["P29"].cells["walk_three_times_daily"] == "missing"
    assert rows["P02"].cells["patient_education"] == "not-done"
    assert rows["P33"].cells["patient_education"] == "missing"


def test_gold_cohort_declined_as_not_applicable_listed(report: AuditReport) -> None:
    assert list(report.declined_not_applicable) == DECLINED_NOT_APPLICABLE
    summaries = {e.element_id: e for e in report.elements}
    assert summaries["pc6_bands_applied"].declined_not_applicable == {"contraindicated": 1}
    assert summaries["preemptive_gabapentinoid"].declined_not_applicable == {}  # a site setting
    assert summaries["patient_education"].declined_not_applicable == {}
    rows = {p.patient_id: p for p in report.patients}
    assert rows["P28"].cells["pc6_bands_applied"] == "n-a-declined"
    assert rows["P03"].cells["preemptive_gabapentinoid"] == "n-a"


def test_gold_cohort_missing_data_limit(report: AuditReport) -> None:
    # EIAS: missing data <= 10 % per element. supervised_exercise_fusion's 3 of 32 is 9.4 %
    # and the 35-patient elements with 3 missing are 8.6 %: within. The catheter's 2 of 3 are
    # done late, not missing. Over it, all small denominators: glycaemic_optimisation (P05,
    # 1 of 1), ponv_prophylaxis_high_risk (P20, 1 of 1), ponv_rescue_vomiting (P18, 1 of 1),
    # nsaid_within_limits (P22, 1 of 2 = 50 %), nicotine_free_reminder (P04, 1 of 1).
    done = report.completeness
    assert done.missing_limit == 0.1
    assert set(done.over_limit) == {"glycaemic_optimisation", "ponv_prophylaxis_high_risk",
                                    "ponv_rescue_vomiting", "nsaid_within_limits",
                                    "nicotine_free_reminder"}


def test_gold_p36_task_completed_late_in_the_ehr() -> None:
    # The compliant episode (41/41 since issue 9's content, 18/18 ERAS items) with the
    # analgesia plan's Task completed at surgery end + 8 h: its window (end - 2 h .. end + 6 h)
    # had closed 2 h before. -> multimodal_analgesia_prescribed done late: 40/41 elements;
    # ERAS item 20 not compliant: 17/18 items; split: 40 done, 1 done late, 0 not done, 0 missing.
    case = p36_analgesia_plan_task_completed_late().case()
    result = case.evaluation.element("multimodal_analgesia_prescribed")
    end = case.evaluation.anchors["surgery_end"]
    assert end is not None
    assert (result.status, result.occurrences[0].done_at) == (Status.DONE_LATE, end + 8 * H)
    (row,) = audit_report(lumbar(), [case], tz=LONDON).patients
    assert (row.compliance.overall, row.compliance.eras) == (Ratio(40, 41), Ratio(17, 18))
    assert row.breakdown == Breakdown(40, 1, 0, 0)
    assert row.cells["multimodal_analgesia_prescribed"] == "done-late"


def test_gold_p37_documented_not_done_is_not_missing_data() -> None:
    # The compliant episode with psychological screening documented as NOT done in the record
    # (the PHQ-9, its proof since issue 9's content, recorded not-done; no GAD-7) instead of
    # done: 40/41 elements, 17/18 ERAS items (item 8; psychology_referral n/a without a score);
    # EIAS "not done", not "missing data": split 40 done, 0 late, 1 not done, 0 missing.
    (row,) = audit_report(lumbar(), [p37_psychological_screening_documented_not_done().case()],
                          tz=LONDON).patients
    assert (row.compliance.overall, row.compliance.eras) == (Ratio(40, 41), Ratio(17, 18))
    assert row.cells["psychological_screening"] == "not-done"
    assert row.breakdown == Breakdown(40, 0, 1, 0)
    assert row.missing == frozenset()


def test_gold_cohort_done_late() -> None:
    late = {(c.facts.patient_id, r.element_id) for c in gold_cohort() for r in c.evaluation.elements
            if r.status is Status.DONE_LATE}
    assert late == set(DONE_LATE.items())
    # P33's post-operative paracetamol is not late pre-emptive paracetamol: the pre-op phase
    # ended at surgery start; likewise the 3-month ODI is not a late baseline.
    p33 = next(c for c in gold_cohort() if c.facts.patient_id == "P33").evaluation
    assert p33.element("preemptive_paracetamol").status is Status.MISSED
    assert p33.element("odi_baseline").status is Status.MISSED


def test_gold_cohort_statuses_every_kind_occurs(report: AuditReport) -> None:
    statuses = {r.status for case in gold_cohort() for r in case.evaluation.elements}
    assert statuses == set(Status) - {Status.CANCELLED}  # a stored action's state, never an element's


def test_gold_cohort_in_hospital_patient(report: AuditReport) -> None:
    p30 = next(c for c in gold_cohort() if c.facts.patient_id == "P30").evaluation
    assert p30.anchors["discharge"] is None
    assert p30.element("rehab_milestone_week_0_2").status is Status.UPCOMING
    assert p30.element("walk_three_times_daily").status is Status.DUE
    assert p30.element("protein_supplementation").status is Status.DUE
    assert p30.element("pc6_bands_removed").status is Status.OVERDUE
    row = next(p for p in report.patients if p.patient_id == "P30")
    assert row.cells["rehab_milestone_week_0_2"] == "excluded"
    assert row.cells["step_goal_week_6"] == "n-a"
    assert row.outcomes is not None and row.outcomes.length_of_stay_days is None


def test_gold_cohort_outcomes_by_compliance_group(report: AuditReport) -> None:
    assert report.outcomes is not None
    high, lower = report.outcomes
    assert (high.patients, lower.patients) == (33, 2)
    # Every discharged stay is POD0 05:00 -> POD4 11:00 = 4.25 days; P30 is still in.
    assert (high.stats["length_of_stay_days"].n, high.stats["length_of_stay_days"].median) == (32, 4.25)
    assert (high.stats["readmitted"].n, high.stats["readmitted"].events) == (32, 1)  # P16
    assert (high.stats["ponv_24h"].n, high.stats["ponv_24h"].events) == (33, 2)  # P17, P18
    assert (high.stats["ponv_72h"].n, high.stats["ponv_72h"].events) == (32, 3)  # + P19 at 30 h
    # Catheters: P09 30 h, P10 27 h 54 min, P11 27 h 56 min.
    catheter = high.stats["catheter_hours"]
    assert (catheter.n, catheter.median) == (3, pytest.approx(27 + 56 / 60))
    assert catheter.mean == pytest.approx((30 + 27.9 + 27 + 56 / 60) / 3)
    # 32 with out of bed 5 h after surgery end, P29 first walking at POD2 09:00 = 44 h.
    assert high.stats["hours_to_mobilisation"].mean == pytest.approx((32 * 5 + 44) / 33)
    # Only P20 had opioids on POD0-3: 4 x 15 MME (the POD4 dose is not counted).
    assert (high.stats["opioid_mme"].n, high.stats["opioid_mme"].mean) == (32, 60 / 32)
    # ODI 48 -> 22; none in the lower group has both scores; P33 has steps, P35 not.
    assert (high.stats["odi_change"].n, high.stats["odi_change"].mean) == (30, -26)
    assert (lower.stats["odi_change"].n, lower.stats["odi_change"].mean) == (0, None)
    assert (lower.stats["daily_steps"].n, lower.stats["daily_steps"].mean) == (1, 4200)


def test_gold_cohort_pain_on_pod1() -> None:
    rows = {p.patient_id: p.outcomes for p in audit_report(
        lumbar(), gold_cohort(), outcomes=load_outcome_definitions(), tz=LONDON).patients}
    # P23's POD1 scores: 2, 2, 6, 3 (reassessment), 2, 2, 2.
    assert rows["P23"] is not None and rows["P23"].pain_pod1_mean == pytest.approx(19 / 7)
    assert rows["P23"].pain_pod1_max == 6
    assert rows["P01"] is not None and (rows["P01"].pain_pod1_mean, rows["P01"].pain_pod1_max) == (2, 2)


def test_gold_cohort_filter_by_variant(report: AuditReport) -> None:
    part = audit_report(lumbar(), gold_cohort(), filters={"procedure_type": "decompression"}, tz=LONDON)
    assert [p.patient_id for p in part.patients] == ["P13", "P14"]
    assert part.compliance.overall == Ratio(41 + 40, 41 + 41)


def test_gold_cohort_drill_down_shows_declines_and_proof() -> None:
    cases = {c.facts.patient_id: c for c in gold_cohort()}
    p02 = {r.element_id: r for r in patient_timeline(lumbar(), cases["P02"])}
    edu = p02["patient_education"]
    assert (edu.status, edu.decline_reason, edu.by) == (Status.DECLINED, "patient-refused", "nurse-1")
    assert edu.evidence == ("Task/P02-patient_education-0",)
    p08 = {r.element_id: r for r in patient_timeline(lumbar(), cases["P08"])}
    abx = p08["antibiotic_prophylaxis"]
    start = cases["P08"].evaluation.anchors["surgery_start"]
    assert (abx.status, abx.done_at, abx.closes) == (Status.DONE, start, start)
    assert abx.evidence == ("P08/antibiotic_prophylaxis_administered/1",)  # the re-timed dose


COUNTED_CELLS = ("done", "done-late", "not-done", "missing")


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_gold_cohort_matrix_csv_agrees(report: AuditReport) -> None:
    rows = {r["patient_id"]: r for r in _csv(matrix_csv(report))}
    assert {pid: (int(r["done"]), int(r["counted"])) for pid, r in rows.items()} == PATIENT_COMPLIANCE
    assert rows["P02"]["patient_education"] == "not-done"
    # declined as contraindicated: not counted, and marked apart from plain not-applicable
    assert rows["P28"]["pc6_bands_applied"] == "n-a-declined"
    assert rows["P03"]["preemptive_gabapentinoid"] == "n-a"   # a site choice, off by default
    assert rows["P01"]["smoking_cessation"] == "n-a"
    assert rows["P30"]["walk_three_times_daily"] == "excluded"  # not yet due
    assert rows["P07"]["antibiotic_prophylaxis"] == "done-late"
    assert rows["P24"]["pain_score_every_4h"] == "missing"
    for element, (done, counted) in ELEMENT_COMPLIANCE.items():
        cells = [r[element] for r in rows.values()]
        assert (cells.count("done"), sum(cells.count(c) for c in COUNTED_CELLS)) == (done, counted)


def test_gold_cohort_summary_csv_agrees(report: AuditReport) -> None:
    rows = _csv(summary_csv(report))
    elements = {r["element"]: (int(r["done"]), int(r["counted"])) for r in rows if r["level"] == "element"}
    assert {k: elements[k] for k in ELEMENT_COMPLIANCE} == ELEMENT_COMPLIANCE
    overall = next(r for r in rows if r["level"] == "overall")
    assert (int(overall["done"]), int(overall["counted"]), overall["percent"]) == (1366, 1429, "95.6")
    assert int(overall["missing"]) == MISSING.done
    split = ("missing", "done_late", "not_done")
    assert tuple(int(overall[k]) for k in split) == (56, 5, 2)  # BREAKDOWN
    by_id = {r["element"]: r for r in rows if r["level"] == "element"}
    catheter = by_id["urinary_catheter_removal"]
    assert tuple(int(catheter[k]) for k in split) == (0, 2, 0)
    assert (catheter["missing_percent"], catheter["missing_over_limit"]) == ("0.0", "no")
    assert by_id["glycaemic_optimisation"]["missing_over_limit"] == "yes"  # 1 of 1
    intra = next(r for r in rows if r["level"] == "phase" and r["phase"] == "intra-op")
    assert tuple(int(intra[k]) for k in split) == (5, 1, 0)


def test_gold_cohort_declines_csv(report: AuditReport) -> None:
    rows = [(r["element"], r["ward"], r["reason"], int(r["patients"]))
            for r in _csv(declines_csv(report))]
    assert rows == [(d.element_id, d.ward, d.reason, d.patients) for d in DECLINED_NOT_APPLICABLE]


# ============================================================ clin-outcomes (issue 9: 1, 4, 9) ===
# The supplement patients P36-P38 (tests/audit/cohort.py, OUTCOMES_PATIENTS), each evaluated at
# AUDIT_NOW: the elements and outcomes their fix changes, worked out by hand in their docstrings.

@pytest.fixture(scope="module")
def outcomes_report() -> AuditReport:
    return audit_report(lumbar(), outcomes_cohort(), outcomes=load_outcome_definitions(), tz=LONDON)


def _row(report: AuditReport, patient: str):  # type: ignore[no-untyped-def]
    return next(p for p in report.patients if p.patient_id == patient)


def _status(patient: str, element: str) -> Status:
    case = next(c for c in outcomes_cohort() if c.facts.patient_id == patient)
    return next(e for e in case.evaluation.elements if e.element_id == element).status


def test_gold_p36_mme_by_route_and_unit(outcomes_report: AuditReport) -> None:
    got = _row(outcomes_report, "P36").outcomes
    assert got is not None
    # 50 mcg IV fentanyl x 0.3 + 10 mg oral oxycodone x 1.5 + 4 mg IV morphine x 3 = 15 + 15 + 12.
    assert (got.opioid_mme, got.opioid_unconverted) == (42.0, 1.0)
    assert got.opioid_unconverted_doses == ("P36/opioid_administered/3",)   # the 'tablet' dose


@pytest.mark.parametrize(("patient", "element", "expected"), [
    ("P37", "ponv_prophylaxis_moderate_risk", Status.MISSED),     # 5-HT3 twice = 1 class of 2
    ("P37", "ponv_prophylaxis_high_risk", Status.NOT_APPLICABLE),
    ("P38", "ponv_prophylaxis_moderate_risk", Status.DONE),        # Apfel 2 without the old plan
    ("P38", "ponv_prophylaxis_high_risk", Status.NOT_APPLICABLE),  # would apply at Apfel 3
    ("P38", "urinary_catheter_removal", Status.NOT_APPLICABLE),    # the 2-year-old catheter
    ("P38", "nsaid_within_limits", Status.DONE),                   # clock from this episode's dose
    ("P38", "nsaid_limit_alert", Status.NOT_APPLICABLE),
])
def test_gold_outcomes_patients_elements(patient: str, element: str, expected: Status) -> None:
    assert _status(patient, element) is expected


def test_gold_p37_antiemetic_without_nausea_is_not_ponv(outcomes_report: AuditReport) -> None:
    got = _row(outcomes_report, "P37").outcomes
    assert got is not None and (got.ponv["ponv_24h"], got.ponv["ponv_72h"]) == (False, False)


def test_gold_p38_episode_scope(outcomes_report: AuditReport) -> None:
    row = _row(outcomes_report, "P38")
    case = next(c for c in outcomes_cohort() if c.facts.patient_id == "P38")
    assert case.evaluation.variables["apfel"] == 2
    assert row.outcomes is not None and row.outcomes.catheter_hours is None
# ======================================================== end clin-outcomes (issue 9: 1, 4, 9) ===


# ------------------------------------------------------------ issue 9: content fixes ---------------
# One patient per content fix (tests/audit/cohort.py, C01-C14), each the compliant episode (41 of
# 41) with one deviation: (done, counted) and the statuses that prove the fix, worked by hand.
CONTENT_CASES: dict[str, tuple[tuple[int, int], dict[str, Status]]] = {
    # NRS 6 at end+21h, paracetamol at +10 min, next score at +3 h: +1 counted, not done. The
    # analgesic is in the 1 h window, the rescore after it and before discharge (POD4): done
    # late (clin-engine), which counts as not done.
    "C01": ((41, 42), {"pain_reassessment_within_1h": Status.DONE_LATE}),
    # 75 years: cap 60 mg/day; 3 x 30 = 90 mg in 24 h -> within-limits missed, alert unanswered.
    "C02": ((41, 43), {"nsaid_within_limits": Status.MISSED, "nsaid_limit_alert": Status.MISSED}),
    # 44054006 (type 2) makes a diabetic: +glycaemic_screening done, -carbohydrate_loading.
    "C03": ((41, 41), {"glycaemic_screening": Status.DONE,
                       "carbohydrate_loading": Status.NOT_APPLICABLE}),
    # Checklist Task completed but no recorded times: fasting not done.
    "C04": ((40, 41), {"preop_fasting": Status.MISSED}),
    # No "none placed" record: no_routine_drain_or_catheter not done (missing data).
    "C05": ((40, 41), {"no_routine_drain_or_catheter": Status.MISSED}),
    # Removal at end+22h only: +urinary_catheter_removal done; no_routine not done (it was placed).
    "C06": ((41, 42), {"urinary_catheter_removal": Status.DONE,
                       "no_routine_drain_or_catheter": Status.MISSED}),
    # Albumin 3.1 then dietitian then 4.0: dietitian referral stays counted and done.
    "C07": ((42, 42), {"dietitian_referral_low_albumin": Status.DONE}),
    # Woman, Hb 12.5 (< 13, Munoz 2017): +anaemia_iron_therapy, no iron -> missed.
    "C08": ((41, 42), {"anaemia_iron_therapy": Status.MISSED}),
    # Vancomycin 90 min before incision: the 120-min element replaces the 60-min one, done.
    "C09": ((41, 41), {"antibiotic_prophylaxis_120min": Status.DONE,
                       "antibiotic_prophylaxis": Status.NOT_APPLICABLE}),
    # PHQ-9 12 (>= 10) with a referral: +psychology_referral done.
    "C10": ((42, 42), {"psychology_referral": Status.DONE}),
    # Long-term opioid use, no acute pain service plan: +opioid_tolerant_plan missed.
    "C11": ((41, 42), {"opioid_tolerant_plan": Status.MISSED}),
    # Discharge opioid for 14 days (> 7) and no taper plan: +1 counted, missed.
    "C12": ((41, 42), {"discharge_opioid_limit_and_taper": Status.MISSED}),
    # NRS 6 and still on opioids at 12 weeks, referred at 13 weeks: +persistent_pain_referral done.
    "C13": ((42, 42), {"persistent_pain_referral": Status.DONE,
                       "persistent_pain_follow_up_3_months": Status.DONE}),
    # Booked and operated as SNOMED 5431005: decompression variant, its physiotherapy at 5 w done.
    "C14": ((41, 41), {"supervised_exercise_decompression": Status.DONE,
                       "supervised_exercise_fusion": Status.NOT_APPLICABLE}),
}


@pytest.mark.parametrize(("patient", "expected"), CONTENT_CASES.items())
def test_gold_content_fix_patient(patient: str, expected: tuple[tuple[int, int],
                                                                 dict[str, Status]]) -> None:
    (done, counted), statuses = expected
    case = next(c for c in content_cohort() if c.facts.patient_id == patient)
    report = audit_report(lumbar(), (case,), tz=LONDON)
    overall = report.patients[0].compliance.overall
    assert (overall.done, overall.counted) == (done, counted)
    got = {element: case.evaluation.element(element).status for element in statuses}
    assert got == statuses


def test_gold_content_laminectomy_is_decompression() -> None:
    case = next(c for c in content_cohort() if c.facts.patient_id == "C14")
    assert case.evaluation.variables["procedure_type"] == "decompression"
