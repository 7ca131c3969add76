"""Every private Twisted detail squidpy relies on, in one place.

Twisted's public API does not cover six things a fast proxy needs: the
reactor's poll loop without its per-event logging context, accepted
connections that wait as bare descriptors until they send something (see
:class:`Waiting`), whether a
transport's write buffers are empty (before handing its socket to splice),
sending replies with one ``send()`` each at the end of the reactor's turn when
nothing is queued (see :meth:`EPollReactor.flush`), unlinking a client transport from its
connector (a reference cycle), reading less than 64 KB at a time from a
socket (a delay pool reads no more than its bucket holds, as Squid does), and a
client socket that gets IP_TRANSPARENT before it is bound (TPROXY: connecting
with the client's address).  Each is done here and nowhere else; tests/test_seam.py
checks every assumption against the installed Twisted, so an upgrade that
changes them fails loudly, and setup.cfg bounds Twisted to the releases CI
has proven.  One more must run before Twisted is imported at all, so it cannot
live in this module (which imports Twisted): which Twisted modules probe for
pyOpenSSL when they load (``reactor.import_twisted_without_tls``, tested in
tests/test_seam.py too).
"""

from __future__ import annotations

import errno
import select
import socket
import sys
import time
from typing import Any, Callable

from twisted.internet import epollreactor, tcp

#: the attributes of twisted.internet.abstract.FileDescriptor / tcp.Connection used below
TRANSPORT_ATTRIBUTES = ("_tempDataBuffer", "_tempDataLen", "dataBuffer", "offset", "socket", "producer", "connected",
                        "disconnecting")
#: the attributes of twisted.internet.epollreactor.EPollReactor used by fast_poll and Waiting
REACTOR_ATTRIBUTES = ("_poller", "_selectables", "_doReadOrWrite")
#: what Waiting uses of twisted.internet.tcp.Port (besides overriding doRead)
PORT_ATTRIBUTES = ("transport", "sessionno", "_buildAddr", "addressFamily", "factory", "socket", "numberAccepts")
#: what connect_transparent overrides in twisted.internet.tcp
CONNECTOR_METHODS = ((tcp.Connector, "_makeTransport"), (tcp.Client, "createInternetSocket"))

IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = 75          # linux/in6.h; Python does not name it

_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class EPollReactor(epollreactor.EPollReactor):
    """Twisted's epoll reactor without ``callWithLogger`` around every I/O event
    (several per cent of a request's CPU); our own errors already say which
    exchange they belong to.  ``loops`` counts its turns (Squid's "Select loop called").

    What :func:`write` queues for a connection with nothing else queued waits in
    ``replies`` until the end of the turn, then goes out with one ``send()``
    (:meth:`flush`).  Sending each reply the moment it is made wakes the client
    for every reply (measured: 9 µs of kernel time per 1 KB hit, a fifth of the
    hit rate); Twisted's own write path batches them but costs two ``epoll_ctl``
    calls and a poll event per reply."""

    loops = 0

    def __init__(self):
        super().__init__()
        self.replies: dict = {}

    def flush(self) -> None:
        """Send what :func:`write` queued this turn, in the order it was written; what
        a socket does not take goes to the transport's own buffer (sent when writable)."""
        replies, self.replies = self.replies, {}
        for transport, parts in replies.items():
            if not transport.connected:
                continue
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            if transport._tempDataBuffer:
                # written through Twisted after these, this turn: these go first
                transport._tempDataBuffer.insert(0, data)
                transport._tempDataLen += len(data)
                continue
            try:
                sent = transport.socket.send(data)
            except OSError as e:
                if e.errno not in _RETRY:
                    transport.write(data)       # the transport finds the error and closes
                    continue
                sent = 0
            if sent != len(data):
                transport.write(data[sent:])

    def doPoll(self, timeout):
        self.loops += 1
        if self.replies:
            self.flush()                # what timers and threads' calls wrote since the last turn
        try:
            events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                if selectable.__class__ is WaitingConnection:
                    selectable = selectable.waiting.wake(selectable)
                    if selectable is None:
                        continue
                handle(selectable, fd, event)
        if self.replies:
            self.flush()

    doIteration = doPoll


def _queued(transport) -> list[bytes] | None:
    replies = getattr(getattr(transport, "reactor", None), "replies", None)
    return None if replies is None else replies.get(transport)


def buffers_empty(transport) -> bool:
    """Nothing written to ``transport`` waits in its buffers (Twisted's or the reactor's turn)."""
    return (not transport._tempDataBuffer and transport.offset == len(transport.dataBuffer)
            and _queued(transport) is None)


def unsent_bytes(transport) -> int:
    """How many bytes written to ``transport`` wait in its buffers (write_timeout
    tells progress by it)."""
    return (len(transport.dataBuffer) - transport.offset
            + sum(len(part) for part in transport._tempDataBuffer)
            + sum(len(part) for part in _queued(transport) or ()))


def has_producer(transport) -> bool:
    return getattr(transport, "producer", None) is not None


def unlink_connector(transport) -> None:
    """A client transport and its connector point at each other: part them when the
    connection is lost, so it is freed by reference counting."""
    connector = getattr(transport, "connector", None)
    if connector is not None:
        connector.transport = None


def write(transport, data: bytes) -> None:
    """Write ``data``: queued for the end of the reactor's turn (one ``send()``, see
    :meth:`EPollReactor.flush`) when the transport is a plain TCP connection of our
    reactor with nothing in Twisted's buffers, else through the transport as usual
    (after what the turn queued for it, so that the order holds)."""
    if type(transport) is tcp.Server or type(transport) is tcp.Client:
        replies = getattr(transport.reactor, "replies", None)
        if replies is not None:
            if not transport._tempDataBuffer and transport.offset == len(transport.dataBuffer):
                queued = replies.get(transport)
                if queued is not None:
                    queued.append(data)
                    return
                if transport.connected and not transport.disconnecting:
                    replies[transport] = [data]
                    return
    transport.write(data)


def write_sequence(transport, parts: list[bytes]) -> None:
    if len(parts) == 1:
        write(transport, parts[0])
    else:
        write(transport, b"".join(parts))


def limit_reads(transport, size: int) -> None:
    """Let the next reads of a TCP transport take at most ``size`` (>= 1) bytes:
    ``tcp.Connection.doRead`` reads ``bufferSize`` bytes from the socket."""
    if type(transport) is tcp.Client or type(transport) is tcp.Server:
        transport.bufferSize = max(1, min(size, tcp.Connection.bufferSize))


def unlimit_reads(transport) -> None:
    if type(transport) is tcp.Client or type(transport) is tcp.Server:
        transport.__dict__.pop("bufferSize", None)


def socket_of(transport) -> socket.socket | None:
    return getattr(transport, "socket", None)


def set_transparent(sock: socket.socket, family: int) -> None:
    """IP_TRANSPARENT (IPV6_TRANSPARENT): the socket may accept connections for, or
    bind to, addresses that are not this host's (Linux TPROXY; needs CAP_NET_ADMIN)."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    if family == socket.AF_INET or family == socket.AF_INET6:
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)


class _TransparentClient(tcp.Client):
    """tcp.Client whose socket is transparent before Twisted binds it (to the
    client's address: see :func:`connect_transparent`)."""

    def createInternetSocket(self):
        sock = super().createInternetSocket()
        set_transparent(sock, self.addressFamily)
        return sock


class _TransparentConnector(tcp.Connector):
    def _makeTransport(self):
        return _TransparentClient(self.host, self.port, self.bindAddress, self, self.reactor)


def connect_transparent(reactor, host: str, port: int, factory, timeout: float = 30.0, bindAddress=None):
    """reactor.connectTCP, with a transparent socket: ``bindAddress`` may be an address
    of another host (the client's, under TPROXY).  A refused setsockopt or bind fails
    the connection (ConnectBindError), as any bind error does."""
    connector = _TransparentConnector(host, port, factory, timeout, bindAddress, reactor)
    connector.connect()
    return connector


# ---------------------------------------------------------------- connections that have sent nothing yet
class WaitingConnection:
    """An accepted client connection that has sent nothing yet: its descriptor is in the
    poller, and this is all squidpy holds for it (about 150 bytes, where a Twisted
    transport and its protocol take 1.7 KB).  Browsers open connections ahead of
    need, and a proxy of a big network holds thousands of them."""

    __slots__ = ("fd", "ip", "accepted", "port", "waiting")

    def __init__(self, fd: int, ip: str, accepted: float, port: WaitingPort, waiting: Waiting):
        self.fd = fd
        self.ip = ip
        self.accepted = accepted
        self.port = port
        self.waiting = waiting


class Waiting:
    """The connections a service's ports accepted that have not sent a byte yet, oldest
    first.  The first event on one (bytes, or the client closing) makes it the
    transport and protocol the port would have made at once (:meth:`wake`), and the
    reactor carries on with that event in the same turn, so nothing a client sees
    changes.  ``admit(ip)`` says whether a new connection may wait: the key it was
    counted under, or None to serve it now; ``released(key)`` uncounts it when it
    wakes or closes.  After
    ``timeout`` seconds a waiting connection wakes and is timed out like any other
    (the registry is watched by :class:`squidpy.proxy.timeouts.Timeouts`)."""

    limit = None

    def __init__(self, reactor, admit: Callable[[str], str | None], released: Callable[[str], None],
                 timeout: float):
        self.reactor = reactor
        self.admit = admit
        self.released = released
        self.timeout = timeout
        self.connections: dict[int, WaitingConnection] = {}

    def __len__(self) -> int:
        return len(self.connections)

    def add(self, port: WaitingPort, fd: int, ip: str) -> bool:
        """Keep an accepted connection waiting (False: ``admit`` says serve it now)."""
        key = self.admit(ip)
        if key is None:
            return False
        conn = WaitingConnection(fd, sys.intern(key), time.monotonic(), port, self)
        self.connections[fd] = conn
        self.reactor._selectables[fd] = conn
        self.reactor._poller.register(fd, select.EPOLLIN)
        return True

    def _forget(self, conn: WaitingConnection) -> None:
        fd = conn.fd
        del self.connections[fd]
        del self.reactor._selectables[fd]
        self.reactor._poller.unregister(fd)
        self.released(conn.ip)

    def wake(self, conn: WaitingConnection):
        """The transport the port makes of ``conn`` now (None: it was gone already)."""
        self._forget(conn)
        port = conn.port
        skt = socket.socket(port.addressFamily, socket.SOCK_STREAM, fileno=conn.fd)
        try:
            addr = _peer_address(skt.getpeername())
        except OSError:             # reset before it said anything
            skt.close()
            return None
        return port.serve(skt, addr, conn.accepted)

    @property
    def deadline(self) -> float | None:
        for conn in self.connections.values():
            return conn.accepted + self.timeout
        return None

    def timed_out(self) -> None:
        """Wake the connections that waited ``timeout`` and time them out."""
        before = time.monotonic() - self.timeout
        expired = []
        for conn in self.connections.values():
            if conn.accepted > before:
                break
            expired.append(conn)
        for conn in expired:
            transport = self.wake(conn)
            if transport is not None and transport.connected:
                transport.protocol.timed_out()

    def close_all(self) -> None:
        for conn in list(self.connections.values()):
            self._forget(conn)
            try:
                socket.close(conn.fd)
            except OSError:
                pass


def _peer_address(addr: tuple) -> tuple:
    """An accepted socket's address as Twisted gives it: IPv6 with its scope as text."""
    if len(addr) == 4:
        host = socket.getnameinfo(addr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        return (host[0], *addr[1:])
    return addr


class WaitingPort(tcp.Port):
    """A listening port whose new connections wait in ``waiting`` (when it admits them)
    instead of becoming transports at once; see :class:`Waiting`."""

    waiting: Waiting | None = None

    def doRead(self):
        waiting = self.waiting
        if waiting is None:
            return super().doRead()
        listening = self.socket
        for _ in range(self.numberAccepts):
            try:
                skt, addr = listening.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR):
                    continue
                return super().doRead()     # out of descriptors: Twisted's accept sheds and logs
            addr = _peer_address(addr)
            if not waiting.add(self, skt.fileno(), addr[0]):
                self.serve(skt, addr, time.monotonic())
                continue
            skt.detach()

    def serve(self, skt: socket.socket, addr: tuple, accepted: float):
        """What tcp.Port.doRead makes of an accepted socket: a protocol from the factory
        (told when the connection was ``accepted``) and its transport."""
        factory = self.factory
        assert factory is not None     # a listening port has its factory
        protocol: Any = factory.buildProtocol(self._buildAddr(addr))
        if protocol is None:
            skt.close()
            return None
        protocol.accepted = accepted
        session = self.sessionno
        self.sessionno = session + 1
        transport = self.transport(skt, protocol, addr, self, session, self.reactor)
        protocol.makeConnection(transport)
        return transport


def listen_tcp(reactor, port: int, factory, backlog: int, interface: str, waiting: Waiting | None):
    """reactor.listenTCP, with a :class:`WaitingPort`."""
    listener = WaitingPort(port, factory, backlog, interface, reactor)
    listener.waiting = waiting
    listener.startListening()
    return listener


def adopt_port(reactor, fd: int, family: int, factory, waiting: Waiting | None):
    """reactor.adoptStreamPort, with a :class:`WaitingPort`."""
    listener = WaitingPort._fromListeningDescriptor(reactor, fd, family, factory)
    listener.waiting = waiting
    listener.startListening()
    return listener
