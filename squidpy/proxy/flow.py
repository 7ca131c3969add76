"""Back-pressure: reading from a connection stops while any reason holds it.

A client connection may be held by the origin's full write buffer, by a long
pipeline queue and by a tunnel's pending bytes at once; it must resume only
when the last of them lets go.  Both connection classes mix this in.
"""

from __future__ import annotations


class PausableReading:
    _paused_by: frozenset | set = frozenset()

    def pause_reading(self, reason: str) -> None:
        if not self._paused_by:
            self._paused_by = set()
            self.transport.pauseProducing()
        self._paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self._paused_by:
            self._paused_by.discard(reason)
            if not self._paused_by:
                self.transport.resumeProducing()
