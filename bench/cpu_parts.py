"""CPU time by part of the code: named functions wrapped with a timer, each part's own time
(its nested parts' taken out), so the parts add up to the whole. For benches that run one unit
of work at a time (an awaited part counts only its own task's work when nothing else runs
meanwhile). Each thread times its own parts (store work run on a runtime's threads, PostgreSQL).
Used by bench/apply.py --breakdown.
"""

from __future__ import annotations

import functools
import gc
import inspect
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_INHERITED = object()  # the wrapped name came from the owner's class


class CpuParts:
    def __init__(self) -> None:
        self.own: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()  # .stack: [label, started, nested CPU] of this thread
        self._lock = threading.Lock()
        self._undo: list[tuple[Any, str, Any]] = []

    @property
    def _stack(self) -> list[list[Any]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack  # type: ignore[no-any-return]

    def _enter(self, label: str) -> None:
        self._stack.append([label, time.thread_time(), 0.0])

    def _exit(self) -> None:
        stack = self._stack
        label, started, nested = stack.pop()
        spent = time.thread_time() - started
        with self._lock:
            self.own[label] += spent - nested
            self.calls[label] += 1
        if stack:
            stack[-1][2] += spent

    def wrap(self, owner: Any, name: str, label: str, *, context: bool = False) -> None:
        """Time `owner.name` (a module's function, a class's method, an object's method) as `label`;
        `context`: it returns a context manager, timed until its block ends. A name the owner
        lacks (an older checkout) is skipped."""
        original = getattr(owner, name, None)
        if original is None:
            return
        if inspect.iscoroutinefunction(original):
            @functools.wraps(original)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                self._enter(label)
                try:
                    return await original(*args, **kwargs)
                finally:
                    self._exit()
            wrapper: Any = timed_async
        elif context:
            @contextmanager
            def timed_scope(*args: Any, **kwargs: Any) -> Iterator[Any]:
                self._enter(label)
                try:
                    with original(*args, **kwargs) as value:
                        yield value
                finally:
                    self._exit()
            wrapper = timed_scope
        else:
            @functools.wraps(original)
            def timed(*args: Any, **kwargs: Any) -> Any:
                self._enter(label)
                try:
                    return original(*args, **kwargs)
                finally:
                    self._exit()
            wrapper = timed
        own = vars(owner)
        self._undo.append((owner, name, own.get(name, _INHERITED)))
        setattr(owner, name, wrapper)

    def time_gc(self, label: str = "garbage collector") -> None:
        """Count the collector's pauses as a part of their own, out of the part they interrupt."""
        def pause(phase: str, _info: dict[str, Any]) -> None:
            if phase == "start":
                self._enter(label)
            elif self._stack and self._stack[-1][0] == label:
                self._exit()
        gc.callbacks.append(pause)
        self._undo.append((gc.callbacks, "", pause))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            if owner is gc.callbacks:
                gc.callbacks.remove(original)
            elif original is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._undo.clear()

    def table(self, units: int, groups: dict[str, str]) -> str:
        """Own CPU ms per unit of work by label, grouped (`groups`: label -> group), largest first."""
        total = sum(self.own.values())
        lines = [f"  {'part':<46} {'ms/apply':>9} {'share':>6}"]
        by_group: dict[str, float] = defaultdict(float)
        for label, spent in self.own.items():
            by_group[groups.get(label, label)] += spent
        for group, spent in sorted(by_group.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {group:<46} {spent / units * 1e3:9.2f} {spent / total:6.1%}")
            members = [(lb, s) for lb, s in self.own.items() if groups.get(lb, lb) == group and lb != group]
            for label, s in sorted(members, key=lambda kv: -kv[1]):
                lines.append(f"    {label:<44} {s / units * 1e3:9.2f}")
        lines.append(f"  {'total':<46} {total / units * 1e3:9.2f}")
        return "\n".join(lines)
