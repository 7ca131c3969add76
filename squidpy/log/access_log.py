"""Access log writers: format each finished transaction, buffer, send without blocking.

Every writer keeps lines in memory and sends them at least once a second
(the service's flush), sooner when a buffer passes ``buffer_size``, and on
rotation, reconfiguration and shutdown, so serving never waits on a disk or
a collector.  Files are appended with plain ``write`` calls; syslog, UDP and
TCP use non-blocking sockets.  When a destination fails (disk full, file
removed, collector down) the proxy keeps serving: the lines that cannot be
written are counted as lost, the failure is reported once in cache_log,
writing resumes by itself when it can (a removed file is created again,
a TCP collector is reconnected with backoff), and the recovery is reported
with the number of lines lost meanwhile.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from collections import deque
from itertools import islice

from squidpy.acl.access import matches
from squidpy.acl.checklist import UNDECIDED
from squidpy.log.destination import Destination
from squidpy.log.logformat import PREDEFINED_FORMATS, text_bytes
from squidpy.log.rotate import rotate_numbered

log = logging.getLogger("squidpy")

DEFAULT_BUFFER = 64 * 1024            # Squid's buffer-size default: flush past this
NETWORK_BACKLOG = 4 * 1024 * 1024     # bytes kept for a collector that is down, then oldest dropped
MAX_BACKOFF = 60.0


class Writer:
    """What every destination does; ``lost`` counts lines that could not be delivered.

    ``on_fatal`` is set for ``on-error=die`` (Squid's default): it is called with one line
    saying what failed when lines are lost, or when a file cannot be opened, and stops
    the proxy.  Without it (``on-error=drop``) the loss is counted and reported."""

    def __init__(self, name: str, buffer_size: int = DEFAULT_BUFFER):
        self.name = name
        self.buffer_size = buffer_size
        self.lost = 0
        self._lost_reported = 0       # ``lost`` when the current failure was reported
        self._failing = False
        self.failure: str | None = None   # the current failure, while it lasts
        self.on_fatal = None

    def write(self, line: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def rotate(self, keep: int) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()

    def _failed(self, lines: int, reason: str) -> None:
        self.lost += lines
        self.failure = reason
        if self.on_fatal is not None and (lines or self.fatal_without_loss):
            self.on_fatal(f"access_log {self.name}: {reason}")
            return
        if not self._failing:
            self._failing = True
            self._lost_reported = self.lost - lines
            log.error("access_log %s: %s; access log lines are being lost", self.name, reason)

    # a file that cannot be opened is fatal under on-error=die even before a line is lost
    # (as in Squid); a collector that is down is not, until lines are lost
    fatal_without_loss = False

    def _recovered(self) -> None:
        self.failure = None
        if self._failing:
            self._failing = False
            log.warning("access_log %s: writing again; %d line(s) were lost meanwhile",
                        self.name, self.lost - self._lost_reported)


class FileLog(Writer):
    """A file squidpy appends to; ``rotate(n)`` keeps n numbered copies.

    Before each write the path is checked: a file that was removed or
    replaced (by an admin or logrotate) is opened again under its name,
    so no line goes into a file nobody can see.
    """

    fatal_without_loss = True

    def __init__(self, path: str, buffer_size: int = DEFAULT_BUFFER):
        super().__init__(path, buffer_size)
        self.path = path
        self.buffer: list[str] = []
        self.pending = 0
        self._fd: int | None = None
        self._partial = False         # a failed write left half a line in the file
        try:
            self._open()
        except OSError as e:
            self._failed(0, f"cannot open: {e.strerror}")

    def _open(self) -> None:
        parent = os.path.dirname(self.path)
        if parent and not os.path.lexists(parent):
            os.makedirs(parent, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def _current(self) -> bool:
        """Is our descriptor still the file at ``path``?"""
        try:
            here = os.stat(self.path)
        except OSError:
            return False
        mine = os.fstat(self._fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def write(self, line: str) -> None:
        self.buffer.append(line)
        self.pending += len(line) + 1
        if self.pending >= self.buffer_size:
            self.flush()

    def flush(self, check: bool = True) -> None:
        """Write the buffer; ``check=False`` writes to the open file even if it was renamed
        (rotation: what was logged before goes to the old file)."""
        if not self.buffer:
            return
        lines, self.buffer, self.pending = self.buffer, [], 0
        prefix = b"\n" if self._partial else b""     # end the half line a failed write left
        try:
            data = prefix + ("\n".join(lines) + "\n").encode("latin-1")
        except UnicodeEncodeError:
            data = prefix + b"".join(text_bytes(line) + b"\n" for line in lines)
        try:
            if check and self._fd is not None and not self._current():
                log.warning("access_log %s: the file was removed or replaced; opening it again", self.path)
                self._close_fd()
            if self._fd is None:
                self._open()
        except OSError as e:
            self._failed(len(lines), f"cannot open: {e.strerror}")
            return
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as e:
            if written:
                done = data[:written].count(b"\n") - len(prefix)
                self._partial = not data[:written].endswith(b"\n")
            else:
                done = 0
            self._close_fd()
            self._failed(len(lines) - done, f"cannot write: {e.strerror}")
            return
        self._partial = False
        self._recovered()

    def reopen(self) -> None:
        self.flush(check=False)
        self._close_fd()
        try:
            self._open()
        except OSError as e:
            self._failed(0, f"cannot reopen: {e.strerror}")

    def rotate(self, keep: int) -> None:
        """access.log -> access.log.0 -> .1 ... (keep copies); then reopen."""
        self.flush(check=False)
        try:
            rotate_numbered(self.path, keep)
        except OSError as e:
            log.error("access_log %s: cannot rotate: %s", self.path, e.strerror)
        self.reopen()

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        self.flush()
        self._close_fd()


class _QueuedWriter(Writer):
    """Lines waiting for a socket, bounded: past ``backlog`` bytes the oldest are dropped."""

    def __init__(self, name: str, buffer_size: int, backlog: int = NETWORK_BACKLOG):
        super().__init__(name, buffer_size)
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.backlog = backlog
        self.next_attempt = 0.0
        self.backoff = 1.0
        self.sock: socket.socket | None = None

    def close(self) -> None:
        self.flush()
        self._close_socket()

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    overflow_reason = "its buffer is full"

    def _enqueue(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued += len(data)
        while self.queued > self.backlog and len(self.queue) > 1:
            self._drop_oldest(self.overflow_reason)
        if self.queued >= self.buffer_size:
            self.flush()

    def _drop_oldest(self, reason: str) -> None:
        dropped = self.queue.popleft()
        self.queued -= len(dropped)
        self._failed(1, reason)

    def _wait_before_retry(self) -> None:
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)


class SyslogLog(_QueuedWriter):
    """The local syslog: one RFC 3164 datagram per line on a UNIX socket (/dev/log)."""

    overflow_reason = "the syslog daemon does not keep up"

    def __init__(self, destination: Destination, socket_path: str, buffer_size: int = DEFAULT_BUFFER):
        super().__init__(destination.text, buffer_size)
        self.socket_path = socket_path
        self.prefix_pri = f"<{destination.facility * 8 + destination.priority}>"
        self.tag = f" squidpy[{os.getpid()}]: "
        self._stamp_second = -1
        self._stamp = ""

    def write(self, line: str) -> None:
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("%b %e %H:%M:%S", time.localtime(now))
        self._enqueue(text_bytes(f"{self.prefix_pri}{self._stamp}{self.tag}{line}"))

    def _connect(self) -> bool:
        if self.sock is not None:
            return True
        if time.monotonic() < self.next_attempt:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            self._wait_before_retry()
            self._failed(0, f"cannot reach the syslog socket {self.socket_path}: {e.strerror}")
            return False
        self.sock = sock
        self.backoff = 1.0
        return True

    def flush(self) -> None:
        if not self.queue:
            return
        if not self._connect():
            return          # the lines wait (bounded) for the syslog socket to come back
        while self.queue:
            datagram = self.queue[0]
            try:
                self.sock.send(datagram)
            except BlockingIOError:
                # the syslog daemon is behind: never wait for it; the lines stay queued
                # (bounded: past the backlog the oldest are dropped) for the next flush
                return
            except OSError as e:
                if e.errno == errno.EMSGSIZE:
                    self._drop_oldest("a line is too long for syslog")
                    continue
                self._close_socket()
                self._wait_before_retry()
                self._failed(0, f"syslog socket {self.socket_path}: {e.strerror}")
                return
            self.queue.popleft()
            self.queued -= len(datagram)
            self._recovered()



def _resolve(host: str, port: int, kind: int):
    info = socket.getaddrinfo(host, port, type=kind)
    family, _, _, _, address = info[0]
    return family, address


class UdpLog(_QueuedWriter):
    """One datagram per line to a collector; UDP never tells about loss, squidpy never waits."""

    def __init__(self, destination: Destination, buffer_size: int = DEFAULT_BUFFER):
        super().__init__(destination.text, buffer_size)
        self.destination = destination
        self.address = None

    def write(self, line: str) -> None:
        self._enqueue(text_bytes(line + "\n"))

    def _ready(self) -> bool:
        if self.sock is not None:
            return True
        if time.monotonic() < self.next_attempt:
            return False
        try:
            family, self.address = _resolve(self.destination.host, self.destination.port, socket.SOCK_DGRAM)
        except OSError as e:
            self._wait_before_retry()
            self._failed(0, f"cannot resolve {self.destination.host}: {e.strerror}")
            return False
        self.sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        return True

    def flush(self) -> None:
        if not self.queue:
            return
        if not self._ready():
            return
        while self.queue:
            datagram = self.queue.popleft()
            self.queued -= len(datagram)
            try:
                self.sock.sendto(datagram, self.address)
            except OSError as e:
                self._failed(1, f"cannot send: {e.strerror}")
                continue
            self._recovered()



class TcpLog(_QueuedWriter):
    """A stream of lines to a collector: non-blocking connect and send, reconnect with backoff.

    A line cut by a lost connection is counted as lost (the collector saw
    only part of it); the next connection starts with the next whole line.
    """

    def __init__(self, destination: Destination, buffer_size: int = DEFAULT_BUFFER):
        super().__init__(destination.text, buffer_size)
        self.destination = destination
        self.connecting = False
        self.connect_started = 0.0
        self.offset = 0               # bytes of queue[0] already sent

    def write(self, line: str) -> None:
        self._enqueue(text_bytes(line + "\n"))

    def _drop_oldest(self, reason: str) -> None:
        if self.offset and len(self.queue) > 1:
            # keep the line being sent: drop the one after it
            head = self.queue.popleft()
            super()._drop_oldest(reason)
            self.queue.appendleft(head)
            return
        super()._drop_oldest(reason)
        self.offset = 0

    def _start_connect(self) -> None:
        try:
            family, address = _resolve(self.destination.host, self.destination.port, socket.SOCK_STREAM)
        except OSError as e:
            self._wait_before_retry()
            self._failed(0, f"cannot resolve {self.destination.host}: {e.strerror}")
            return
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._wait_before_retry()
            self._failed(0, f"cannot connect: {os.strerror(code)}")
            return
        self.sock = sock
        self.connecting = True
        self.connect_started = time.monotonic()

    def _connected(self) -> bool:
        if self.sock is None:
            if time.monotonic() < self.next_attempt:
                return False
            self._start_connect()
            if self.sock is None:
                return False
        if self.connecting:
            _, writable, _ = select.select([], [self.sock], [], 0)
            if not writable:
                if time.monotonic() > self.connect_started + 10:
                    self._disconnect("the connection attempt timed out")
                return False
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._disconnect(f"cannot connect: {os.strerror(code)}")
                return False
            self.connecting = False
            self.backoff = 1.0
            log.info("access_log %s: connected", self.name)
        return True

    def _disconnect(self, reason: str) -> None:
        self._close_socket()
        self.connecting = False
        if self.offset:
            self.queue.popleft()
            self.offset = 0
            self._failed(1, reason)
        else:
            self._failed(0, reason)
        self._wait_before_retry()

    def flush(self) -> None:
        if not self._connected():
            return
        while self.queue:
            head = self.queue[0]
            chunk = [memoryview(head)[self.offset:]]
            size = len(chunk[0])
            for line in islice(self.queue, 1, 64):
                chunk.append(line)
                size += len(line)
            try:
                sent = self.sock.send(b"".join(chunk))
            except BlockingIOError:
                return
            except OSError as e:
                self._disconnect(f"connection lost: {e.strerror}")
                return
            self._recovered()
            while sent and self.queue:
                left = len(self.queue[0]) - self.offset
                if sent >= left:
                    sent -= left
                    self.queued -= len(self.queue.popleft())
                    self.offset = 0
                else:
                    self.offset += sent
                    sent = 0

    def close(self) -> None:
        """Send what is left, waiting one second at most; what still cannot go is lost."""
        self.flush()
        if self.queue and self.sock is not None and not self.connecting:
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(self.queue[0][self.offset:] + b"".join(islice(self.queue, 1, None)))
                self.queue.clear()
                self.queued = self.offset = 0
            except OSError:
                pass
        if self.queue:
            self._failed(len(self.queue), "closed with lines not yet sent")
            self.queue.clear()
            self.queued = self.offset = 0
        self._close_socket()


def open_writer(destination: Destination, buffer_size: int | None = None,
                syslog_socket: str = "/dev/log") -> Writer | None:
    """A writer for one destination (None for 'none')."""
    size = buffer_size or DEFAULT_BUFFER
    if destination.kind == "file":
        return FileLog(destination.path, size)
    if destination.kind == "syslog":
        return SyslogLog(destination, syslog_socket, size)
    if destination.kind == "udp":
        return UdpLog(destination, size)
    if destination.kind == "tcp":
        return TcpLog(destination, size)
    return None


def file_destinations(specs, default_keep: int) -> list[tuple[str, int]]:
    """(path, copies to keep) of every file among ``access_log`` lines, once each."""
    seen: dict[str, int] = {}
    for spec in specs:
        if spec.destination.is_file:
            seen.setdefault(spec.destination.path, default_keep if spec.rotate is None else spec.rotate)
    return list(seen.items())


class Output:
    __slots__ = ("writer", "format", "rule", "rotate", "sequence")

    def __init__(self, writer, fmt, rule, rotate):
        self.writer = writer
        self.format = fmt
        self.rule = rule
        self.rotate = rotate
        self.sequence = 0


class AccessLog:
    """Every ``access_log`` line of the configuration, in order, each with its format and filter.

    As in Squid, a transaction goes to every destination whose ACLs match,
    in configuration order; a matching ``access_log none`` line stops it
    there (so ``access_log none healthchecks`` first keeps them out of all logs).
    """

    def __init__(self, specs, logformats: dict, syslog_socket: str = "/dev/log", previous: "AccessLog | None" = None,
                 on_fatal=None):
        self.outputs: list[Output] = []
        self.writers: dict[str, Writer] = {}
        self.previous = previous
        self._new: list[Writer] = []
        kept = previous.writers if previous is not None else {}
        die: dict[str, bool] = {}
        for spec in specs:
            writer = None
            key = spec.destination.path if spec.destination.is_file else spec.destination.text
            if spec.destination.kind != "none":
                writer = self.writers.get(key) or kept.get(key)
                if writer is None:
                    writer = open_writer(spec.destination, spec.buffer_size, syslog_socket)
                    self._new.append(writer)
                self.writers[key] = writer
                # two lines naming one destination share its writer: 'die' if either says so
                die[key] = die.get(key, False) or getattr(spec, "on_error", "die") == "die"
            fmt = logformats.get(spec.format_name) or PREDEFINED_FORMATS[spec.format_name]
            self.outputs.append(Output(writer, fmt, spec.filter, spec.rotate))
        self._die = die
        self.on_fatal = on_fatal
        if previous is None:
            self.commit()

    def failures(self) -> list[str]:
        """Destinations under on-error=die that cannot be written now (a file that cannot
        be opened): what makes a start or a reconfigure fail."""
        return [f"access_log {w.name}: {w.failure}" for key, w in self.writers.items()
                if self._die[key] and w.fatal_without_loss and w.failure is not None]

    def commit(self) -> None:
        """Take over: arm on-error=die, close what the previous configuration had and this one
        does not (a reconfigure keeps open files, connections and queued lines of the rest)."""
        for key, writer in self.writers.items():
            writer.on_fatal = self.on_fatal if self._die[key] else None
        if self.previous is not None:
            for key, writer in self.previous.writers.items():
                if self.writers.get(key) is not writer:
                    writer.close()
            self.previous = None

    def discard(self) -> None:
        """A reconfigure that failed: close only what this one opened."""
        for writer in self._new:
            writer.on_fatal = None
            writer.close()
        self.previous = None

    @classmethod
    def from_config(cls, config, previous: "AccessLog | None" = None, on_fatal=None) -> "AccessLog":
        """The logs of ``config``.  On reconfigure (``previous``), destinations that stay keep
        their writer (open file, TCP connection, queued lines), and nothing changes until
        :meth:`commit` (or :meth:`discard`)."""
        return cls(config.access_log, config.logformat, config.syslog_socket, previous, on_fatal)

    def log(self, entry, checklist=None) -> None:
        if checklist is not None:
            if checklist.reply_status is None and entry.status:
                # reply ACLs (http_status, rep_mime_type ...) may filter access_log lines
                checklist.reply_status = entry.status
                checklist.reply_headers = entry.reply_headers
            checklist.entry = entry                 # hier_code, squid_error
            if checklist.notes and not entry.notes:
                entry.notes = list(checklist.notes)     # annotate_* ACLs, for %note
        for out in self.outputs:
            if out.rule is not None and (checklist is None or not _matches(out.rule, checklist)):
                continue
            if out.writer is None:
                return
            out.sequence += 1
            out.writer.write(out.format.format(entry, out.sequence))

    @property
    def lost(self) -> int:
        return sum(w.lost for w in self.writers.values())

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def rotate(self, keep: int) -> None:
        done = set()
        for out in self.outputs:
            if out.writer is not None and id(out.writer) not in done:
                done.add(id(out.writer))
                out.writer.rotate(keep if out.rotate is None else out.rotate)

    def reopen(self) -> None:
        """Open the files again under their names (another process renamed them)."""
        for writer in self.writers.values():
            if isinstance(writer, FileLog):
                writer.reopen()
            else:
                writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _matches(rule, checklist) -> bool:
    """An access_log filter: all its ACLs must match; one needing a lookup does not."""
    try:
        return matches(rule, checklist)
    except UNDECIDED:
        return False
