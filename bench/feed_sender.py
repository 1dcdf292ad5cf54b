"""A cheap sender for bench/hospital_feed.py: pre-built HTTP/1.1 requests over kept-alive connections,
in a process of its own.

Sent from the bench's own event loop through httpx, 200 notifications/s cost the sender most of a
core on a 2-core machine: it offered about half the rate asked for, and its CPU stole from the
server it measured. Here every request is built before the clock starts (head and body, bytes),
written on one of a few kept-alive connections and its answer read by Content-Length; the process
reports what it sent, what failed, over what time, and its own CPU.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

CONNECTIONS = 64  # a hospital's senders in parallel: enough that acks waiting on a commit do not cap the rate


@dataclass(frozen=True)
class Sent:
    """What the sender did: requests answered 200, refused or failed, seconds and CPU spent."""

    acked: int
    failed: int
    seconds: float  # from the first send to the last answer
    cpu_seconds: float


def request_bytes(url: str, headers: dict[str, str], body: bytes) -> bytes:
    """The whole POST, head and body, as it goes on the wire (Connection: keep-alive)."""
    parts = urlsplit(url)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    sizes = [int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")]
    await reader.readexactly(sizes[0] if sizes else 0)
    return int(lines[0].split(" ", 2)[1])


async def _send(url: str, schedule: list[tuple[float, bytes]], control: Connection) -> Sent:
    parts = urlsplit(url)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    acked = failed = 0
    last = 0.0

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal acked, failed, last
        while (request := await queue.get()) is not None:
            writer.write(request)
            if await _answer(reader) == 200:
                acked += 1
            else:
                failed += 1
            last = time.perf_counter()
        writer.close()

    streams = [await asyncio.open_connection(parts.hostname, parts.port) for _ in range(CONNECTIONS)]
    control.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, control.recv)  # "go"
    cpu, started = time.process_time(), time.perf_counter()
    workers = [asyncio.create_task(connection(*stream)) for stream in streams]
    for at, request in schedule:
        await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
        queue.put_nowait(request)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return Sent(acked, failed, max(last - started, 0.0), time.process_time() - cpu)


def _main(url: str, schedule: list[tuple[float, bytes]], control: Connection) -> None:
    control.send(asyncio.run(_send(url, schedule, control)))


class Sender:
    """The sender process for one schedule of (seconds from the start, request bytes)."""

    def __init__(self, url: str, schedule: list[tuple[float, bytes]]) -> None:
        self._control, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_main, args=(url, schedule, child), daemon=True)

    async def start(self) -> None:
        """Start it and wait until its connections are open; sending starts at once after."""
        self._process.start()
        await asyncio.to_thread(self._control.recv)  # "ready"
        self._control.send("go")

    async def result(self) -> Sent:
        sent: Sent = await asyncio.to_thread(self._control.recv)
        await asyncio.to_thread(self._process.join, 10)
        return sent
