"""One periodic sweep enforces every connection's timeout.

Each watched object has a ``deadline`` (``time.monotonic()`` seconds, or None
for no timeout), a ``limit`` (the same, for limits that run beside it:
client_lifetime, write_timeout) and a ``timed_out()`` method, which tells
which one passed.  Moving either is a plain attribute store, so the hot path
pays nothing for timers; the sweep runs a few times a second, which is the
resolution of every timeout (as in Squid).
"""

from __future__ import annotations

import time

from twisted.internet.task import LoopingCall


class Timeouts:
    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.watched: set = set()
        self._loop = LoopingCall(self.sweep)

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def set_interval(self, interval: float) -> None:
        if interval != self.interval:
            self.interval = interval
            if self._loop.running:
                self._loop.stop()
                self._loop.start(interval, now=False)

    def add(self, obj) -> None:
        self.watched.add(obj)

    def discard(self, obj) -> None:
        self.watched.discard(obj)

    def sweep(self) -> None:
        now = time.monotonic()
        expired = [o for o in self.watched if _due(o, now)]
        for obj in expired:
            if obj in self.watched and _due(obj, now):
                obj.timed_out()


def _due(obj, now: float) -> bool:
    deadline, limit = obj.deadline, obj.limit
    return (deadline is not None and deadline <= now) or (limit is not None and limit <= now)


def idle_time(idle_timeout: float, pconn_lifetime: float, conn, now: float) -> float:
    """How long an idle persistent connection waits for its next use: its idle
    timeout, or less under pconn_lifetime (counted from ``conn.opened``; at least a
    second, as Squid's Connection::timeLeft gives)."""
    if not pconn_lifetime:
        return idle_timeout
    age = now - conn.opened
    return min(idle_timeout, pconn_lifetime - age if age < pconn_lifetime else 1.0)
