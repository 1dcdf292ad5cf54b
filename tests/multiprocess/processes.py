"""Real OS processes for the distributed tests and the bench: API replicas, workers, a Prefect
server on PostgreSQL, each with its own log file and a free loopback port.

Every process is started with `start_new_session`, so a signal reaches it (and, on stop, its
children: a Prefect flow-run subprocess, uvicorn's server) and never the test runner.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.db import make_engine
from tests.utils.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


class ProcessFailed(RuntimeError):
    """A process exited or did not become ready; the message carries its log's tail."""


@dataclass
class Proc:
    """One child process and its log (stdout and stderr together)."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_after: float | None = None  # seconds from start to ready

    def start(self) -> Proc:
        self.started_at = time.perf_counter()
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, env=dict(self.env), cwd=ROOT, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text_ = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text_.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `ready` until true; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError, OSError):
                if ready():
                    self.ready_after = time.perf_counter() - self.started_at
                    return self.ready_after
            if not self.alive:
                raise ProcessFailed(f"{self.name} exited ({self.popen and self.popen.returncode}) "
                                    f"before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name}: no {what} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):  # children left behind (flow runs)
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        return self.popen.returncode


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2).status_code == 200


@dataclass
class Fleet:
    """The processes of one scenario, stopped together (in reverse start order)."""

    directory: Path
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, argv, env, self.directory / f"{name}.log").start()
        self.procs.append(proc)
        return proc

    def api(self, name: str, env: Mapping[str, str]) -> tuple[Proc, str]:
        """An API replica: `uvicorn --factory api.main:create_app`, the README's recipe."""
        port = free_port()
        proc = self.spawn(name, [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env)
        url = f"http://127.0.0.1:{port}"
        proc.wait_until(http_ok(f"{url}/healthz"), 60, "/healthz")
        return proc, url

    def worker(self, name: str, env: Mapping[str, str]) -> Proc:
        """`eras worker`: the drain loop here, tick/reminders served to the Prefect server."""
        return self.spawn(name, [sys.executable, "-m", "eras_cli.main", "worker"], env)

    def prefect_server(self, database_url: str, home: Path) -> tuple[Proc, str]:
        """`prefect server start` on PostgreSQL (no UI, no telemetry); returns it and its API URL."""
        port = free_port()
        env = {**os.environ, "PREFECT_HOME": str(home),
               "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
               "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
               "PREFECT_LOGGING_LEVEL": "WARNING"}
        env.pop("PREFECT_API_URL", None)
        proc = self.spawn("prefect-server", [sys.executable, "-m", "prefect", "server", "start",
                                             "--host", "127.0.0.1", "--port", str(port)], env)
        api = f"http://127.0.0.1:{port}/api"
        proc.wait_until(http_ok(f"{api}/health"), 120, "/api/health")
        return proc, api

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database (for the Prefect server), dropped after; yields its asyncpg URL."""
    name = f"eras_prefect_{secrets.token_hex(4)}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server_url).set(drivername="postgresql+asyncpg", database=name, query={})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
