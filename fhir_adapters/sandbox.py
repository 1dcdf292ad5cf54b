"""Start and stop the in-memory FHIR R4 sandbox server (deploy/fhir-sandbox) for tests and the demo."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import httpx

DEFAULT_SERVER_DIR = Path(__file__).resolve().parents[1] / "deploy" / "fhir-sandbox"
_ENV_THE_SERVER_READS = ("PORT", "FHIR_SEED", "FHIR_BASE", "FHIR_REQUIRE_TOKEN")


class FhirSandboxError(RuntimeError):
    """The sandbox could not be installed, started or reached."""


class FhirSandbox:
    """A Node FHIR R4 server on loopback, run as a child process.

    The store is in memory: ``stop()`` loses every resource, and ``start()`` after it
    serves an empty store (plus the seed bundles) on the same port, as an EHR coming
    back from an outage would. With ``require_token``, every request but ``/metadata``
    (and the loopback-only ``$reset``/``$stats``) needs ``Authorization: Bearer <token>``:
    a protected EHR, for testing clients' auth.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        base_path: str = "/fhir",
        seeds: Iterable[str | Path] = (),
        quiet: bool = True,
        validate: bool = True,
        require_patient: bool = False,
        startup_timeout: float = 30.0,
        server_dir: str | Path = DEFAULT_SERVER_DIR,
        node: str = "node",
        npm: str = "npm",
        require_token: str | None = None,
    ) -> None:
        self._port = port
        self._base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._seeds = [Path(seed).resolve() for seed in seeds]
        self._quiet = quiet
        self._validate = validate
        self._require_patient = require_patient  # refuse searches naming no patient, as EHRs do
        self._startup_timeout = startup_timeout
        self._server_dir = Path(server_dir)
        self._node = node
        self._npm = npm
        self._require_token = require_token
        self._process: subprocess.Popen[str] | None = None
        self._finalizer: weakref.finalize | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._listening = threading.Event()
        self._readers: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The TCP port; fixed after the first start, reused by every restart."""
        if not self._port:
            raise FhirSandboxError("the FHIR sandbox has not been started yet")
        return self._port

    @property
    def base_url(self) -> str:
        """FHIR base URL, e.g. ``http://127.0.0.1:8123/fhir`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}{self._base_path}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (benches read its CPU time)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (on the port of the previous run, if any) and wait until it answers."""
        if self.running:
            return
        self._ensure_installed()
        self._stderr.clear()
        self._listening.clear()
        self._process = subprocess.Popen(
            self._command(),
            cwd=self._server_dir,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._finalizer = weakref.finalize(self, _kill, self._process)
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self._process,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._process,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server; its in-memory data is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _kill(process)
        for reader in self._readers:
            reader.join(timeout=5)

    def reset(self) -> None:
        """Empty the store without restarting (seeds are not reloaded)."""
        response = httpx.post(f"{self.base_url}/$reset", timeout=10)
        if response.status_code != 200:
            raise FhirSandboxError(f"$reset answered {response.status_code}: {response.text}")

    def stderr_tail(self, lines: int = 20) -> str:
        """The server's last stderr lines (request log, errors)."""
        return "\n".join(list(self._stderr)[-lines:])

    def __enter__(self) -> FhirSandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _ENV_THE_SERVER_READS}
        if self._require_token is not None:
            env["FHIR_REQUIRE_TOKEN"] = self._require_token
        return env

    def _command(self) -> list[str]:
        command = [self._node, "server.mjs", "--port", str(self._port), "--base", self._base_path]
        for seed in self._seeds:
            command += ["--seed", str(seed)]
        if self._quiet:
            command.append("--quiet")
        if not self._validate:
            command.append("--no-validate")
        if self._require_patient:
            command.append("--require-patient")
        return command

    def _ensure_installed(self) -> None:
        if not (self._server_dir / "server.mjs").is_file():
            raise FhirSandboxError(f"no FHIR sandbox at {self._server_dir} (server.mjs missing)")
        if shutil.which(self._node) is None:
            raise FhirSandboxError(f"'{self._node}' not found: the FHIR sandbox needs Node.js 20+")
        with _install_lock(self._server_dir):
            if (self._server_dir / "node_modules" / "@medplum" / "fhir-router").is_dir():
                return
            _npm_ci(self._npm, self._server_dir)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        process = self._process
        assert process is not None
        while not self._listening.wait(timeout=0.05):
            if process.poll() is not None:
                self._fail(f"exited with code {process.returncode} before listening")
            if time.monotonic() > deadline:
                self._fail(f"did not start listening within {self._startup_timeout:.0f} s")
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/metadata", timeout=2).status_code == 200:
                    return
            if process.poll() is not None:
                self._fail(f"exited with code {process.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"GET /metadata did not answer within {self._startup_timeout:.0f} s")
            time.sleep(0.05)

    def _fail(self, what: str) -> None:
        self._collect_stderr()
        tail = self.stderr_tail() or "(no stderr output)"
        raise FhirSandboxError(f"FHIR sandbox {what}; stderr tail:\n{tail}")

    def _collect_stderr(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._readers[1].join(timeout=2)

    def _read_stdout(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("LISTENING "):
                self._port = urlsplit(line.split()[1]).port or self._port
                self._listening.set()

    def _read_stderr(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._stderr.append(line.rstrip("\n"))


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _install_lock(server_dir: Path) -> Iterator[None]:
    """Serialise `npm ci` between processes (e.g. parallel test workers)."""
    digest = hashlib.sha256(str(server_dir.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"eras-fhir-sandbox-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _npm_ci(npm: str, server_dir: Path) -> None:
    if shutil.which(npm) is None:
        raise FhirSandboxError(f"node_modules missing in {server_dir} and '{npm}' not found")
    command = [npm, "ci", "--no-audit", "--no-fund"]
    result = subprocess.run(command, cwd=server_dir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise FhirSandboxError(
            f"`{' '.join(command)}` failed in {server_dir} (exit {result.returncode}):\n" + "\n".join(output)
        )
