"""A plan's digests change with what decides results, and only there: an element's own change
moves its digest alone; what every element shares (anchors, terminology, zone) moves the shared
one; a version number or a comment in the file moves nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.fingerprint import PlanDigest, _zone_rules, plan_digest
from engine.loader import load_pathway

ROOT = Path(__file__).resolve().parents[2]
LUMBAR = ROOT / "pathways" / "lumbar_fusion.yaml"
LONDON = ZoneInfo("Europe/London")
CATHETER = ('urinary_catheter_removed.exists()"\n'
            "    window: {anchor: surgery_end, opens: -12h, due: 18h, closes: 24h}")
SURGERY_END = "surgery_end: {concept: spine_surgery, at: end,"


def _digest(tmp_path: Path, edit: Callable[[str], str], terminology: Path | None = None,
            tz: ZoneInfo = LONDON) -> PlanDigest:
    directory = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    (directory / "library").symlink_to(LUMBAR.parent / "library")
    path = directory / LUMBAR.name
    path.write_text(edit(LUMBAR.read_text()))
    return plan_digest(load_pathway(path, terminology), tz)


def _one(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)
    return edit


@pytest.fixture
def v1(tmp_path: Path) -> PlanDigest:
    return _digest(tmp_path, lambda t: t)


def test_digest_same_file_same_digest(tmp_path: Path, v1: PlanDigest) -> None:
    assert _digest(tmp_path, lambda t: t) == v1
    assert len(v1.elements) > 60 and v1.changed(v1) == frozenset()


def test_digest_version_and_comments_change_nothing(tmp_path: Path, v1: PlanDigest) -> None:
    edit = _one("\nversion: 1\n", "\nversion: 7\n# a comment\n")
    assert _digest(tmp_path, edit) == v1


def test_digest_one_window_changes_that_element_only(tmp_path: Path, v1: PlanDigest) -> None:
    edit = _one(CATHETER, CATHETER.replace("closes: 24h", "closes: 48h"))
    v2 = _digest(tmp_path, edit)
    assert v2.shared == v1.shared and v2.digest != v1.digest
    assert v2.changed(v1) == {"urinary_catheter_removal"}


def test_digest_removed_element_is_changed(tmp_path: Path, v1: PlanDigest) -> None:
    def edit(text: str) -> str:
        start = text.index("  - id: protein_supplementation\n")
        return text[:start] + text[text.index("  - id: discharge_opioid_limit_and_taper\n"):]
    assert _digest(tmp_path, edit).changed(v1) == {"protein_supplementation"}


@pytest.mark.parametrize("edit", [
    _one("look_back: 90d", "look_back: 60d"),  # episode scope
    _one(SURGERY_END, SURGERY_END.replace("at: end", "at: start")),
    _one("  eras_items:\n", "  high_compliance: 0.8\n  eras_items:\n"),  # audit settings
], ids=["episode scope", "anchor", "audit"])
def test_digest_shared_change_changes_every_element(tmp_path: Path, v1: PlanDigest,
                                                     edit: Callable[[str], str]) -> None:
    v2 = _digest(tmp_path, edit)
    assert v2.shared != v1.shared and v2.changed(v1) is None


def test_digest_terminology_and_zone_are_shared(tmp_path: Path, v1: PlanDigest) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"terminology: site_test\nextends: {LUMBAR.parent / 'terminology' / 'default.yaml'}\n"
                    "concepts:\n  urinary_catheter_removed:\n    add_codings:\n"
                    "      - {system: 'http://example.org/local', code: CATH-OUT}\n")
    assert _digest(tmp_path, lambda t: t, terminology=site).changed(v1) is None
    assert _digest(tmp_path, lambda t: t, tz=ZoneInfo("Europe/Paris")).changed(v1) is None


def test_digest_reads_the_zone_rules() -> None:
    """New time zone rules (a tzdata update) move local days: the zone's rules are in the digest."""
    assert _zone_rules(LONDON).startswith(b"TZif")
    assert _zone_rules(UTC) == b""  # a fixed zone has no rules to change
