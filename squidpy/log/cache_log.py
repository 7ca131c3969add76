"""cache_log: squidpy's diagnostics, one timestamped line per event.

Lines look like Squid's: ``2026/11/23 10:00:00| message``.  The handler can
be reopened for rotation; with ``echo`` the same lines also go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys

from squidpy.log.rotate import rotate_numbered

log = logging.getLogger("squidpy")

def _formatter(tag: str | None) -> logging.Formatter:
    prefix = f" {tag}" if tag else ""
    return logging.Formatter(f"%(asctime)s{prefix}| %(message)s", "%Y/%m/%d %H:%M:%S")


class CacheLog:
    """``tag`` names the process under 'workers N' (kid1, kid2 ... or master)."""

    def __init__(self, path: str, echo: bool = False, tag: str | None = None, owner: tuple[int, int] | None = None):
        self.path = path
        self.owner = owner
        self.format = _formatter(tag)
        self.handler: logging.Handler | None = None
        self.echo_handler: logging.Handler | None = None
        log.setLevel(logging.INFO)
        log.propagate = False
        for inherited in list(log.handlers):
            # a kid forked from the master starts with the master's handlers
            log.removeHandler(inherited)
            inherited.close()
        self.open()
        if echo:
            self.echo_handler = logging.StreamHandler(sys.stderr)
            self.echo_handler.setFormatter(self.format)
            log.addHandler(self.echo_handler)

    def open(self) -> None:
        self.switch(self.path, self.prepare(self.path))

    def prepare(self, path: str) -> logging.Handler:
        """Open ``path`` without using it yet (a reconfigure opens everything first); raises OSError."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=False)
        handler.setFormatter(self.format)
        if self.owner is not None:
            # the master under workers writes as root: the kids, no longer root, share the file
            try:
                os.fchown(handler.stream.fileno(), *self.owner)
            except OSError:
                pass
        return handler

    def switch(self, path: str, handler: logging.Handler) -> None:
        """Write to ``handler`` (from :meth:`prepare`) from now on."""
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()
        self.path = path
        self.handler = handler
        log.addHandler(handler)

    def rotate(self, keep: int) -> None:
        rotate_numbered(self.path, keep)
        self.open()

    def capture_twisted(self) -> None:
        """Send Twisted's own messages (unhandled errors above all) to cache_log."""
        from twisted.logger import LogLevel, formatEvent, globalLogBeginner

        def observer(event):
            level = event.get("log_level")
            if level is None or level < LogLevel.warn:
                return
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text = f"{text}\n{failure.getTraceback()}"
            log.error("%s", text.rstrip())

        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    def close(self) -> None:
        for h in (self.handler, self.echo_handler):
            if h is not None:
                log.removeHandler(h)
                h.close()
        self.handler = self.echo_handler = None
