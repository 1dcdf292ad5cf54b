"""Tests for registering pathway versions."""

import pytest
from sqlmodel import Session

from store.errors import PathwayVersionConflict
from store.pathways import (
    content_sha256,
    get_pathway_version,
    latest_pathway_version,
    list_pathway_versions,
    register_pathway_version,
)
from tests.utils.store_factories import T0, create_pathway_version


def test_register_pathway_version_new_stores_content_and_hash(db: Session) -> None:
    row, created = register_pathway_version(
        session=db,
        pathway_id="lumbar-fusion-x",
        version=1,
        content="id: x\n",
        title="Lumbar fusion",
        at=T0,
    )

    assert created
    stored = get_pathway_version(session=db, pathway_id="lumbar-fusion-x", version=1)
    assert stored is not None and stored.id == row.id
    assert (stored.content, stored.sha256, stored.loaded_at) == (
        "id: x\n",
        content_sha256("id: x\n"),
        T0,
    )


def test_register_pathway_version_same_content_is_a_noop(db: Session) -> None:
    first = create_pathway_version(session=db)

    again, created = register_pathway_version(
        session=db,
        pathway_id=first.pathway_id,
        version=1,
        content=first.content,
        title="renamed",
        at=T0,
    )

    assert not created
    assert (again.id, again.title) == (first.id, first.title)


def test_register_pathway_version_changed_content_conflicts(db: Session) -> None:
    first = create_pathway_version(session=db)

    with pytest.raises(PathwayVersionConflict) as raised:
        register_pathway_version(
            session=db,
            pathway_id=first.pathway_id,
            version=1,
            content=first.content + "# edit",
            title=first.title,
            at=T0,
        )

    assert (raised.value.pathway_id, raised.value.version) == (first.pathway_id, 1)
    assert raised.value.stored_sha256 == first.sha256
    assert "bump its version" in str(raised.value)


def test_register_pathway_version_changed_content_with_new_version_is_stored(db: Session) -> None:
    first = create_pathway_version(session=db)

    second = create_pathway_version(
        session=db, pathway_id=first.pathway_id, version=2, content=first.content + "# edit"
    )

    assert latest_pathway_version(session=db, pathway_id=first.pathway_id) == second
    versions = list_pathway_versions(session=db, pathway_id=first.pathway_id)
    assert [v.version for v in versions] == [1, 2]


def test_get_pathway_version_unknown_is_none(db: Session) -> None:
    assert get_pathway_version(session=db, pathway_id="none", version=1) is None
