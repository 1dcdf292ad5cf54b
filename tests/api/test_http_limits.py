"""`eras serve`'s HTTP server holds no connection for a client that stalls: a half-sent request head
is closed, a half-sent notification body gets 408, a slow client never blocks another."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.server import server
from flows.settings import HttpSettings
from tests.api.conftest import api_app
from tests.utils.loopback import free_port

# keep_alive_seconds: after its 408 the half-sent body's connection is idle, and the server closes
# it once the keep-alive ends (5 s by default, most of the 408 test's time); 1 s shows the same close.
LIMITS = HttpSettings(head_seconds=0.5, body_seconds=0.5, keep_alive_seconds=1)


@pytest.fixture
def base(sqlite_url: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    app = api_app(sqlite_url, http=LIMITS)
    running = server(app, "127.0.0.1", port, LIMITS)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", port
    running.should_exit = True
    thread.join(timeout=10)


def _stalled(port: int, sent: bytes) -> bytes:
    """What the server answers a client that sends `sent` and then nothing, until it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)  # a safety net only: the server closes long before
        sock.sendall(sent)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_half_sent_request_head_is_closed_and_others_are_served(base: tuple[str, int]) -> None:
    url, port = base
    result: dict[str, bytes] = {}
    stalled = threading.Thread(target=lambda: result.update(answer=_stalled(port, b"GET /heal")))
    stalled.start()
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # served beside the stalled one
    stalled.join(timeout=30)
    assert not stalled.is_alive() and result["answer"] == b""  # closed without an answer


def test_half_sent_notification_body_gets_408(base: tuple[str, int]) -> None:
    _url, port = base
    head = (b"POST /fhir/notifications/sub-a HTTP/1.1\r\nHost: eras.test\r\n"
            b"Authorization: Bearer token-a\r\nContent-Type: application/fhir+json\r\n"
            b"Content-Length: 400\r\n\r\n")
    answer = _stalled(port, head + b'{"resourceType": "Bundle", ')
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":"timeout"' in answer
