"""Codes no concept binds, counted as apply reads them: how a site learns what its terminology misses.

Counted per resource type and `system|code`, once per resource version (an apply re-reads a
patient's record every time, and the count should not grow with polling). Only codes, types
and counts are kept: no patient, resource id or display leaves this module. Cardinality is
bounded twice: at most `max_codes` distinct codes are tracked (later ones count under
`other`), and reports show the `top` most frequent.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.terminology import Terminology
from fhir_adapters.code_survey import unbound_codes

OTHER = "other"


class UnboundCodeCounter(Collector):
    """This process's unbound-code counts; also a Prometheus collector (`eras_unbound_codes`)."""

    def __init__(self, *, top: int = 20, max_codes: int = 1000, remember: int = 100_000) -> None:
        self.top_n, self.max_codes, self.remember = top, max_codes, remember
        self._counts: Counter[tuple[str, str]] = Counter()
        # Digests of (resource version, code) already counted; oldest forgotten first.
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        # Resource versions (meta.versionId) whose codes are all counted, under `_surveyed_with`
        # terminologies: an apply re-reads them all, and surveys only what is new.
        self._surveyed: OrderedDict[str, None] = OrderedDict()
        self._surveyed_with: tuple[Terminology, ...] = ()
        self._lock = threading.Lock()

    def observe(self, terminologies: Sequence[Terminology],
                resources: Iterable[Mapping[str, Any]]) -> None:
        """Count the unbound codes of the resources a patient's apply read."""
        terms = tuple(terminologies)
        with self._lock:
            # Other terminologies bind other codes: survey again (objects held, compared by identity).
            if {id(t) for t in terms} != {id(t) for t in self._surveyed_with}:
                self._surveyed.clear()
                self._surveyed_with = terms
        surveyed = self._surveyed
        for resource in resources:
            stamp = (resource.get("meta") or {}).get("versionId")
            version = f"{resource.get('resourceType')}/{resource.get('id')}/{stamp or ''}"
            if stamp and version in surveyed:  # most of a record, at every apply after the first
                continue
            for row in unbound_codes(terminologies, [resource]):
                self._count(version, row.resource_type, f"{row.system}|{row.code}")
            if stamp:
                with self._lock:
                    self._surveyed[version] = None
                    if len(self._surveyed) > self.remember:
                        self._surveyed.popitem(last=False)

    def _count(self, version: str, resource_type: str, code: str) -> None:
        digest = hashlib.blake2b(f"{version}\0{code}".encode(), digest_size=12).digest()
        with self._lock:
            if digest in self._seen:
                return
            self._seen[digest] = None
            if len(self._seen) > self.remember:
                self._seen.popitem(last=False)
            key = (resource_type, code)
            if key not in self._counts and len(self._counts) >= self.max_codes:
                key = (resource_type, OTHER)
            self._counts[key] += 1

    def top(self) -> list[dict[str, Any]]:
        """The most frequent unbound codes: resource type, `system|code`, resources seen with it."""
        with self._lock:
            ranked = self._counts.most_common()
        return [{"resource_type": rtype, "code": code, "resources": n}
                for (rtype, code), n in ranked[:self.top_n]]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._seen.clear()
            self._surveyed.clear()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "eras_unbound_codes", "Resources read by apply carrying a code no concept binds "
            f"(top {self.top_n}, by resource type and system|code)", labels=["resource_type", "code"])
        for row in self.top():
            family.add_metric([row["resource_type"], row["code"]], row["resources"])
        yield family


UNBOUND_CODES = UnboundCodeCounter()
