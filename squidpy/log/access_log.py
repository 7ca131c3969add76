"""Access log writers: format each finished transaction, buffer, send without blocking.

Every writer keeps lines in memory and sends them at least once a second
(the service's flush), sooner when a buffer passes ``buffer_size``, and on
rotation, reconfiguration and shutdown, so serving never waits on a disk or
a collector.  Files are appended with plain ``write`` calls; syslog uses a
non-blocking socket; UDP and TCP collectors are Twisted protocols, their names
looked up with the proxy's DNS cache.  When a destination fails (disk full, file
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
import socket
import time
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol, connectionDone

from squidpy.acl.access import matches
from squidpy.acl.checklist import UNDECIDED
from squidpy.ip import ip_address
from squidpy.log.destination import Destination
from squidpy.log.logformat import PREDEFINED_FORMATS, text_bytes
from squidpy.log.rotate import rotate_numbered

if TYPE_CHECKING:
    from squidpy.config.loader import Config

log = logging.getLogger("squidpy")

DEFAULT_BUFFER = 64 * 1024            # Squid's buffer-size default: flush past this
NETWORK_BACKLOG = 4 * 1024 * 1024     # bytes kept for a collector that is down, then oldest dropped
MAX_BACKOFF = 60.0
CONNECT_TIMEOUT = 10.0                # seconds a collector has to accept a connection
CLOSE_WAIT = 1.0                      # seconds a closing collector writer may take to deliver


class DnsError(Exception):
    """A collector's name could not be looked up."""


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

    def close(self) -> defer.Deferred | None:
        """Write what is left; network writers return a Deferred firing once it is
        delivered or given up (within CLOSE_WAIT), the others are done at once."""
        self.flush()
        return None

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

    overflow_reason = "its buffer is full"

    def _enqueue(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued += len(data)
        while self.queued > self.backlog and self._droppable():
            self._drop_oldest(self.overflow_reason)
        if self.queued >= self.buffer_size:
            self.flush()

    def _droppable(self) -> bool:
        return len(self.queue) > 1

    def _drop_oldest(self, reason: str) -> None:
        dropped = self.queue.popleft()
        self.queued -= len(dropped)
        self._failed(1, reason)

    def _wait_before_retry(self) -> None:
        self.next_attempt = self._now() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    reactor: Any = None               # the network writers': their clock too

    def _now(self) -> float:
        return self.reactor.seconds() if self.reactor is not None else time.monotonic()


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
        self.sock: socket.socket | None = None

    def close(self) -> None:
        self.flush()
        self._close_socket()

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def write(self, line: str) -> None:
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("%b %e %H:%M:%S", time.localtime(now))
        self._enqueue(text_bytes(f"{self.prefix_pri}{self._stamp}{self.tag}{line}"))

    def _connect(self) -> bool:
        if self.sock is not None:
            return True
        if self._now() < self.next_attempt:
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



def _global_reactor():
    from twisted.internet import reactor
    return reactor


def _addresses(host: str, resolve) -> defer.Deferred:
    """``host``'s addresses: an address as it is, a name asked of ``resolve`` (the proxy's
    DNS cache: hosts_file, dns_nameservers), never of getaddrinfo on the reactor."""
    try:
        return defer.succeed([str(ip_address(host))])
    except ValueError:
        pass
    if resolve is None:
        return defer.fail(DnsError(f"no resolver for the name '{host}'"))
    return defer.maybeDeferred(resolve, host)


def _reason(failure) -> str:
    """A lookup's or a connection's failure in a few words, for cache_log."""
    value = failure.value
    if isinstance(value, DnsError):
        return str(value)
    if isinstance(value, (ierror.TimeoutError, defer.TimeoutError)):
        return "the connection attempt timed out"
    if isinstance(value, ierror.ConnectionDone):
        return "the collector closed the connection"
    if isinstance(value, ierror.ConnectionLost):
        return "connection lost"
    if isinstance(value, ierror.ConnectError) and isinstance(value.osError, int):
        return os.strerror(value.osError)
    return failure.getErrorMessage()


class UdpLog(_QueuedWriter):
    """One datagram per line to a collector; UDP never tells about loss, squidpy never waits.

    The collector's name is looked up (asynchronously) before the first line is sent,
    and again after a failed lookup, with backoff; until then lines wait, bounded."""

    def __init__(self, destination: Destination, buffer_size: int = DEFAULT_BUFFER, reactor=None, resolve=None):
        super().__init__(destination.text, buffer_size)
        self.destination = destination
        self.reactor = reactor or _global_reactor()
        self.resolve = resolve
        self.address: tuple[str, int] | None = None
        self.port: Any = None         # our end: a UDP port on an ephemeral number
        self.lookup: defer.Deferred | None = None
        self.closing: defer.Deferred | None = None

    def write(self, line: str) -> None:
        self._enqueue(text_bytes(line + "\n"))

    def _ready(self) -> bool:
        if self.port is not None:
            return True
        if self.lookup is None and self._now() >= self.next_attempt:
            self.lookup = _addresses(self.destination.host, self.resolve)
            self.lookup.addCallbacks(self._resolved, self._not_resolved)
        return self.port is not None        # an address needs no waiting

    def _resolved(self, addresses: list[str]) -> None:
        self.lookup = None
        address = addresses[0]
        self.port = self.reactor.listenUDP(0, DatagramProtocol(), interface="::" if ":" in address else "")
        self.address = (address, self.destination.port)
        self.backoff = 1.0
        self.flush()                        # what waited for the answer

    def _not_resolved(self, failure) -> None:
        self.lookup = None
        self._wait_before_retry()
        self._failed(0, f"cannot resolve {self.destination.host}: {_reason(failure)}")

    def flush(self) -> None:
        if not self.queue or not self._ready():
            return
        while self.queue:
            datagram = self.queue.popleft()
            self.queued -= len(datagram)
            try:
                self.port.write(datagram, self.address)
            except (OSError, ierror.MessageLengthError) as e:
                self._failed(1, f"cannot send: {getattr(e, 'strerror', None) or e}")
                continue
            self._recovered()

    def close(self) -> defer.Deferred:
        """Send what is queued; a lookup still under way is waited for, one second at most."""
        if self.closing is None:
            self.closing = defer.Deferred()
            self.flush()
            if self.lookup is not None and self.queue:
                timer = self.reactor.callLater(CLOSE_WAIT, self.lookup.cancel)
                self.lookup.addBoth(lambda _: self._after_lookup(timer))
            else:
                self._closed()
        return _follow(self.closing)

    def _after_lookup(self, timer) -> None:
        if timer.active():
            timer.cancel()
        self._closed()

    def _closed(self) -> None:
        if self.port is not None:
            self.flush()
        if self.queue:
            self._failed(len(self.queue), "closed with lines not yet sent")
            self.queue.clear()
            self.queued = 0
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        self.closing.callback(None)


class _Collector(Protocol):
    """One connection to a TCP collector, the transport's pull producer: the transport
    asks for more (``resumeProducing``) only once everything given to it is in the kernel,
    so the writer knows which lines went and never buffers more than one chunk in Twisted."""

    transport: Any                    # a TCP transport (zope's ITransport lacks producer methods)

    def __init__(self, writer: "TcpLog"):
        self.writer = writer
        self.waiting = False          # the transport asked for data and got none yet

    def connectionMade(self) -> None:
        self.writer._connection_made(self)
        self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        self.writer._drained(self)

    def stopProducing(self) -> None:
        """The connection is going: connectionLost says what became of the lines."""

    def dataReceived(self, data: bytes) -> None:
        """A collector has nothing to say: what it sends is ignored."""

    def connectionLost(self, reason=connectionDone) -> None:
        self.writer._connection_lost(self, reason)


class _CollectorFactory(Factory):
    def __init__(self, writer: "TcpLog"):
        self.writer = writer

    def buildProtocol(self, addr):
        return _Collector(self.writer)


class TcpLog(_QueuedWriter):
    """A stream of lines to a collector, on Twisted: the name looked up asynchronously,
    the connection made by a HostnameEndpoint (happy eyeballs), lines written as the
    transport drains, reconnect with backoff.

    The lines handed to a connection that is lost before they were all written are
    counted as lost (the collector saw part of them at most); the next connection
    starts with the next whole line.  Lines are handed over a chunk at a time, so
    that is at most one chunk.
    """

    CHUNK_LINES = 64
    CHUNK_BYTES = 64 * 1024

    def __init__(self, destination: Destination, buffer_size: int = DEFAULT_BUFFER, reactor=None, resolve=None):
        super().__init__(destination.text, buffer_size)
        self.destination = destination
        self.reactor = reactor or _global_reactor()
        self.resolve = resolve
        self.connection: _Collector | None = None
        self.attempt: defer.Deferred | None = None     # a lookup or a connect under way
        self.sending = 0              # lines at the head of the queue handed to the connection
        self.closing: defer.Deferred | None = None
        self._close_timer = None

    @property
    def closed(self) -> bool:
        return self.closing is not None and self.closing.called

    def write(self, line: str) -> None:
        self._enqueue(text_bytes(line + "\n"))

    def _droppable(self) -> bool:
        return len(self.queue) > max(self.sending, 1)

    def _drop_oldest(self, reason: str) -> None:
        # the lines being sent stay: the oldest after them goes
        dropped = self.queue[self.sending]
        del self.queue[self.sending]
        self.queued -= len(dropped)
        self._failed(1, reason)

    def flush(self) -> None:
        if self.connection is not None:
            if self.connection.waiting and self.queue:
                self._send_more()
        elif self.attempt is None and self.closing is None and self._now() >= self.next_attempt:
            self._connect()

    # ------------------------------------------------------------ connecting
    def _connect(self) -> None:
        self.attempt = lookup = _addresses(self.destination.host, self.resolve)
        lookup.addCallback(self._resolved).addErrback(self._attempt_failed, lookup, "cannot resolve")

    def _resolved(self, addresses: list[str]) -> None:
        from squidpy.proxy.server_side import _ResolvedReactor
        endpoint = HostnameEndpoint(_ResolvedReactor(self.reactor, addresses), self.destination.host,
                                    self.destination.port, timeout=CONNECT_TIMEOUT)
        self.attempt = connecting = endpoint.connect(_CollectorFactory(self))
        connecting.addErrback(self._attempt_failed, connecting, "cannot connect")

    def _attempt_failed(self, failure, attempt, what: str) -> None:
        if attempt is not self.attempt:
            return                          # given up on by close(), or the connect's own
        self.attempt = None
        if self.closing is not None:
            self._finish_close()
            return
        self._wait_before_retry()
        if what == "cannot resolve":
            self._failed(0, f"cannot resolve {self.destination.host}: {_reason(failure)}")
        elif failure.check(ierror.TimeoutError):
            self._failed(0, _reason(failure))
        else:
            self._failed(0, f"cannot connect: {_reason(failure)}")

    def _connection_made(self, connection: _Collector) -> None:
        self.attempt = None
        self.connection = connection
        self.backoff = 1.0
        log.info("access_log %s: connected", self.name)

    # ------------------------------------------------------------ sending
    def _drained(self, connection: _Collector) -> None:
        """The transport wrote everything it was given: those lines went."""
        if self.sending:
            for _ in range(self.sending):
                self.queued -= len(self.queue.popleft())
            self.sending = 0
            self._recovered()
        if self.queue:
            self._send_more()
        elif self.closing is not None:
            connection.transport.unregisterProducer()
            connection.transport.loseConnection()
        else:
            connection.waiting = True

    def _send_more(self) -> None:
        """Hand the next chunk of whole lines to the transport (at shutdown, all of them)."""
        limit = len(self.queue) if self.closing is not None else self.CHUNK_LINES
        chunk: list[bytes] = []
        size = 0
        for line in islice(self.queue, limit):
            if chunk and size + len(line) > self.CHUNK_BYTES and self.closing is None:
                break
            chunk.append(line)
            size += len(line)
        self.sending = len(chunk)
        self.connection.waiting = False
        self.connection.transport.write(b"".join(chunk))

    def _connection_lost(self, connection: _Collector, reason) -> None:
        if connection is not self.connection:
            return
        self.connection = None
        cut = self.sending
        for _ in range(cut):
            self.queued -= len(self.queue.popleft())
        self.sending = 0
        if self.closing is not None:
            if cut:
                self._failed(cut, "closed with lines not yet sent")
            self._finish_close()
            return
        self._failed(cut, _reason(reason))
        self._wait_before_retry()

    # ------------------------------------------------------------ closing
    def close(self) -> defer.Deferred:
        """Send what is queued, and close; fires when done, one second at most (a lookup or
        a connect under way is waited for within that second); what cannot go is lost."""
        if self.closing is None:
            self.closing = defer.Deferred()
            if self.connection is not None:
                self._close_timer = self.reactor.callLater(CLOSE_WAIT, self._give_up)
                if self.connection.waiting:
                    self._drained(self.connection)
            elif self.attempt is not None:
                self._close_timer = self.reactor.callLater(CLOSE_WAIT, self._give_up)
            else:
                self._finish_close()
        return _follow(self.closing)

    def _give_up(self) -> None:
        self._close_timer = None
        if self.connection is not None:
            self.connection.transport.abortConnection()        # connectionLost counts the loss
        elif self.attempt is not None:
            attempt, self.attempt = self.attempt, None
            attempt.cancel()
            self._finish_close()

    def _finish_close(self) -> None:
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        if self.queue:
            self._failed(len(self.queue), "closed with lines not yet sent")
            self.queue.clear()
            self.queued = 0
        if not self.closing.called:
            self.closing.callback(None)


def _follow(d: defer.Deferred) -> defer.Deferred:
    """A Deferred firing when ``d`` has (``d`` itself stays fired for later callers)."""
    follower: defer.Deferred = defer.Deferred()

    def fire(result):
        follower.callback(None)
        return result
    d.addBoth(fire)
    return follower


def open_writer(destination: Destination, buffer_size: int | None = None,
                syslog_socket: str = "/dev/log", resolve=None) -> Writer | None:
    """A writer for one destination (None for 'none'); ``resolve`` (a name -> a Deferred
    list of addresses: the proxy's DNS cache) looks up collectors named by a name."""
    size = buffer_size or DEFAULT_BUFFER
    if destination.kind == "file":
        return FileLog(destination.path, size)
    if destination.kind == "syslog":
        return SyslogLog(destination, syslog_socket, size)
    if destination.kind == "udp":
        return UdpLog(destination, size, resolve=resolve)
    if destination.kind == "tcp":
        return TcpLog(destination, size, resolve=resolve)
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
                 on_fatal=None, resolve=None):
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
                    writer = open_writer(spec.destination, spec.buffer_size, syslog_socket, resolve)
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
    def from_config(cls, config: Config, previous: "AccessLog | None" = None, on_fatal=None, resolve=None) -> "AccessLog":
        """The logs of ``config``.  On reconfigure (``previous``), destinations that stay keep
        their writer (open file, TCP connection, queued lines), and nothing changes until
        :meth:`commit` (or :meth:`discard`).  ``resolve`` looks up collectors' names."""
        return cls(config.access_log, config.logformat, config.syslog_socket, previous, on_fatal, resolve)

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

    def close(self) -> defer.Deferred:
        """Close every destination; fires once the collectors got what was queued, or
        it was given up (CLOSE_WAIT at most: they are closed together)."""
        closing = [writer.close() for writer in self.writers.values()]
        return defer.gatherResults([d for d in closing if d is not None])


def _matches(rule, checklist) -> bool:
    """An access_log filter: all its ACLs must match; one needing a lookup does not."""
    try:
        return matches(rule, checklist)
    except UNDECIDED:
        return False
