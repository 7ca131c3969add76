"""Every private Twisted detail squidpy relies on, in one place.

Twisted's public API does not cover five things a fast proxy needs: the
reactor's poll loop without its per-event logging context, whether a
transport's write buffers are empty (before handing its socket to splice),
writing straight to a socket when nothing is queued (which spares two
``epoll_ctl`` calls per reply), unlinking a client transport from its
connector (a reference cycle), reading less than 64 KB at a time from a
socket (a delay pool reads no more than its bucket holds, as Squid does), and a
client socket that gets IP_TRANSPARENT before it is bound (TPROXY: connecting
with the client's address).  Each is done here and nowhere else; tests/test_seam.py
checks every assumption against the installed Twisted, so an upgrade that
changes them fails loudly, and setup.cfg bounds Twisted to the releases CI
has proven.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet import epollreactor, tcp

#: the attributes of twisted.internet.abstract.FileDescriptor / tcp.Connection used below
TRANSPORT_ATTRIBUTES = ("_tempDataBuffer", "dataBuffer", "offset", "socket", "producer", "connected",
                        "disconnecting")
#: the attributes of twisted.internet.epollreactor.EPollReactor used by fast_poll
REACTOR_ATTRIBUTES = ("_poller", "_selectables", "_doReadOrWrite")
#: what connect_transparent overrides in twisted.internet.tcp
CONNECTOR_METHODS = ((tcp.Connector, "_makeTransport"), (tcp.Client, "createInternetSocket"))

IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = 75          # linux/in6.h; Python does not name it

_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class EPollReactor(epollreactor.EPollReactor):
    """Twisted's epoll reactor without ``callWithLogger`` around every I/O event
    (several per cent of a request's CPU); our own errors already say which
    exchange they belong to.  ``loops`` counts its turns (Squid's "Select loop called")."""

    loops = 0

    def doPoll(self, timeout):
        self.loops += 1
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
                handle(selectable, fd, event)

    doIteration = doPoll


def buffers_empty(transport) -> bool:
    """Nothing written to ``transport`` waits in its buffers."""
    return not transport._tempDataBuffer and transport.offset == len(transport.dataBuffer)


def unsent_bytes(transport) -> int:
    """How many bytes written to ``transport`` wait in its buffers (write_timeout
    tells progress by it)."""
    return (len(transport.dataBuffer) - transport.offset
            + sum(len(part) for part in transport._tempDataBuffer))


def has_producer(transport) -> bool:
    return getattr(transport, "producer", None) is not None


def unlink_connector(transport) -> None:
    """A client transport and its connector point at each other: part them when the
    connection is lost, so it is freed by reference counting."""
    connector = getattr(transport, "connector", None)
    if connector is not None:
        connector.transport = None


def write(transport, data: bytes) -> None:
    """Write ``data``: straight to the socket when the transport has nothing queued
    (a plain TCP connection), else through the transport as usual."""
    if (type(transport) is tcp.Server or type(transport) is tcp.Client) and transport.connected \
            and not transport.disconnecting and not transport._tempDataBuffer \
            and transport.offset == len(transport.dataBuffer):
        try:
            sent = transport.socket.send(data)
        except OSError as e:
            if e.errno not in _RETRY:
                transport.write(data)       # the transport finds the error and closes
                return
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
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
