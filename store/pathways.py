"""Registered pathway versions: the exact file content every enrolment ran against."""

import hashlib
from datetime import datetime

from sqlmodel import Session, col, select

from store.db import add_unless_exists
from store.errors import PathwayVersionConflict
from store.models import PathwayVersion
from store.types import as_utc


def content_sha256(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def register_pathway_version(
    *, session: Session, pathway_id: str, version: int, content: str, title: str, at: datetime
) -> tuple[PathwayVersion, bool]:
    """Store a pathway file's content under (id, version); True when it was new.

    Registering the same content again is a no-op; different content under a registered
    (id, version) raises PathwayVersionConflict, because enrolments refer to it.
    """
    sha256 = content_sha256(content)
    row = PathwayVersion(
        pathway_id=pathway_id,
        version=version,
        sha256=sha256,
        content=content,
        title=title,
        loaded_at=as_utc(at),
    )
    stored, created = add_unless_exists(
        session=session,
        row=row,
        find_existing=lambda: get_pathway_version(
            session=session, pathway_id=pathway_id, version=version
        ),
    )
    if stored.sha256 != sha256:
        raise PathwayVersionConflict(
            pathway_id=pathway_id, version=version, stored_sha256=stored.sha256, new_sha256=sha256
        )
    return stored, created


def get_pathway_version(
    *, session: Session, pathway_id: str, version: int
) -> PathwayVersion | None:
    statement = select(PathwayVersion).where(
        PathwayVersion.pathway_id == pathway_id, PathwayVersion.version == version
    )
    return session.exec(statement).first()


def latest_pathway_version(*, session: Session, pathway_id: str) -> PathwayVersion | None:
    """The highest registered version of a pathway."""
    statement = (
        select(PathwayVersion)
        .where(PathwayVersion.pathway_id == pathway_id)
        .order_by(col(PathwayVersion.version).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def list_pathway_versions(
    *, session: Session, pathway_id: str | None = None
) -> list[PathwayVersion]:
    statement = select(PathwayVersion).order_by(
        col(PathwayVersion.pathway_id), col(PathwayVersion.version)
    )
    if pathway_id is not None:
        statement = statement.where(PathwayVersion.pathway_id == pathway_id)
    return list(session.exec(statement))
