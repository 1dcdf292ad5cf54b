"""Pseudonymous ids for the audit: a keyed HMAC of the patient reference, episode or resource."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


@dataclass(frozen=True)
class Pseudonymiser:
    """The same reference always gives the same pseudonym under one key; no key, no way back."""

    key: bytes
    prefix: str = "anon"

    def __call__(self, patient_ref: str) -> str:
        digest = hmac.new(self.key, patient_ref.encode(), hashlib.sha256).hexdigest()
        return f"{self.prefix}-{digest[:16]}"


def identity(patient_ref: str) -> str:
    """The reference's id part: what a role allowed to re-identify sees."""
    return patient_ref.split("/", 1)[-1]


def resource_label(label: Callable[[str], str]) -> Callable[[str], str]:
    """`Type/id` -> `Type/<label of it>`: the resource type stays readable, the id is as the label
    allows; anything not shaped like a FHIR reference is labelled whole."""

    def labelled(ref: str) -> str:
        kind, _, rest = ref.partition("/")
        return f"{kind}/{label(ref)}" if rest and RESOURCE_TYPE.fullmatch(kind) else label(ref)

    return labelled
