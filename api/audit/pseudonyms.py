"""Pseudonymous patient ids for the audit: a keyed HMAC of the patient reference."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Pseudonymiser:
    """The same reference always gives the same pseudonym under one key; no key, no way back."""

    key: bytes

    def __call__(self, patient_ref: str) -> str:
        digest = hmac.new(self.key, patient_ref.encode(), hashlib.sha256).hexdigest()
        return f"anon-{digest[:16]}"


def identity(patient_ref: str) -> str:
    """The reference's id part: what a role allowed to re-identify sees."""
    return patient_ref.split("/", 1)[-1]
