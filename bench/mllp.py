"""Measure the HL7 v2 listener: messages ACKed per second and ACK p95, against a bare MLLP echo server.

`eras mllp` (parse, route by PID-3 through the sandbox EHR, commit the inbox event, then ACK)
and the echo baseline (frame in, fixed AA out: no parse, no store) each run in their own
process on loopback; the client runs here with C connections, each sending one message at a
time and waiting for its ACK, as MLLP senders do.

Run: .venv/bin/python -m bench.mllp [-n 2000] [--connections 4] [--patients 50]
                [--database postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from fhir_adapters.sandbox import FhirSandbox
from tests.utils.databases import postgres_schema, sqlite_database
from tests.utils.mllp import MRN_AUTHORITY, MRN_SYSTEM, MllpClient, ack_code, message

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 50
_ECHO_ACK = b"\x0bMSH|^~\\&|ECHO||||20260101000000||ACK|1|P|2.5.1\rMSA|AA|1\x1c\r"


@dataclass(frozen=True)
class Result:
    label: str
    count: int
    seconds: float
    latencies: list[float]

    def row(self) -> dict[str, float | int | str]:
        ordered = sorted(self.latencies)
        return {"server": self.label, "messages": self.count,
                "acked_per_s": round(self.count / self.seconds, 1),
                "ack_p50_ms": round(statistics.median(ordered) * 1000, 2),
                "ack_p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2)}


async def _echo_server(port: int) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\x1c\r")
                writer.write(_ECHO_ACK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    print(f"echo listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _start(command: list[str], env: dict[str, str], marker: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:  # type: ignore[union-attr]
        if marker in line:
            return process, int(line.rsplit(":", 1)[1])
    raise SystemExit(f"{command[0]} did not start (exit {process.wait()})")


async def _drive(label: str, port: int, texts: list[str], connections: int) -> Result:
    clients = [await MllpClient.connect("127.0.0.1", port) for _ in range(connections)]
    for text in texts[:WARM_UP]:
        assert ack_code(await clients[0].send(text)) == "AA"
    measured = texts[WARM_UP:]
    latencies: list[float] = []

    async def run(client: MllpClient, share: list[str]) -> None:
        for text in share:
            started = time.perf_counter()
            ack = await client.send(text)
            latencies.append(time.perf_counter() - started)
            if ack_code(ack) != "AA":
                raise SystemExit(f"{label}: not AA: {ack!r}")

    started = time.perf_counter()
    await asyncio.gather(*(run(c, measured[i::connections]) for i, c in enumerate(clients)))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.close()
    return Result(label, len(measured), seconds, latencies)


def _messages(n: int, mrns: list[str]) -> list[str]:
    events = ["A01", "A08", "S12", "R01", "A02", "A03"]
    return [message(events[i % len(events)], uuid.uuid4().hex[:20], mrns[i % len(mrns)])
            for i in range(n + WARM_UP)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                        help="a fresh SQLite file, or a fresh schema on the local PostgreSQL")
    args = parser.parse_args()
    if os.environ.get("BENCH_MLLP_ECHO"):
        asyncio.run(_echo_server(0))
        return
    with tempfile.TemporaryDirectory() as tmp, FhirSandbox() as ehr, ExitStack() as stack:
        db_url = (stack.enter_context(postgres_schema()) if args.database == "postgresql"
                  else stack.enter_context(sqlite_database(Path(tmp))))
        mrns = [f"B{uuid.uuid4().hex[:10].upper()}" for _ in range(args.patients)]
        for mrn in mrns:
            httpx.post(f"{ehr.base_url}/Patient", json={"resourceType": "Patient", "identifier": [
                {"system": MRN_SYSTEM, "value": mrn}]}).raise_for_status()
        authorities = Path(tmp) / "authorities.yaml"
        authorities.write_text(f"{MRN_AUTHORITY}: {MRN_SYSTEM}\n")
        env = os.environ | {"ERAS_DATABASE_URL": db_url,
                            "ERAS_FHIR_BASE_URL": ehr.base_url, "ERAS_LOG_LEVEL": "WARNING",
                            "ERAS_MLLP_AUTHORITY_MAP_FILE": str(authorities)}
        eras = str(Path(sys.executable).with_name("eras"))
        listener, port = _start([eras, "mllp", "--port", "0"], env, "listening on")
        try:
            echo, echo_port = _start([sys.executable, "-m", "bench.mllp"],
                                     env | {"BENCH_MLLP_ECHO": "1"}, "echo listening")
            texts = _messages(args.n, mrns)
            rows = [asyncio.run(_drive("echo (bare MLLP)", echo_port, texts, args.connections)).row(),
                    asyncio.run(_drive("eras mllp", port, texts, args.connections)).row()]
            echo.terminate()
        finally:
            listener.terminate()
    print(json.dumps({"connections": args.connections, "patients": args.patients,
                      "database": args.database, "results": rows},
                     indent=2))


if __name__ == "__main__":
    main()
