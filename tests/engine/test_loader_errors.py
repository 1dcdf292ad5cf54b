"""Every bad pathway fixture fails to load with the file, line, key path and message it declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import InvalidPathway
from engine.loader import load_pathway

DATA = Path(__file__).parent / "data"
TERMS = DATA / "terms.yaml"
EXPECT = re.compile(r"^# expect: (?:(?P<file>[\w.]+):)?(?P<line>\d+): (?P<path>[^:]*): (?P<msg>.+)$")
CASES = sorted(p for p in (DATA / "invalid").glob("*.yaml") if not p.name.startswith("lib_"))


def _expectations(path: Path) -> list[dict[str, str]]:
    found = [m.groupdict() for line in path.read_text().splitlines() if (m := EXPECT.match(line))]
    assert found, f"{path.name} declares no '# expect:' line"
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_load_pathway_invalid_fixture_reports_where_and_what(case: Path) -> None:
    with pytest.raises(InvalidPathway) as info:
        load_pathway(case, TERMS)
    problems = info.value.problems
    for want in _expectations(case):
        file = want["file"] or case.name
        matches = [p for p in problems if Path(p.file).name == file and p.line == int(want["line"])
                   and p.path == want["path"] and want["msg"] in p.message]
        assert matches, f"expected {want} among:\n" + "\n".join(map(str, problems))


def test_load_pathway_invalid_never_half_loads() -> None:
    # The error object carries every problem; nothing usable is returned for a bad file.
    with pytest.raises(InvalidPathway) as info:
        load_pathway(DATA / "invalid" / "typo_key.yaml", TERMS)
    assert len(info.value.problems) >= 2
    assert "typo_key.yaml" in str(info.value)


def test_load_pathway_missing_file_names_it() -> None:
    with pytest.raises(InvalidPathway, match="nowhere.yaml: .*cannot read file"):
        load_pathway(DATA / "nowhere.yaml", TERMS)


def test_yaml_yes_no_on_off_stay_strings() -> None:
    from engine.yamlsource import parse_yaml

    doc = parse_yaml("a: yes\nb: no\nc: on\nd: off\ne: true\n", "x.yaml")
    assert doc.data == {"a": "yes", "b": "no", "c": "on", "d": "off", "e": True}


def test_yaml_duplicate_key_names_line() -> None:
    from engine.yamlsource import parse_yaml

    with pytest.raises(InvalidPathway) as info:
        parse_yaml("id: a\ntitle: x\nid: b\n", "dup.yaml")
    assert str(info.value.problems[0]) == "dup.yaml:3: id: duplicate key"


def test_load_terminology_site_override_of_unknown_concept_fails(tmp_path: Path) -> None:
    from engine.terminology import load_terminology

    site = tmp_path / "site.yaml"
    site.write_text(f"terminology: site\nextends: {TERMS}\nconcepts:\n"
                    "  walkies:\n    add_codings: [{system: local, code: W1}]\n")
    with pytest.raises(InvalidPathway, match="site.yaml:4: concepts.walkies: overrides unknown"):
        load_terminology(site)


def test_load_terminology_site_adds_local_codes(tmp_path: Path) -> None:
    from engine.terminology import load_terminology

    site = tmp_path / "site.yaml"
    site.write_text(f"terminology: site\nextends: {TERMS}\nconcepts:\n"
                    "  pain_score:\n    add_codings: [{system: 'urn:local', code: FS-12}]\n")
    terms = load_terminology(site)
    assert terms.concepts_for("urn:local", "FS-12") == ("pain_score",)
    assert terms.concepts_for("http://loinc.org", "72514-3") == ("pain_score",)
