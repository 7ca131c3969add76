"""Access log writers: format each finished transaction, buffer, flush.

Lines are kept in memory and written at least once a second (and on
rotation and shutdown), so serving never waits on the disk per request.
When a write fails (disk full, file removed) the lines are counted as lost,
the failure is reported once in cache_log, and writing resumes at the next
flush that succeeds.
"""

from __future__ import annotations

import logging
import os

from squidpy.acl.access import matches
from squidpy.acl.checklist import Pending
from squidpy.log.rotate import rotate_numbered
from squidpy.log.logformat import PREDEFINED_FORMATS

log = logging.getLogger("squidpy")


class FileLog:
    """A log file squidpy appends to; ``rotate(n)`` keeps n numbered copies."""

    def __init__(self, path: str):
        self.path = path
        self.buffer: list[str] = []
        self.lost = 0
        self._failing = False
        self._file = None
        self._open()

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)

    def write(self, line: str) -> None:
        self.buffer.append(line)

    def flush(self) -> None:
        if not self.buffer:
            return
        lines, self.buffer = self.buffer, []
        data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
        try:
            if self._file is None:
                self._open()
            view = memoryview(data)
            while view:
                written = self._file.write(view)
                view = view[written:]
        except OSError as e:
            self.lost += len(lines)
            if not self._failing:
                log.error("cannot write to %s: %s; access log lines are being lost", self.path, e.strerror)
                self._failing = True
            return
        if self._failing:
            log.warning("writing to %s again; %d lines were lost meanwhile", self.path, self.lost)
            self._failing = False

    def reopen(self) -> None:
        self.flush()
        self.close()
        try:
            self._open()
        except OSError as e:
            log.error("cannot reopen %s: %s", self.path, e.strerror)

    def rotate(self, keep: int) -> None:
        """access.log -> access.log.0 -> .1 ... (keep copies); then reopen."""
        self.flush()
        rotate_numbered(self.path, keep)
        self.reopen()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


def open_destination(destination: str) -> FileLog | None:
    """A writer for one access_log destination (None for 'none')."""
    if destination == "none":
        return None
    if destination.startswith(("stdio:", "daemon:")):
        destination = destination.partition(":")[2]
    return FileLog(destination)


class AccessLog:
    """Every ``access_log`` line of the configuration, each with its format and filter."""

    def __init__(self, specs, logformats: dict):
        self.outputs = []
        for spec in specs:
            writer = open_destination(spec.destination)
            if writer is None:
                continue
            fmt = logformats.get(spec.format_name) or PREDEFINED_FORMATS[spec.format_name]
            self.outputs.append((writer, fmt, spec.filter))

    def log(self, entry, checklist=None) -> None:
        for writer, fmt, rule in self.outputs:
            if rule is not None and (checklist is None or not _matches(rule, checklist)):
                continue
            writer.write(fmt.format(entry))

    def flush(self) -> None:
        for writer, _, _ in self.outputs:
            writer.flush()

    def rotate(self, keep: int) -> None:
        for writer, _, _ in self.outputs:
            writer.rotate(keep)

    def close(self) -> None:
        for writer, _, _ in self.outputs:
            writer.flush()
            writer.close()


def _matches(rule, checklist) -> bool:
    """An access_log filter: all its ACLs must match; one needing a lookup does not."""
    try:
        return matches(rule, checklist)
    except Pending:
        return False
