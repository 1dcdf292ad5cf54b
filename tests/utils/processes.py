"""Run a server as a real child process for a test: start, wait for /healthz, stop it cleanly."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx


@contextlib.contextmanager
def server_process(command: list[str], *, base: str, cwd: Path, env: Mapping[str, str],
                   timeout: float = 90) -> Iterator[subprocess.Popen[str]]:
    """`command` started in `cwd` with `env` (no ERAS_* from the caller); yields once /healthz is 200."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ERAS_")} | dict(env)
    process = subprocess.Popen(command, cwd=cwd, env=clean, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.communicate()[0]
                code = process.returncode
                raise AssertionError(f"{command[0]} did not start (exit {code}):\n{output[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()



def descendants(pid: int) -> set[int]:
    """The ids of every process below `pid` now (children, their children...), as `ps` lists them."""
    listing = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True)
    pairs = (line.split() for line in listing.stdout.splitlines())
    parents = {int(child): int(parent) for child, parent in pairs}
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return state.strip() != "" and not state.strip().startswith("Z")
