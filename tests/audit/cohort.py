"""The gold-standard cohort's builder: a fully compliant lumbar episode, and named deviations from it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.audit import AuditCase
from engine.evaluate import evaluate
from engine.facts import Fact, PatientFacts, TaskState, Value
from engine.loader import load_pathway
from engine.model import Pathway
from engine.terminology import Terminology, load_terminology
from fhir_adapters.facts import concepts_of

LUMBAR = Path(__file__).resolve().parents[2] / "pathways" / "lumbar_fusion.yaml"
SNOMED = "http://snomed.info/sct"
LONDON = ZoneInfo("Europe/London")
# The audit instant: every episode operated on in Nov-Dec 2025 has all its windows closed.
AUDIT_NOW = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
W = timedelta(weeks=1)
MIN = timedelta(minutes=1)


@cache
def lumbar() -> Pathway:
    return load_pathway(LUMBAR)


@cache
def default_terminology() -> Terminology:
    return load_terminology(LUMBAR.parent / "terminology" / "default.yaml")


@dataclass
class Episode:
    """One synthetic patient, built as facts and Task states around a surgery start."""

    patient_id: str
    start: datetime
    sex: str = "male"
    attributes: dict[str, str] = field(default_factory=dict)
    birth: date = date(1962, 5, 1)
    parameters: dict[str, str] = field(default_factory=dict)
    facts: list[Fact] = field(default_factory=list)
    tasks: list[TaskState] = field(default_factory=list)
    serials: dict[str, int] = field(default_factory=dict)
    not_done: list[Fact] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        """Surgery end: every operation lasts 4 h."""
        return self.start + 4 * H

    @property
    def enrolment(self) -> str:
        return f"{self.patient_id}-enr"

    def day(self, n: int, hour: int, minute: int = 0) -> datetime:
        """Local time on post-operative day n (day 0 = the day surgery ends)."""
        local_day = self.end.astimezone(LONDON).date() + timedelta(days=n)
        return datetime.combine(local_day, time(hour, minute), LONDON).astimezone(UTC)

    def add(self, concept: str, when: datetime, value: Value = None, *, end: datetime | None = None,
            **attrs: object) -> Episode:
        # Numbered per concept and never reused, so every record has its own resource id.
        n = self.serials[concept] = self.serials.get(concept, -1) + 1
        self.facts.append(Fact(concept, when, end, value=value, source=f"{self.patient_id}/{concept}/{n}",
                               attrs=attrs))
        return self

    def drop(self, *concepts: str, before: datetime | None = None,
             at: datetime | None = None) -> Episode:
        """Remove facts of these concepts (only those before `before`, or only the one `at`)."""
        def keep(f: Fact) -> bool:
            if f.concept not in concepts or f.time is None:
                return True
            if at is not None:
                return f.time != at
            return before is not None and f.time >= before
        self.facts = [f for f in self.facts if keep(f)]
        return self

    def task(self, element: str, when: datetime, occurrence: int = 0, *, status: str = "completed",
             reason: str | None = None, by: str = "nurse-1") -> Episode:
        key = f"{self.enrolment}:{element}:{occurrence}"
        self.tasks = [t for t in self.tasks if t.action_key != key]
        self.tasks.append(TaskState(key, status, at=when, reason=reason, by=by,
                                    source=f"Task/{self.patient_id}-{element}-{occurrence}"))
        return self

    def decline(self, element: str, reason: str, when: datetime, occurrence: int = 0) -> Episode:
        return self.task(element, when, occurrence, status="cancelled", reason=reason)

    def untask(self, element: str, *occurrences: int) -> Episode:
        keys = {f"{self.enrolment}:{element}:{i}" for i in occurrences}
        self.tasks = [t for t in self.tasks if t.action_key not in keys]
        return self

    def walked(self, day: int, hours: Iterable[int]) -> Episode:
        """Ambulation records on post-operative day `day` at these local hours (replacing that day's)."""
        self.facts = [f for f in self.facts if not (f.concept == "ambulation" and f.time is not None
                                                    and self.day(day, 0) <= f.time < self.day(day + 1, 0))]
        for hour in hours:
            self.add("ambulation", self.day(day, hour))
        return self

    def build(self) -> PatientFacts:
        return PatientFacts(patient_id=self.patient_id, enrolment_id=self.enrolment, sex=self.sex,
                            birth_date=self.birth, enrolled_at=self.start - 10 * W,
                            parameters=dict(self.parameters), facts=tuple(self.facts),
                            tasks=tuple(self.tasks), not_done=tuple(self.not_done))

    def case(self, now: datetime = AUDIT_NOW) -> AuditCase:
        facts = self.build()
        return AuditCase(facts, evaluate(lumbar(), facts, now=now, tz=LONDON), dict(self.attributes))


# ------------------------------------------------------------ the fully compliant episode --------

def booked(ep: Episode) -> None:
    ep.facts.append(Fact("spine_surgery_booked", ep.start, source=f"{ep.patient_id}/booking",
                         recorded=ep.start - 10 * W))


def surgery(ep: Episode, variant: str = "fusion") -> None:
    ep.add("spine_surgery", ep.start, end=ep.end)
    ep.add("spinal_fusion" if variant == "fusion" else "lumbar_decompression", ep.start, end=ep.end)


def stay(ep: Episode, discharged: bool = True) -> None:
    """Admitted 4 h before surgery start, discharged on POD4 at 11:00."""
    ep.add("inpatient_stay", ep.start - 4 * H, end=ep.day(4, 11) if discharged else None)


def pre_admission(ep: Episode) -> None:
    s = ep.start
    ep.add("tobacco_smoking_status", s - 20 * D, "never_smoker")
    ep.add("preop_education_delivered", s - 14 * D)
    ep.add("albumin", s - 10 * D, 4.0).add("vitamin_d", s - 20 * D, 30)
    ep.add("haemoglobin", s - 10 * D, 14.5)
    ep.add("prehabilitation_programme", s - 35 * D)
    ep.add("phq9_total", s - 21 * D, 4).add("gad7_total", s - 21 * D, 3)
    ep.add("preop_opioid_use_reviewed", s - 14 * D)
    ep.add("discharge_plan_documented", s - 14 * D).add("odi_score", s - 14 * D, 48)


def pre_op(ep: Episode) -> None:
    s = ep.start
    # Last clear fluids 2.5 h and last solids 8 h before induction (= surgery start here).
    ep.add("last_clear_fluids", s - 150 * MIN).add("last_solid_food", s - 8 * H)
    ep.add("carbohydrate_drink", s - 150 * MIN).add("mechanical_vte_prophylaxis", s - 30 * MIN)
    ep.add("gabapentinoid_administered", s - H).add("ponv_risk_score", s - 7 * D, 1)
    ep.add("pc6_bands_applied", s - 45 * MIN).add("acetaminophen_administered", s - H, 1000)


def intra_op(ep: Episode) -> None:
    s, e = ep.start, ep.end
    ep.add("tranexamic_acid_administered", s + 5 * MIN).add("body_temperature", e - 10 * MIN, 36.6)
    ep.add("goal_directed_fluid_therapy", s + 30 * MIN).add("no_catheter_or_drain_placed", e)
    ep.add("antibiotic_prophylaxis_administered", s - 30 * MIN)
    ep.add("antiemetic_administered", s + 10 * MIN, antiemetic_class="corticosteroid")
    ep.add("antiemetic_administered", e - 15 * MIN, antiemetic_class="5ht3-antagonist")


def pain_scores(ep: Episode, value: int = 2) -> None:
    """One pain NRS 1 h into each 4-hourly block from surgery end to the end of POD3 (21 blocks)."""
    for i in range(21):
        ep.add("pain_score", ep.end + (4 * i + 1) * H, value)


def paracetamol(ep: Episode) -> None:
    """Three doses in each of the four 24 h blocks after surgery end."""
    for k in range(4):
        for hours in (2, 8, 14):
            ep.add("acetaminophen_administered", ep.end + k * D + hours * H, 1000)


def post_op(ep: Episode) -> None:
    e = ep.end
    ep.add("pc6_bands_checked", e + 20 * MIN).add("pc6_bands_removed", ep.start + 23 * H)
    ep.task("multimodal_analgesia_prescribed", e, by="anaesthetist-1")
    ep.add("nsaid_administered", e + 2 * H, 400)
    ep.add("oral_fluids_started", e + 2 * H).add("out_of_bed", e + 5 * H)
    ep.add("oral_diet_started", e + 19 * H).add("protein_supplement", e + 21 * H)
    pain_scores(ep)
    paracetamol(ep)
    for day in (1, 2, 3):
        ep.walked(day, (9, 13, 17))


def follow_up(ep: Episode) -> None:
    discharge = ep.day(4, 11)
    for element, after in (("rehab_milestone_week_0_2", 1), ("rehab_milestone_week_2_6", 15),
                           ("rehab_milestone_week_6_12", 43), ("rehab_milestone_month_3", 85)):
        ep.task(element, discharge + after * D, by="patient")
    for i in range(6):
        ep.task("step_goal_messages", discharge + (1 + 7 * i) * D, i, by="patient")
    ep.add("daily_steps", ep.end + 6 * W, 4200)
    ep.add("physiotherapy_session", ep.end + 10 * W).add("odi_score", ep.end + 12 * W, 22)
    ep.add("pain_score", ep.end + 12 * W, 2).add("opioid_use_at_follow_up", ep.end + 12 * W, False)


def compliant(patient_id: str, start: datetime, *, sex: str = "male", variant: str = "fusion",
              **attributes: str) -> Episode:
    """An episode where every applicable element is done on time (41 of 41 for a male fusion
    patient who never smoked, is not diabetic nor anaemic and has an Apfel score of 1)."""
    ep = Episode(patient_id, start, sex, {"variant_label": variant, **attributes})
    booked(ep)
    surgery(ep, variant)
    stay(ep)
    for part in (pre_admission, pre_op, intra_op, post_op, follow_up):
        part(ep)
    return ep


PRE_ADMISSION_EVIDENCE = ("preop_education_delivered", "albumin", "vitamin_d", "haemoglobin",
                          "prehabilitation_programme", "phq9_total", "gad7_total",
                          "preop_opioid_use_reviewed", "discharge_plan_documented")
FOLLOW_UP_TASKS = ("rehab_milestone_week_0_2", "rehab_milestone_week_2_6",
                   "rehab_milestone_week_6_12", "rehab_milestone_month_3")


def skip_pre_admission(ep: Episode) -> Episode:
    """None of the 9 counted pre-admission elements done (labs, education, ODI baseline...)."""
    return ep.drop(*PRE_ADMISSION_EVIDENCE).drop("odi_score", before=ep.start)


def lost_to_follow_up(ep: Episode) -> Episode:
    """Nothing after discharge: no messages acknowledged, no physiotherapy, steps, ODI, 3-month
    pain or opioid-use review."""
    for element in FOLLOW_UP_TASKS:
        ep.untask(element, 0)
    ep.untask("step_goal_messages", *range(6))
    ep.drop("daily_steps", "physiotherapy_session", "opioid_use_at_follow_up")
    return ep.drop("odi_score", "pain_score", at=ep.end + 12 * W)


# ------------------------------------------------------------ the 35 patients --------------------

def nov(day: int) -> datetime:
    return datetime(2025, 11, day, 9, 0, tzinfo=UTC)


def dec(day: int) -> datetime:
    return datetime(2025, 12, day, 9, 0, tzinfo=UTC)


def p01_compliant() -> Episode:
    return compliant("P01", nov(3), surgeon="A", ward="W1")


def p02_refused_education() -> Episode:
    ep = compliant("P02", nov(4), surgeon="B", ward="W1").drop("preop_education_delivered")
    return ep.decline("patient_education", "patient-refused", ep.start - 7 * D)


def p03_gabapentinoid_contraindicated() -> Episode:
    ep = compliant("P03", nov(5), surgeon="C", ward="W1").drop("gabapentinoid_administered")
    return ep.decline("preemptive_gabapentinoid", "contraindicated", ep.start - H)


def p04_smoker_reminders_stopped() -> Episode:
    ep = compliant("P04", nov(6), surgeon="A", ward="W2").drop("tobacco_smoking_status")
    ep.add("tobacco_smoking_status", ep.start - 20 * D, "current_smoker")
    ep.add("smoking_cessation_intervention", ep.start - 6 * W)
    discharge = ep.day(4, 11)
    for i in range(3):
        ep.task("nicotine_free_reminder", discharge + (1 + 14 * i) * D, i, by="patient")
    return ep


def p05_diabetic_not_optimised() -> Episode:
    ep = compliant("P05", nov(7), surgeon="B", ward="W2").drop("carbohydrate_drink")
    return ep.add("diabetes", ep.start - 400 * D).add("hba1c", ep.start - 20 * D, 9.1)


def p06_anaemic_iron_given() -> Episode:
    ep = compliant("P06", nov(8), sex="female", surgeon="C", ward="W2").drop("haemoglobin")
    return ep.add("haemoglobin", ep.start - 10 * D, 11.0).add("iron_therapy", ep.start - 7 * W)


def p07_antibiotic_one_minute_late() -> Episode:
    ep = compliant("P07", nov(9), surgeon="A", ward="W1").drop("antibiotic_prophylaxis_administered")
    return ep.add("antibiotic_prophylaxis_administered", ep.start + MIN)


def p08_antibiotic_at_incision() -> Episode:
    ep = compliant("P08", nov(10), surgeon="B", ward="W1").drop("antibiotic_prophylaxis_administered")
    return ep.add("antibiotic_prophylaxis_administered", ep.start)


def p09_catheter_kept_30h() -> Episode:
    ep = compliant("P09", nov(11), surgeon="C", ward="W1")
    return ep.add("urinary_catheter_inserted", ep.start).add("urinary_catheter_removed", ep.start + 30 * H)


def p10_catheter_removed_minute_before_24h() -> Episode:
    ep = compliant("P10", nov(12), surgeon="A", ward="W2").add("urinary_catheter_inserted", nov(12) + 5 * MIN)
    return ep.add("urinary_catheter_removed", ep.end + 24 * H - MIN)


def p11_catheter_removed_minute_after_24h() -> Episode:
    ep = compliant("P11", nov(13), surgeon="B", ward="W2").add("urinary_catheter_inserted", nov(13) + 5 * MIN)
    return ep.add("urinary_catheter_removed", ep.end + 24 * H + MIN)


def p12_walked_enough_on_pod1_only() -> Episode:
    return compliant("P12", nov(14), surgeon="C", ward="W2").walked(2, (10, 15)).walked(3, (11,))


def p13_decompression() -> Episode:
    ep = compliant("P13", nov(15), variant="decompression", surgeon="A", ward="W1")
    return ep.drop("physiotherapy_session").add("physiotherapy_session", ep.end + 5 * W)


def p14_decompression_physio_after_window() -> Episode:
    ep = compliant("P14", nov(16), variant="decompression", surgeon="B", ward="W1")
    return ep.drop("physiotherapy_session").add("physiotherapy_session", ep.end + 11 * W)


def p15_fusion_physio_too_early() -> Episode:
    ep = compliant("P15", nov(17), surgeon="C", ward="W1").drop("physiotherapy_session")
    return ep.add("physiotherapy_session", ep.end + 6 * W)


def p16_readmitted() -> Episode:
    ep = compliant("P16", nov(18), surgeon="A", ward="W2")
    return ep.add("inpatient_stay", ep.day(14, 10), end=ep.day(17, 12))


def p17_ponv_rescued() -> Episode:
    ep = compliant("P17", nov(19), sex="female", surgeon="B", ward="W2")
    ep.add("nausea_score", ep.end + 3 * H, 6)
    return ep.add("antiemetic_administered", ep.end + 200 * MIN, antiemetic_class="dopamine-antagonist")


def p18_vomited_no_rescue() -> Episode:
    ep = compliant("P18", nov(20), surgeon="C", ward="W2")
    return ep.add("vomiting_episode", ep.end + 21 * H)


def p19_nausea_after_24h_rescued() -> Episode:
    ep = compliant("P19", dec(1), surgeon="A", ward="W1").add("nausea_score", dec(1) + 34 * H, 5)
    return ep.add("antiemetic_administered", ep.end + 30 * H + 15 * MIN,
                  antiemetic_class="dopamine-antagonist")


def p20_apfel_4_two_antiemetics_only() -> Episode:
    ep = compliant("P20", dec(2), sex="female", surgeon="B", ward="W1")
    ep.add("ponv_history", ep.start - 700 * D).add("opioid_planned", ep.start - 7 * D)
    # Ondansetron at induction instead of dexamethasone: two 5-HT3 doses are ONE class, so with
    # the PC6 bands that is 2 distinct interventions, short of the 3 Apfel 4 needs (Gan 2020).
    ep.drop("antiemetic_administered").add("antiemetic_administered", ep.start + 10 * MIN,
                                           antiemetic_class="5ht3-antagonist")
    ep.add("antiemetic_administered", ep.end - 15 * MIN, antiemetic_class="5ht3-antagonist")
    for when in (ep.day(0, 18), ep.day(1, 6), ep.day(2, 6), ep.day(3, 20), ep.day(4, 8)):
        ep.add("opioid_administered", when, 10, mme=15.0)
    return ep


def _ketorolac(ep: Episode, dose: int) -> Episode:
    ep.drop("nsaid_administered")
    for hours in (1, 7, 13):
        ep.add("nsaid_administered", ep.end + hours * H, dose)
        ep.add("ketorolac_administered", ep.end + hours * H, dose)
    return ep


def p21_ketorolac_within_limits() -> Episode:
    return _ketorolac(compliant("P21", dec(3), surgeon="C", ward="W1"), 30)


def p22_ketorolac_over_110mg_reviewed() -> Episode:
    ep = _ketorolac(compliant("P22", dec(4), surgeon="A", ward="W2"), 40)
    return ep.task("nsaid_limit_alert", ep.end + 14 * H, by="surgeon-1")


def p23_pain_treated_and_reassessed() -> Episode:
    ep = compliant("P23", dec(5), surgeon="B", ward="W2").drop("pain_score", at=dec(5) + 25 * H)
    ep.add("pain_score", ep.end + 21 * H, 6)
    ep.add("acetaminophen_administered", ep.end + 21 * H + 10 * MIN, 1000)
    return ep.add("pain_score", ep.end + 21 * H + 40 * MIN, 3)


def p24_pain_block_missed() -> Episode:
    return compliant("P24", dec(6), surgeon="C", ward="W2").drop("pain_score", at=dec(6) + 45 * H)


def p25_no_steps_no_odi_follow_up() -> Episode:
    ep = compliant("P25", dec(7), surgeon="A", ward="W1").drop("daily_steps")
    return ep.drop("odi_score", at=ep.end + 12 * W)


def p26_pain_block_declined_asleep() -> Episode:
    ep = compliant("P26", dec(8), surgeon="B", ward="W1").drop("pain_score", at=dec(8) + 17 * H)
    return ep.decline("pain_score_every_4h", "patient-unavailable", ep.end + 14 * H, occurrence=3)


def p27_prehab_by_task_no_psychology() -> Episode:
    ep = compliant("P27", dec(9), surgeon="C", ward="W1").drop("prehabilitation_programme")
    return ep.task("prehabilitation", ep.start - 30 * D, by="physio-1").drop("phq9_total", "gad7_total")


def p28_pc6_contraindicated() -> Episode:
    ep = compliant("P28", dec(10), surgeon="A", ward="W2")
    ep.drop("pc6_bands_applied", "pc6_bands_checked", "pc6_bands_removed")
    return ep.decline("pc6_bands_applied", "contraindicated", ep.start - H)


def p29_first_out_of_bed_on_pod2() -> Episode:
    ep = compliant("P29", dec(11), surgeon="B", ward="W2").drop("out_of_bed")
    return ep.walked(1, ())


def p30_still_in_hospital() -> Episode:
    """Operated the day before the audit (BST): post-discharge elements wait for discharge."""
    start = datetime(2026, 4, 14, 6, 0, tzinfo=UTC)
    ep = Episode("P30", start, attributes={"variant_label": "fusion", "surgeon": "C", "ward": "W1"})
    booked(ep)
    surgery(ep)
    stay(ep, discharged=False)
    for part in (pre_admission, pre_op, intra_op, post_op):
        part(ep)
    ep.drop("protein_supplement", "pc6_bands_removed", "ambulation")
    return ep.walked(1, (8, 11))


def p31_carbohydrate_minute_early() -> Episode:
    ep = compliant("P31", dec(12), surgeon="C", ward="W1").drop("carbohydrate_drink")
    return ep.add("carbohydrate_drink", ep.start - 3 * H - MIN)


def p32_hypothermic() -> Episode:
    ep = compliant("P32", dec(13), surgeon="A", ward="W1").drop("body_temperature")
    return ep.add("body_temperature", ep.end - 10 * MIN, 35.8)


def p33_no_preparation() -> Episode:
    ep = skip_pre_admission(compliant("P33", dec(14), surgeon="B", ward="W2"))
    ep.drop("last_clear_fluids", "last_solid_food", "carbohydrate_drink", "gabapentinoid_administered",
            "ponv_risk_score", "pc6_bands_applied", "pc6_bands_checked", "pc6_bands_removed")
    return ep.drop("acetaminophen_administered", before=ep.start)


def p34_lost_to_follow_up() -> Episode:
    return lost_to_follow_up(compliant("P34", dec(15), surgeon="C", ward="W2"))


def p35_unprepared_and_lost() -> Episode:
    return lost_to_follow_up(skip_pre_admission(compliant("P35", dec(16), surgeon="A", ward="W1")))


# ------------------------------------------------------------ issue 9: one patient per content fix --
# Kept apart from the 35 (ids C01-C14) so the cohort figures above stay comparable.

def octo(day: int) -> datetime:
    return datetime(2025, 10, day, 9, 0, tzinfo=UTC)


def c01_pain_reassessed_at_3h() -> Episode:
    """NRS 6 at end+21h, paracetamol 10 min later, next score only at end+24h (3 h): late."""
    ep = compliant("C01", nov(21)).drop("pain_score", at=nov(21) + 25 * H)
    ep.add("pain_score", ep.end + 21 * H, 6)
    ep.add("acetaminophen_administered", ep.end + 21 * H + 10 * MIN, 1000)
    return ep.add("pain_score", ep.end + 24 * H, 3)


def c02_ketorolac_at_75() -> Episode:
    """75 years old: 3 x 30 mg = 90 mg in the first 24 h is over the 60 mg reduced cap."""
    ep = _ketorolac(compliant("C02", nov(22)), 30)
    ep.birth = date(1950, 6, 1)
    return ep


def c03_type_2_diabetic_by_subtype_code() -> Episode:
    """Condition coded 44054006 (type 2), HbA1c 7.0 %: screened, no carbohydrate drink task."""
    ep = compliant("C03", nov(23)).drop("carbohydrate_drink")
    for concept in concepts_of(default_terminology(), "Condition", [(SNOMED, "44054006")]):
        ep.add(concept, ep.start - 400 * D)
    return ep.add("hba1c", ep.start - 20 * D, 7.0)


def c04_fasting_checklist_without_times() -> Episode:
    """Fasting checklist ticked (Task completed), no last-fluids or last-solids times."""
    ep = compliant("C04", nov(24)).drop("last_clear_fluids", "last_solid_food")
    ep.add("fasting_status_documented", ep.start - 3 * H)
    return ep.task("preop_fasting", ep.start - 3 * H)


def c05_no_catheter_or_drain_record() -> Episode:
    """Nothing recorded about catheters or drains: missing data, not compliance."""
    return compliant("C05", nov(25)).drop("no_catheter_or_drain_placed")


def c06_catheter_removed_at_22h_no_insertion() -> Episode:
    """Only a removal at end+22h: a catheter was in place, removed in time."""
    ep = compliant("C06", nov(26))
    return ep.add("urinary_catheter_removed", ep.end + 22 * H)


def c07_low_albumin_corrected_after_dietitian() -> Episode:
    """Albumin 3.1 at -25 d, dietitian at -20 d, albumin 4.0 at -10 d: stays counted, done."""
    ep = compliant("C07", nov(27))
    return ep.add("albumin", ep.start - 25 * D, 3.1).add("dietitian_review", ep.start - 20 * D)


def c08_woman_hb_12_5_no_iron() -> Episode:
    """Woman with Hb 12.5 g/dL: anaemic before major surgery (Munoz 2017), no iron given."""
    ep = compliant("C08", nov(28), sex="female").drop("haemoglobin")
    return ep.add("haemoglobin", ep.start - 10 * D, 12.5)


def c09_vancomycin_90_min_before_incision() -> Episode:
    ep = compliant("C09", nov(29)).drop("antibiotic_prophylaxis_administered")
    return ep.add("antibiotic_prophylaxis_administered", ep.start - 90 * MIN, start_window_min=120)


def c10_phq9_12_referred() -> Episode:
    ep = compliant("C10", nov(30)).drop("phq9_total")
    ep.add("phq9_total", ep.start - 21 * D, 12)
    return ep.add("psychology_referral", ep.start - 14 * D)


def c11_opioid_tolerant_without_plan() -> Episode:
    ep = compliant("C11", octo(27))
    return ep.add("preop_opioid_use", ep.start - 60 * D)


def c12_discharge_opioid_14_days_no_taper() -> Episode:
    ep = compliant("C12", octo(28))
    return ep.add("discharge_opioid_prescribed", ep.day(4, 9), 14)


def c13_persistent_pain_referred() -> Episode:
    ep = compliant("C13", octo(29))
    ep.drop("pain_score", "opioid_use_at_follow_up", at=ep.end + 12 * W)
    ep.add("pain_score", ep.end + 12 * W, 6).add("opioid_use_at_follow_up", ep.end + 12 * W, True)
    return ep.add("pain_service_referral", ep.end + 13 * W)


def c14_laminectomy_coded() -> Episode:
    """Booked and operated with SNOMED 5431005 (laminectomy) only: the decompression variant."""
    ep = compliant("C14", octo(30), variant="decompression")
    ep.drop("spine_surgery_booked", "spine_surgery", "lumbar_decompression")
    terms = default_terminology()
    for concept in concepts_of(terms, "ServiceRequest", [(SNOMED, "5431005")]):
        ep.facts.append(Fact(concept, ep.start, source="C14/booking", recorded=ep.start - 10 * W))
    for concept in concepts_of(terms, "Procedure", [(SNOMED, "5431005")]):
        ep.add(concept, ep.start, end=ep.end)
    return ep.drop("physiotherapy_session").add("physiotherapy_session", ep.end + 5 * W)


CONTENT_PATIENTS = (
    c01_pain_reassessed_at_3h, c02_ketorolac_at_75, c03_type_2_diabetic_by_subtype_code,
    c04_fasting_checklist_without_times, c05_no_catheter_or_drain_record,
    c06_catheter_removed_at_22h_no_insertion, c07_low_albumin_corrected_after_dietitian,
    c08_woman_hb_12_5_no_iron, c09_vancomycin_90_min_before_incision, c10_phq9_12_referred,
    c11_opioid_tolerant_without_plan, c12_discharge_opioid_14_days_no_taper,
    c13_persistent_pain_referred, c14_laminectomy_coded,
)


@cache
def content_cohort() -> tuple[AuditCase, ...]:
    """The 14 issue-9 episodes evaluated at AUDIT_NOW in Europe/London."""
    return tuple(make().case() for make in CONTENT_PATIENTS)


PATIENTS = (
    p01_compliant, p02_refused_education, p03_gabapentinoid_contraindicated,
    p04_smoker_reminders_stopped, p05_diabetic_not_optimised, p06_anaemic_iron_given,
    p07_antibiotic_one_minute_late, p08_antibiotic_at_incision, p09_catheter_kept_30h,
    p10_catheter_removed_minute_before_24h, p11_catheter_removed_minute_after_24h,
    p12_walked_enough_on_pod1_only, p13_decompression, p14_decompression_physio_after_window,
    p15_fusion_physio_too_early, p16_readmitted, p17_ponv_rescued, p18_vomited_no_rescue,
    p19_nausea_after_24h_rescued, p20_apfel_4_two_antiemetics_only, p21_ketorolac_within_limits,
    p22_ketorolac_over_110mg_reviewed, p23_pain_treated_and_reassessed, p24_pain_block_missed,
    p25_no_steps_no_odi_follow_up, p26_pain_block_declined_asleep, p27_prehab_by_task_no_psychology,
    p28_pc6_contraindicated, p29_first_out_of_bed_on_pod2, p30_still_in_hospital,
    p31_carbohydrate_minute_early, p32_hypothermic, p33_no_preparation, p34_lost_to_follow_up,
    p35_unprepared_and_lost,
)


def p36_analgesia_plan_task_completed_late() -> Episode:
    """The analgesia plan's Task completed in the EHR 8 h after surgery end (window closes 6 h)."""
    ep = compliant("P36", dec(17), surgeon="B", ward="W1")
    return ep.task("multimodal_analgesia_prescribed", ep.end + 8 * H, by="anaesthetist-1")


def p37_psychological_screening_documented_not_done() -> Episode:
    """Screening recorded as not done 3 weeks before surgery: no PHQ-9 or GAD-7 score, the PHQ-9
    (the screening's proof since issue 9's content) documented as not done instead."""
    ep = compliant("P37", dec(18), surgeon="C", ward="W2").drop("phq9_total", "gad7_total")
    ep.not_done.append(Fact("phq9_total", ep.start - 21 * D, status="not-done",
                            source="P37/phq9_total/not-done"))
    return ep


# Patients for issue 9's engine fixes, checked one by one (tests/audit/test_gold_cohort.py),
# outside the 35-patient totals above.
TIMELINESS_PATIENTS = (p36_analgesia_plan_task_completed_late,
                       p37_psychological_screening_documented_not_done)


@cache
def gold_cohort() -> tuple[AuditCase, ...]:
    """The 35 episodes evaluated at AUDIT_NOW in Europe/London."""
    return tuple(make().case() for make in PATIENTS)


# ============================================================ clin-outcomes (issue 9: 1, 4, 9) ===
# Gold patients for the MME, PONV and episode-scope fixes. Kept apart from the 35 (their own
# tuple, OUTCOMES_PATIENTS) so the hand-worked cohort totals above do not move; each is checked
# element by element and outcome by outcome in test_gold_cohort.py's clin-outcomes block.

def opioid(ep: Episode, when: datetime, ingredient: str, route: str | None, dose: float,
           unit: str) -> Episode:
    """An opioid dose as the FHIR adapter records it: MME by ingredient, route and unit, from
    the shipped table (pathways/terminology/default.yaml), or unconverted with the reason."""
    from engine.loader import DEFAULT_TERMINOLOGY
    from engine.mme import convert_dose
    from engine.terminology import load_terminology

    table = load_terminology(DEFAULT_TERMINOLOGY).mme
    assert table is not None
    got = convert_dose(table, ingredient, route, dose, unit)
    attrs = {"mme": got.mme} if got.mme is not None else {"mme_unconverted": got.unconverted}
    return ep.add("opioid_administered", when, dose, **attrs)


def p36_opioids_by_route() -> Episode:
    """POD0 IV fentanyl 50 mcg in recovery (15 MME, not the patch factor's 120), POD1 oral
    oxycodone 10 mg (15), POD2 IV morphine 4 mg (12), POD3 oxycodone charted as 2 'tablet'
    (unconverted): opioid_mme 42, opioid_unconverted 1."""
    ep = compliant("P36", dec(15), surgeon="A", ward="W1")
    opioid(ep, ep.end + 40 * MIN, "4337", "parenteral", 50, "mcg")
    opioid(ep, ep.day(1, 9), "7804", "oral", 10, "mg")
    opioid(ep, ep.day(2, 9), "7052", "parenteral", 4, "mg")
    return opioid(ep, ep.day(3, 9), "7804", "oral", 2, "tablet")


def p37_ponv_one_class_twice() -> Episode:
    """Female (Apfel 2: 2 interventions needed). Ondansetron at induction and at closing (one
    class), PC6 declined as contraindicated: 1 distinct intervention -> moderate-risk
    prophylaxis missed (it counted 2 doses before). Droperidol 2 h after surgery end with no
    nausea record: not PONV (any antiemetic after the end counted before)."""
    ep = compliant("P37", dec(16), sex="female", surgeon="B", ward="W2")
    ep.drop("pc6_bands_applied", "pc6_bands_checked", "pc6_bands_removed")
    ep.decline("pc6_bands_applied", "contraindicated", ep.start - H)
    ep.drop("antiemetic_administered")
    ep.add("antiemetic_administered", ep.start + 10 * MIN, antiemetic_class="5ht3-antagonist")
    ep.add("antiemetic_administered", ep.end - 15 * MIN, antiemetic_class="5ht3-antagonist")
    return ep.add("antiemetic_administered", ep.end + 2 * H, antiemetic_class="dopamine-antagonist")


def p38_earlier_episode_records() -> Episode:
    """Female, never smoked, with records from an operation 2 years before: an opioid
    prescription, a urinary catheter (inserted, never charted removed) and ketorolac. This
    episode: Apfel 2 (female, non-smoker; the old opioid plan is not 'planned'), so the
    moderate-risk element applies and is done; no catheter this stay, so catheter removal is
    not applicable and catheter_hours is None; ketorolac 30 mg at surgery end is this
    episode's first dose, so the limits hold."""
    ep = compliant("P38", dec(17), sex="female", surgeon="C", ward="W1")
    before = ep.start - 730 * D
    ep.add("opioid_planned", before - 2 * D)
    ep.add("urinary_catheter_inserted", before).add("ketorolac_administered", before + 2 * H, 30)
    ep.add("ketorolac_administered", ep.end, 30)
    return ep


OUTCOMES_PATIENTS = (p36_opioids_by_route, p37_ponv_one_class_twice, p38_earlier_episode_records)


@cache
def outcomes_cohort() -> tuple[AuditCase, ...]:
    return tuple(make().case() for make in OUTCOMES_PATIENTS)
# ======================================================== end clin-outcomes (issue 9: 1, 4, 9) ===
