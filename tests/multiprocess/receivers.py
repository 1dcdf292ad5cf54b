"""What the distributed processes talk to besides the EHR: a pager webhook that records every
delivery with its headers, and the simulated clock every process reads (ERAS_CLOCK_FILE)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Page:
    """One POST the webhook received."""

    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]


class WebhookReceiver:
    """A pager integration on loopback: answers 200 to every POST and keeps it."""

    def __init__(self) -> None:
        self.pages: list[Page] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                with receiver._lock:
                    receiver.pages.append(Page({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:  # quiet
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/page"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def received(self) -> list[Page]:
        with self._lock:
            return list(self.pages)

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


class ClockFile:
    """The instant every engine process reads as "now" (the demo's simulation clock)."""

    def __init__(self, path: Path, at: datetime) -> None:
        self.path = path
        self.set(at)

    def set(self, at: datetime) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(at.isoformat(), encoding="utf-8")
        tmp.replace(self.path)  # atomic: a reader never sees half an instant

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text(encoding="utf-8").strip())

    def advance(self, by: timedelta) -> datetime:
        self.set(self.now() + by)
        return self.now()
