"""Subsumption: a concept bound to a parent code binds the children the table lists."""

from __future__ import annotations

from pathlib import Path

from engine.subsumption import CodeRef, Hierarchy, SubsumptionTable
from engine.terminology import load_terminology

TERMS = Path(__file__).resolve().parents[2] / "pathways" / "terminology"
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
ERAS = "http://eras-engine.org/fhir/CodeSystem/eras"


def _codes(concept_name: str, path: Path = TERMS / "default.yaml") -> set[tuple[str, str]]:
    return {(c.system, c.code) for c in load_terminology(path).concept(concept_name).codings}


def test_diabetes_binds_the_subtypes_clinical_md_names_through_the_table() -> None:
    # clinical.md: 73211009 is the parent; records carry 44054006 (type 2), 46635009 (type 1).
    codes = _codes("diabetes")
    assert {(SCT, "73211009"), (SCT, "44054006"), (SCT, "46635009")} <= codes
    # a type 2 descendant (grandchild of 73211009) binds transitively
    assert (SCT, "81531005") in codes
    assert load_terminology(TERMS / "default.yaml").concepts_for(SCT, "359642000") == ("diabetes",)


def test_current_smoker_binds_every_us_core_current_smoker_value() -> None:
    # clinical.md "Smoking, diabetes and codes": the five current-smoker values.
    wanted = {"449868002", "428041000124106", "428071000124103", "428061000124105", "77176002"}
    assert {code for system, code in _codes("current_smoker") if system == SCT} == wanted
    assert _codes("ex_smoker") == {(SCT, "8517006")}


def test_decompression_codes_bind_decompression_and_the_spine_surgery_anchor() -> None:
    decompression = _codes("lumbar_decompression")
    assert {(SCT, "5431005"), (CPT, "63005"), (CPT, "63030"), (CPT, "63047")} <= decompression
    assert _codes("spine_surgery") == decompression | _codes("spinal_fusion")
    assert (CPT, "63047") not in _codes("spinal_fusion")


def test_a_site_table_adds_children_to_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "site-table.yaml").write_text(
        "table: site\nhierarchies:\n"
        f"  - parent: {{system: \"{CPT}\", code: \"63047\"}}\n"
        "    children: [{system: \"http://local/opcs\", code: V25.2}]\n", encoding="utf-8")
    (tmp_path / "site.yaml").write_text(
        f"terminology: site\nextends: {TERMS / 'default.yaml'}\nsubsumption: [site-table.yaml]\n",
        encoding="utf-8")
    site = load_terminology(tmp_path / "site.yaml")
    # the local code sits below a CPT code that sits below the eras decompression code
    assert set(site.concepts_for("http://local/opcs", "V25.2")) == {
        "lumbar_decompression", "spine_surgery", "spine_surgery_booked"}
    assert (SCT, "44054006") in {(c.system, c.code) for c in site.concept("diabetes").codings}


def test_with_subsumption_keeps_listed_codes_once_and_ignores_cycles() -> None:
    parent, child = CodeRef(system=SCT, code="1"), CodeRef(system=SCT, code="2", display="two")
    table = SubsumptionTable(table="t", hierarchies=(
        Hierarchy(parent=parent, children=(child,)), Hierarchy(parent=child, children=(parent,))))
    assert table.descendants(SCT, "1") == (child,)
    terms = load_terminology(TERMS / "default.yaml")
    again = terms.with_subsumption(terms.subsumption)  # type: ignore[arg-type]
    assert again.concept("diabetes").codings == terms.concept("diabetes").codings
