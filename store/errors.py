"""Errors raised by the store, carrying the fields a caller needs to act on them."""


class StoreError(Exception):
    """Root of the store's errors."""


class PathwayVersionConflict(StoreError):
    """A pathway (id, version) is already registered with different content."""

    def __init__(self, *, pathway_id: str, version: int, stored_sha256: str, new_sha256: str):
        self.pathway_id = pathway_id
        self.version = version
        self.stored_sha256 = stored_sha256
        self.new_sha256 = new_sha256
        super().__init__(
            f"pathway {pathway_id!r} version {version} is already registered with different "
            f"content (stored sha256 {stored_sha256[:12]}, new {new_sha256[:12]}); "
            "a changed pathway file must bump its version"
        )


class EnrolmentNotFound(StoreError):
    """No enrolment has this id."""

    def __init__(self, enrolment_id: str):
        self.enrolment_id = enrolment_id
        super().__init__(f"no enrolment with id {enrolment_id!r}")


class ActionNotFound(StoreError):
    """No planned action has this key."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"no planned action with key {key!r}")
