"""Wall and CPU seconds per pipeline stage, for the benchmarks (scripts/bench_label.py, scripts/bench_ingest.py).

Stages are marked with ``with stage("detect"):`` where the work is done. Times are exclusive: a stage run inside
another (face embedding inside tracking) is counted as itself only, so the stages of one thread add up to that
thread's time in them. CPU seconds are the calling thread's own (``time.thread_time``), so the work of the decode
and audio threads beside the main thread shows; the stages of different threads overlap in wall time.

Off by default and then nearly free. Set ``AVID_STAGE_TIMES`` to a JSON path and a process writes its totals
there when it exits (the benchmarks run `avid label` as a child process this way).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from collections import defaultdict
from typing import Iterable, Iterator, TypeVar

ENV = "AVID_STAGE_TIMES"
T = TypeVar("T")


class StageClock:
    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._local = threading.local()      # per thread: the stack of [wall, cpu] spent in children

    @contextlib.contextmanager
    def stage(self, name: str):
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append([0.0, 0.0])
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
            child_wall, child_cpu = stack.pop()
            if stack:                        # the parent counts this stage as its child
                stack[-1][0] += wall
                stack[-1][1] += cpu
            with self._lock:
                self.wall[name] += wall - child_wall
                self.cpu[name] += cpu - child_cpu
                self.calls[name] += 1

    def as_dict(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {name: {"wall_s": round(self.wall[name], 4), "cpu_s": round(self.cpu[name], 4),
                           "calls": self.calls[name]} for name in self.wall}


_clock: StageClock | None = StageClock() if os.environ.get(ENV) else None


def stage(name: str):
    """A context manager timing ``name`` when timing is on (``AVID_STAGE_TIMES``), else a no-op."""
    return _clock.stage(name) if _clock is not None else contextlib.nullcontext()


def timed_iter(name: str, items: Iterable[T]) -> Iterator[T]:
    """``items``, with the time spent producing each one counted as stage ``name`` (decoding, for example)."""
    if _clock is None:
        yield from items
        return
    iterator = iter(items)
    while True:
        with _clock.stage(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _write() -> None:
    path = os.environ.get(ENV)
    if _clock is not None and path:
        with open(path, "w") as out:
            json.dump(_clock.as_dict(), out, indent=1)


if _clock is not None:
    atexit.register(_write)
