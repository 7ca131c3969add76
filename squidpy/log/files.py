"""Log files on disk: plain or gzip, several in time order, the last lines, following.

Lines are read as bytes and decoded as latin-1, the way squidpy keeps
request bytes, so any file reads without a decoding error.
"""

from __future__ import annotations

import glob
import gzip
import heapq
import os
import time
from typing import Callable, Iterable, Iterator

from squidpy.log.parse import Record, parse_line


def is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


class LogFile:
    """One file being read: ``position`` (bytes of the file on disk consumed) drives a progress bar."""

    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)
        self.raw = open(path, "rb")
        self.stream = gzip.GzipFile(fileobj=self.raw) if is_gzip(path) else self.raw

    @property
    def position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return self.size

    def lines(self) -> Iterator[str]:
        for raw in self.stream:
            yield raw.decode("latin-1").rstrip("\r\n")

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def first_lines(path: str, count: int) -> list[str]:
    """The first ``count`` lines of a plain or gzip file."""
    f = LogFile(path)
    try:
        out = []
        for line in f.lines():
            out.append(line)
            if len(out) >= count:
                break
        return out
    finally:
        f.close()


def rotated_siblings(path: str) -> list[str]:
    """A log and its rotated copies: access.log, access.log.0 ..., access.log.1.gz, access.log-20261123.gz."""
    names = {path} if os.path.exists(path) else set()
    for pattern in (f"{glob.escape(path)}.[0-9]*", f"{glob.escape(path)}-[0-9]*"):
        names.update(p for p in glob.glob(pattern) if os.path.isfile(p))
    return sorted(names)


def first_time(path: str, parser: Callable[[str], Record | None], probe: int = 50) -> float:
    """When a file starts (its first readable line), to read files oldest first."""
    f = LogFile(path)
    try:
        for i, line in enumerate(f.lines()):
            r = parser(line)
            if r is not None:
                return r.time
            if i >= probe:
                break
    except (OSError, EOFError):
        pass
    finally:
        f.close()
    return float("inf")


def records(paths: Iterable[str], parser: Callable[[str], Record | None] = parse_line,
            malformed: Callable[[str, str], None] | None = None,
            files_out: list | None = None) -> Iterator[Record]:
    """Every record of every file, merged in time order (each file is read once, streaming).

    ``malformed(where, line)`` is told about each line that does not parse;
    ``files_out`` receives the open :class:`LogFile` objects (for progress).
    """
    files = [LogFile(p) for p in sorted(paths, key=lambda p: first_time(p, parser))]
    if files_out is not None:
        files_out.extend(files)

    def one(f: LogFile, order: int) -> Iterator[tuple[float, int, Record]]:
        n = 0
        try:
            for n, line in enumerate(f.lines(), 1):
                r = parser(line)
                if r is None:
                    if line and malformed is not None:
                        malformed(f"{f.path}:{n}", line)
                    continue
                yield r.time, order, r
        except (OSError, EOFError) as e:
            if malformed is not None:
                malformed(f"{f.path}:{n + 1}", f"(unreadable from here: {e})")
        finally:
            f.close()

    streams = [one(f, i) for i, f in enumerate(files)]
    if len(streams) == 1:
        for _, _, r in streams[0]:
            yield r
        return
    for _, _, r in heapq.merge(*streams):
        yield r


def last_lines(path: str, count: int, keep: Callable[[str], bool] = lambda line: True,
               block: int = 65536) -> list[str]:
    """The last ``count`` lines that ``keep`` accepts, reading the file backwards."""
    if count <= 0:
        return []
    if is_gzip(path):
        f = LogFile(path)
        found = [line for line in f.lines() if keep(line)][-count:]
        f.close()
        return found
    found: list[str] = []
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        tail = b""
        while end > 0 and len(found) < count:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + tail
            end = start
            parts = data.split(b"\n")
            tail = parts.pop(0) if start > 0 else b""
            for raw in reversed(parts):
                line = raw.decode("latin-1").rstrip("\r")
                if line and keep(line):
                    found.append(line)
                    if len(found) >= count:
                        break
    return list(reversed(found))


def follow(path: str, from_end: bool = True, poll: float = 0.25,
           running: Callable[[], bool] = lambda: True) -> Iterator[str]:
    """New lines of ``path`` as they come, across rotation and truncation (like ``tail -F``).

    When the name leads to another file (rotated, or removed and created
    again), the old file is read to its end first, then the new one from its
    start, so no line is skipped.
    """
    f = None
    identity = None
    partial = b""

    def open_current(at_end: bool):
        nonlocal f, identity
        try:
            f = open(path, "rb")
        except OSError:
            f, identity = None, None
            return
        st = os.fstat(f.fileno())
        identity = (st.st_dev, st.st_ino)
        if at_end:
            f.seek(0, os.SEEK_END)

    open_current(from_end)
    while running():
        if f is None:
            time.sleep(poll)
            open_current(False)
            continue
        chunk = f.read(65536)
        if chunk:
            data = partial + chunk
            *complete, partial = data.split(b"\n")
            for raw in complete:
                yield raw.decode("latin-1").rstrip("\r")
            continue
        try:
            st = os.stat(path)
            now = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if now != identity:
            # rotated or removed: what was written to the old file before the switch comes first
            rest = partial + f.read()
            f.close()
            f = None
            partial = b""
            for raw in rest.split(b"\n"):
                if raw:
                    yield raw.decode("latin-1").rstrip("\r")
            open_current(False)
            continue
        if st.st_size < f.tell():
            f.seek(0)          # truncated (copytruncate): start again
            partial = b""
            continue
        time.sleep(poll)
