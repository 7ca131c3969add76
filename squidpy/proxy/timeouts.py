"""One periodic sweep enforces every connection's timeout.

Each watched object has a ``deadline`` (``time.monotonic()`` seconds, or None
for no timeout) and a ``timed_out()`` method.  Moving a deadline is a plain
attribute store, so the hot path pays nothing for timers; the sweep runs a
few times a second, which is the resolution of every timeout (as in Squid).
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
        expired = [o for o in self.watched if o.deadline is not None and o.deadline <= now]
        for obj in expired:
            if obj in self.watched and obj.deadline is not None and obj.deadline <= now:
                obj.timed_out()
