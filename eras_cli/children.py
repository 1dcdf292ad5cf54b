"""Ending the child processes a stopping `eras serve` still has (none may outlive it).

Prefect's in-process server runs as a child; Prefect stops it at exit, but loses one whose start
timed out (it starts another and forgets the first). So the serving process ends its own children
last: SIGTERM, a grace period, then SIGKILL, each reaped. Linux (`/proc`); elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


def own_children() -> list[int]:
    """This process's children now."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(stat.parent.name))
    return found


def end_children(grace_seconds: float = 5.0) -> None:
    """SIGTERM every child, SIGKILL those still running after `grace_seconds`; reap them all."""
    pending = own_children()
    if pending:
        log.info("stopping %d child process(es) left at shutdown", len(pending))
    _signal(pending, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if not _reaped(pid)]
        time.sleep(0.05)
    _signal(pending, signal.SIGKILL)
    for pid in pending:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # already reaped (by its Popen)
        return True
