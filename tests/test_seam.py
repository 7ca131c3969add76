"""The private Twisted details squidpy relies on (squidpy/proxy/seam.py), checked
against the installed Twisted: if a release changes them, these fail, loudly."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys

import pytest
from twisted.internet import epollreactor, protocol, tcp

from squidpy.proxy import seam


def run_pair(script, payload_size=0):
    """A real loopback TCP connection in a fresh reactor; ``script(server, client)``
    runs once both ends are connected; returns what the client received."""
    reactor = seam.EPollReactor()
    got = bytearray()
    ends = {}

    class Sink(protocol.Protocol):
        def dataReceived(self, data):
            got.extend(data)
            if len(got) >= payload_size:
                reactor.stop()

    def both_up():
        script(ends["server"], ends["client"])
        if payload_size == 0:
            reactor.stop()

    class Source(protocol.Protocol):
        def connectionMade(self):
            ends["server"] = self.transport
            if "client" in ends:
                both_up()

    class SinkFactory(protocol.ClientFactory):
        def buildProtocol(self, addr):
            p = Sink()
            return p

        def clientConnectionFailed(self, connector, reason):
            reactor.stop()

    listener = reactor.listenTCP(0, protocol.Factory.forProtocol(Source), interface="127.0.0.1")
    connector = reactor.connectTCP("127.0.0.1", listener.getHost().port, SinkFactory())

    def client_up():
        if connector.transport is not None and connector.transport.connected:
            ends["client"] = connector.transport
            if "server" in ends:
                both_up()
        else:
            reactor.callLater(0.001, client_up)

    reactor.callLater(0, client_up)
    reactor.callLater(10, reactor.stop)
    reactor.run(installSignalHandlers=False)
    listener.stopListening()
    return bytes(got), ends, connector


def test_reactor_internals_exist():
    r = epollreactor.EPollReactor()
    for name in seam.REACTOR_ATTRIBUTES:
        assert hasattr(r, name), f"EPollReactor lost {name}"
    assert callable(r._doReadOrWrite)
    assert isinstance(r._selectables, dict)


def test_transport_internals_and_direct_write():
    payload = bytes(range(256)) * 40000          # 10 MB: more than a socket buffer takes at once

    def script(server, client):
        for name in seam.TRANSPORT_ATTRIBUTES:
            assert hasattr(server, name), f"tcp transport lost {name}"
        assert isinstance(server._tempDataBuffer, list)
        assert isinstance(server.dataBuffer, bytes) and isinstance(server.offset, int)
        assert isinstance(server.socket, socket.socket)
        assert type(server) is tcp.Server and type(client) is tcp.Client
        assert seam.buffers_empty(server)
        seam.write(server, payload[:1000])              # held for the end of the turn
        assert not seam.buffers_empty(server) and seam.unsent_bytes(server) == 1000
        server.reactor.flush()                          # one send(): the socket takes it all
        assert seam.buffers_empty(server)
        seam.write(server, payload[1000:2000])
        seam.write(server, payload[2000:])
        assert seam.unsent_bytes(server) == len(payload) - 1000
        server.reactor.flush()                          # too much for the socket: the rest queued in order
        assert not seam.buffers_empty(server) and server.reactor.replies == {}

    got, ends, connector = run_pair(script, len(payload))
    assert got == payload


def test_bytes_written_through_twisted_meanwhile_keep_their_place():
    """A turn's queued replies come before what is written through Twisted after them
    (flush puts them in front), and once Twisted holds bytes, later writes go behind those."""
    payload = b"".join(b"%06d" % i for i in range(100000))

    def script(server, client):
        seam.write(server, payload[:10])
        seam.write_sequence(server, [payload[10:20], payload[20:30]])
        assert b"".join(server.reactor.replies[server]) == payload[:30]
        server.write(payload[30:40])                    # Twisted's own path
        seam.write(server, payload[40:50])              # Twisted has bytes: after them
        seam.write(server, payload[50:])
        assert b"".join(server.reactor.replies[server]) == payload[:30]

    got, ends, _ = run_pair(script, len(payload))
    assert got == payload


def test_a_turns_replies_go_out_in_one_send_each():
    payload = b"abcdefghij" * 3

    def script(server, client):
        seam.write(server, payload[:10])
        seam.write(server, payload[10:20])
        seam.write_sequence(server, [payload[20:25], payload[25:]])
        assert server.reactor.replies[server] == [payload[:10], payload[10:20], payload[20:]]
        assert client.reactor.replies == {server: server.reactor.replies[server]}

    got, ends, _ = run_pair(script, len(payload))
    assert got == payload


def test_connector_and_transport_can_be_parted():
    _, ends, connector = run_pair(lambda server, client: None, 0)
    client = ends["client"]
    assert client.connector is connector and connector.transport is client
    seam.unlink_connector(client)
    assert connector.transport is None


def test_write_falls_back_for_other_transports():
    class Buffer:
        def __init__(self):
            self.written = []

        def write(self, data):
            self.written.append(data)

    b = Buffer()
    seam.write(b, b"abc")
    seam.write_sequence(b, [b"d", b"ef"])
    assert b.written == [b"abc", b"def"]


def test_reads_can_be_limited_to_a_delay_pools_allowance():
    """doRead reads bufferSize bytes: limit_reads makes each read take at most that."""
    import inspect
    assert "self.socket.recv(self.bufferSize)" in inspect.getsource(tcp.Connection.doRead)
    payload = b"x" * 5000
    sizes = []

    def script(server, client):
        seam.limit_reads(client, 700)
        assert client.bufferSize == 700
        original = client.protocol.dataReceived

        def counting(data):
            sizes.append(len(data))
            original(data)
        client.protocol.dataReceived = counting
        server.write(payload)

    got, ends, _ = run_pair(script, len(payload))
    assert got == payload and max(sizes) <= 700 and len(sizes) >= 8
    seam.unlimit_reads(ends["client"])
    assert ends["client"].bufferSize == tcp.Connection.bufferSize
def test_transparent_connector_overrides_what_it_needs():
    for cls, name in seam.CONNECTOR_METHODS:
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lost {name}"
    assert issubclass(seam._TransparentConnector, tcp.Connector)
    assert issubclass(seam._TransparentClient, tcp.Client)


def test_transparent_client_socket_connects_from_the_given_address():
    """The socket is transparent before it is bound (root has CAP_NET_ADMIN; otherwise
    the connection fails with a bind error, which is what squidpy reports)."""
    reactor = seam.EPollReactor()
    result = {}

    class Up(protocol.Protocol):
        def connectionMade(self):
            sock = self.transport.getHandle()
            result["transparent"] = sock.getsockopt(socket.SOL_IP, seam.IP_TRANSPARENT)
            result["local"] = self.transport.getHost().host
            reactor.stop()

    class Factory(protocol.ClientFactory):
        protocol = Up

        def clientConnectionFailed(self, connector, reason):
            result["failed"] = reason.value
            reactor.stop()

    listener = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface="127.0.0.1")
    seam.connect_transparent(reactor, "127.0.0.1", listener.getHost().port, Factory(), 5, ("127.0.0.2", 0))
    reactor.callLater(10, reactor.stop)
    reactor.run(installSignalHandlers=False)
    listener.stopListening()
    if "failed" in result:
        from twisted.internet.error import ConnectBindError
        assert isinstance(result["failed"], ConnectBindError) and os.geteuid() != 0
    else:
        assert result == {"transparent": 1, "local": "127.0.0.2"}


# what `squidpy run` does before anything imports Twisted (squidpy.proxy.reactor), in a fresh
# interpreter: this one imported Twisted with its TLS long ago
WITHOUT_TLS = r"""
import sys
if sys.argv[1] == "after-openssl":
    import OpenSSL.SSL                          # a configuration's TLS loaded first: Twisted still goes without
from squidpy.proxy.reactor import TWISTED_TLS_PROBES, import_twisted_without_tls
import_twisted_without_tls()
from twisted.internet import endpoints, interfaces, posixbase, protocol, tcp
from squidpy.proxy import seam
assert all(name in sys.modules for name in TWISTED_TLS_PROBES)
assert sys.argv[1] == "after-openssl" or not {"OpenSSL", "cryptography"} & set(sys.modules), "Twisted loaded TLS"
assert sys.argv[1] == "after-openssl" or not {"ssl", "_hashlib"} & set(sys.modules), "Twisted loaded Python's OpenSSL"
import asyncio.sslproto, hashlib
assert asyncio.sslproto.ssl is None and hashlib.sha256(b"abc").hexdigest().startswith("ba7816bf")
from urllib.request import HTTPSHandler       # whole when imported later (prometheus_client needs it)
from http.client import HTTPSConnection
assert not tcp.Server.TLS and not interfaces.ITLSTransport.implementedBy(tcp.Server), "tcp.Server kept startTLS"
assert posixbase.tls is None and posixbase.ssl is None and endpoints.TLSMemoryBIOFactory is None

reactor = seam.EPollReactor()
got = bytearray()

class Echo(protocol.Protocol):
    def dataReceived(self, data):
        assert type(self.transport) is tcp.Server
        seam.write(self.transport, data)

class Client(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"ping")
    def dataReceived(self, data):
        got.extend(data)
        reactor.stop()

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
endpoint = endpoints.HostnameEndpoint(reactor, b"127.0.0.1", port.getHost().port)
endpoint.connect(protocol.Factory.forProtocol(Client)).addErrback(lambda f: (print(f), reactor.stop()))
reactor.callLater(10, reactor.stop)
reactor.run()
assert bytes(got) == b"ping", got

import OpenSSL.SSL                              # squidpy's own TLS still has it
from squidpy.tls.session import ClientTlsSession
assert OpenSSL.SSL.Context is not None and ClientTlsSession
print("ok")
"""


@pytest.mark.parametrize("first", ["plain", "after-openssl"])
def test_squidpy_run_imports_twisted_without_its_tls(first):
    """Twisted's tcp, posixbase and endpoints take their plain-TCP paths when pyOpenSSL
    cannot be imported (Twisted's ``tls`` extra is optional); import_twisted_without_tls
    relies on it.  A Twisted release that probes elsewhere, or no longer falls back,
    fails here (and the proxy's memory test in test_process.py)."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_TLS, first], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stdout + done.stderr


# ---------------------------------------------------------------- connections that wait for their first bytes
class Answerer(protocol.Protocol):
    accepted = 0.0
    timeouts = 0

    def dataReceived(self, data):
        self.transport.write(data)

    def timed_out(self):
        self.timeouts += 1
        self.transport.loseConnection()


class Answerers(protocol.Factory):
    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        p = Answerer()
        p.factory, p.addr = self, addr
        self.built.append(p)
        return p


def turn(reactor, until, turns=200):
    """Run the reactor's turns (up to ``turns`` of 10 ms) until ``until()``."""
    for _ in range(turns):
        if until():
            return True
        reactor.doPoll(0.01)
    return until()


def waiting_port(admit=lambda ip: True, timeout=60.0, interface="127.0.0.1"):
    reactor = seam.EPollReactor()
    counted = []
    released = []

    def admitted(ip):
        if not admit(ip):
            return None
        counted.append(ip)
        return ip

    waiting = seam.Waiting(reactor, admitted, released.append, timeout)
    factory = Answerers()
    port = seam.listen_tcp(reactor, 0, factory, 50, interface, waiting)
    return reactor, waiting, factory, port, counted, released


def test_port_internals_exist():
    reactor = seam.EPollReactor()
    port = seam.listen_tcp(reactor, 0, Answerers(), 5, "127.0.0.1", None)
    try:
        for name in seam.PORT_ATTRIBUTES:
            assert hasattr(port, name), name
        assert port.transport is tcp.Server
        assert isinstance(port, tcp.Port)
    finally:
        port.stopListening()


def test_a_silent_connection_is_a_descriptor_until_its_first_bytes():
    reactor, waiting, factory, port, counted, released = waiting_port()
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as client:
        assert turn(reactor, lambda: len(waiting) == 1)
        assert factory.built == [] and counted == ["127.0.0.1"] and released == []
        client.sendall(b"hello")
        # woken and read in the same turn: no turn passes between the protocol's birth and its bytes
        assert turn(reactor, lambda: factory.built)
        assert len(waiting) == 0 and released == ["127.0.0.1"]
        got = bytearray()

        def answered():
            ready, _, _ = select.select([client], [], [], 0)
            if ready:
                got.extend(client.recv(100))
            return got == b"hello"

        assert turn(reactor, answered)
        echo = factory.built[0]
        assert echo.addr.host == "127.0.0.1" and echo.addr.port == client.getsockname()[1]
        assert 0 < echo.accepted <= __import__("time").monotonic()
    port.stopListening()


def test_a_silent_connection_that_closes_reaches_its_protocol_as_closed():
    reactor, waiting, factory, port, counted, released = waiting_port()
    lost = []
    Answerer.connectionLost = lambda self, reason: lost.append(reason.type)
    try:
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        assert turn(reactor, lambda: len(waiting) == 1)
        client.close()
        assert turn(reactor, lambda: lost)
        assert len(factory.built) == 1 and released == ["127.0.0.1"] and len(waiting) == 0
    finally:
        del Answerer.connectionLost
        port.stopListening()


def test_a_connection_not_admitted_is_served_at_once():
    reactor, waiting, factory, port, counted, released = waiting_port(admit=lambda ip: False)
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5):
        assert turn(reactor, lambda: factory.built)
        assert len(waiting) == 0 and counted == [] and released == []
    port.stopListening()


def test_a_connection_that_waits_too_long_is_timed_out_by_its_protocol():
    reactor, waiting, factory, port, counted, released = waiting_port(timeout=0.0)
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as client:
        assert turn(reactor, lambda: len(waiting) == 1)
        assert waiting.deadline is not None and waiting.limit is None
        waiting.timed_out()         # what Timeouts' sweep calls once the deadline passed
        assert [p.timeouts for p in factory.built] == [1] and len(waiting) == 0
        assert turn(reactor, lambda: not factory.built[0].transport.connected)
        assert client.recv(10) == b""
    assert waiting.deadline is None
    port.stopListening()


def test_close_all_closes_the_waiting_descriptors():
    reactor, waiting, factory, port, counted, released = waiting_port()
    with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as client:
        assert turn(reactor, lambda: len(waiting) == 1)
        waiting.close_all()
        assert len(waiting) == 0 and released == ["127.0.0.1"] and factory.built == []
        assert client.recv(10) == b""
    assert not any(isinstance(s, seam.WaitingConnection) for s in reactor._selectables.values())
    port.stopListening()


def test_an_ipv6_connection_waits_and_wakes_with_twisteds_address():
    reactor, waiting, factory, port, counted, released = waiting_port(interface="::1")
    with socket.create_connection(("::1", port.getHost().port), timeout=5) as client:
        assert turn(reactor, lambda: len(waiting) == 1)
        client.sendall(b"hi")
        assert turn(reactor, lambda: factory.built)
        addr = factory.built[0].addr
        assert (type(addr).__name__, addr.host, addr.port) == ("IPv6Address", "::1", client.getsockname()[1])
        assert counted == released == ["::1"]
    port.stopListening()
