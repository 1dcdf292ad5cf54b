"""Nothing is lost when the listener process is killed mid-stream: `eras mllp` SIGKILLed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from fhir_adapters.sandbox import FhirSandbox
from store.models import InboxEvent
from tests.flows.test_mllp import new_control_id, new_mrn, write_authority_map
from tests.utils.mllp import MRN_SYSTEM, MllpClient, ack_code, message
from tests.utils.notifications import clear_intake_tables

ERAS = Path(sys.executable).with_name("eras")
MESSAGES = 60
KILL_AFTER = 20  # ACKs received before the listener is killed


class Listener:
    """`eras mllp` as a child process, on a fixed port across restarts."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.port, self.process = env, 0, None  # type: ignore[var-annotated]

    def start(self) -> None:
        self.process = subprocess.Popen([str(ERAS), "mllp", "--port", str(self.port)], env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.process.stdout:  # type: ignore[union-attr]
            if line.startswith("eras mllp: listening on"):
                self.port = int(line.rsplit(":", 1)[1])
                return
        raise AssertionError(f"eras mllp did not start (exit {self.process.wait()})")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def listener(db_url: str, db_engine: Engine, fhir_sandbox: FhirSandbox, tmp_path: Path) -> Iterator[Listener]:
    clear_intake_tables(db_engine)
    env = os.environ | {"ERAS_DATABASE_URL": db_url, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
                        "ERAS_MLLP_AUTHORITY_MAP_FILE": str(write_authority_map(tmp_path)),
                        "ERAS_LOG_LEVEL": "WARNING"}
    process = Listener(env)
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()
    clear_intake_tables(db_engine)


async def send_until_acked(listener: Listener, text: str, client: MllpClient | None,
                           sends: list[int]) -> tuple[str, MllpClient]:
    """What an interface engine does: re-send an un-ACKed message, reconnecting as needed."""
    for _ in range(300):
        sends.append(1)
        try:
            if client is None:
                client = await MllpClient.connect("127.0.0.1", listener.port)
            return await client.send(text, timeout=10), client
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            client = None
            await asyncio.sleep(0.1)
    raise AssertionError("the listener never came back")


async def test_mllp_killed_mid_stream_loses_nothing_and_stores_each_message_once(
        listener: Listener, db_engine: Engine, fhir_sandbox: FhirSandbox) -> None:
    mrn = new_mrn()
    httpx.post(f"{fhir_sandbox.base_url}/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": mrn}]}).raise_for_status()
    ids = [new_control_id() for _ in range(MESSAGES)]
    acked: list[str] = []
    killed = asyncio.Event()

    async def kill_and_restart() -> None:
        while len(acked) < KILL_AFTER:
            await asyncio.sleep(0.005)
        listener.kill()  # the client is mid-stream: a message is in flight or about to be
        killed.set()
        await asyncio.to_thread(listener.start)

    restarter = asyncio.create_task(kill_and_restart())
    client: MllpClient | None = None
    sends: list[int] = []
    for control_id in ids:
        ack, client = await send_until_acked(listener, message("A08", control_id, mrn), client, sends)
        assert ack_code(ack) == "AA"
        acked.append(control_id)
    await restarter
    assert client is not None
    await client.close()
    assert killed.is_set() and len(sends) > MESSAGES  # the kill cost at least one re-send
    with Session(db_engine) as session:
        keys = [f"v2:EPIC^ROYALHOSP:{c}" for c in ids]
        count = session.exec(select(func.count()).where(col(InboxEvent.dedup_key).in_(keys))).one()
    assert count == MESSAGES  # every message stored, each once (the dedup key is unique)
