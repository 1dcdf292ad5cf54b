"""Deliver reminders and escalations to people: channels routed per role and ward, recorded.

The routes are configuration (a YAML/JSON file named by ERAS_DELIVERY_ROUTES_FILE):

    routes:
      - role: charge_nurse          # who
        ward: "*"                   # which ward ("*" = any)
        channels:
          - {type: webhook, url: "https://pager.hospital/eras", secret_env: ERAS_PAGER_SECRET}
          - {type: email, host: smtp.hospital, port: 25, sender: eras@hospital, to: [cn@hospital]}
          - {type: ehr}             # a Communication in the EHR

Secrets are read from the environment variables the file names, never from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from fhir_adapters.client import FhirClient
from flows.channels import Channel, EhrChannel, EmailChannel, Message, Routing, WebhookChannel, deliver
from flows.reminders import Deliver, Notice
from store.db import session_scope
from store.models import DeliveryRecord

Clock = Any


def _channel(spec: Mapping[str, Any], ehr: FhirClient | None, where: str) -> Channel:
    kind = spec.get("type")
    if kind == "webhook":
        secret = os.environ.get(str(spec.get("secret_env", "")), "")
        if not secret:
            raise ValueError(f"{where}: webhook needs secret_env naming a set environment variable")
        return WebhookChannel(url=str(spec["url"]), secret=secret.encode())
    if kind == "email":
        return EmailChannel(host=str(spec["host"]), port=int(spec.get("port", 25)),
                            sender=str(spec["sender"]), recipients=list(spec["to"]))
    if kind == "ehr" and ehr is not None:
        return EhrChannel(fhir=ehr)
    raise ValueError(f"{where}: unknown channel type {kind!r} (webhook, email or ehr)")


def load_routing(path: Path, *, ehr: FhirClient | None) -> Routing:
    """The routes file as a Routing; errors name the file and the route."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    routes: dict[tuple[str, str], Sequence[Channel]] = {}
    for i, route in enumerate(data.get("routes", [])):
        where = f"{path}: routes[{i}]"
        if "role" not in route or not route.get("channels"):
            raise ValueError(f"{where}: a route needs role and channels")
        routes[(str(route["role"]), str(route.get("ward", "*")))] = [
            _channel(spec, ehr, f"{where}.channels[{j}]") for j, spec in enumerate(route["channels"])]
    return Routing(routes)


def delivering(routing: Routing, db: Any, clock: Clock) -> Deliver:
    """A `deliver` hook for `remind_once`: every notice to its role's channels, then recorded."""
    async def send(notices: list[Notice]) -> None:
        records = []
        for n in notices:
            message = Message(kind=n.kind, role=n.role, ward=n.ward or "", action_key=n.action_key,
                              title=n.title, patient_ref=f"Patient/{n.patient_id}", level=n.level,
                              idempotency_key=n.idempotency_key)
            for d in await deliver(message, routing.channels(n.role, n.ward or "")):
                records.append(DeliveryRecord(action_key=n.action_key, kind=n.kind, level=n.level,
                                              role=n.role, channel=d.channel, ok=d.ok,
                                              attempts=d.attempts, error=d.error, at=clock()))
        if records:
            with session_scope(db) as session:
                session.add_all(records)
    return send


def deliveries(db: Any, *, since: datetime | None = None) -> list[DeliveryRecord]:
    from sqlmodel import col, select

    with session_scope(db) as session:
        query = select(DeliveryRecord).order_by(col(DeliveryRecord.id))
        if since is not None:
            query = query.where(col(DeliveryRecord.at) >= since)
        return list(session.exec(query))
