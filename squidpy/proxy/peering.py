"""The peers' I/O: their names looked up, TCP probes, TLS sessions, and the ICP port.

Every decision is made by :mod:`squidpy.peers` (which parent, whether a peer is
up, what an ICP message says) and by the exchanges; :class:`Peering` carries out
the rest: it looks each ``cache_peer`` host up when a configuration is taken,
probes peers that are down (a TCP connect to their HTTP port, at most one at a
time and once a second each), sends the ICP queries of peer selection and hands
the replies to the exchange that asked, and answers other proxies' ICP queries
from the cache (``icp_port``, ``icp_access``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from twisted.internet import protocol
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import LoopingCall

from squidpy.acl.checklist import Checklist, Pending
from squidpy.acl.outgoing import for_probe, for_standby
from squidpy.exchange.caching import CacheRole, Found
from squidpy.http.url import BadTarget, parse_target
from squidpy.ip import ip_address, ip_text
from squidpy.log.entry import LogEntry
from squidpy.peers import hashing, icp
from squidpy.peers.selection import PeerTable
from squidpy.proxy.server_side import _ResolvedReactor, pool_key

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall

    from squidpy.config.loader import Config
    from squidpy.proxy.driver import ExchangeDriver

log = logging.getLogger("squidpy")

TICK = 0.25         # seconds between looks at the probes due


class _Probe(protocol.Protocol):
    def connectionMade(self):
        self.transport.loseConnection()


class _ProbeFactory(protocol.Factory):
    protocol = _Probe


class IcpPort(protocol.DatagramProtocol):
    """The UDP socket of ``icp_port``: queries from other proxies, replies to ours."""

    def __init__(self, peering: "Peering"):
        self.peering = peering

    def datagramReceived(self, data: bytes, addr) -> None:
        try:
            msg = icp.decode(data)
        except icp.IcpError:
            return      # Squid drops what is not a well-formed ICPv2 message, without a word
        host, port = ip_text(addr[0]), addr[1]
        if msg.opcode == icp.ICP_QUERY:
            self.peering.answer(msg, host, port, len(data))
        else:
            self.peering.replied(msg, host, port)


class Peering:
    def __init__(self, service):
        self.service = service
        self.reactor = service.reactor
        self.table = PeerTable([], time.time())
        self.config = None
        self.started = False
        self.first = True
        self.icp_port = None            # the listening UDP port
        self.icp_key = None             # (address, port) it listens on
        self.waiting: dict[int, tuple] = {}      # reqnum -> (driver, sent at)
        self.timers: dict[ExchangeDriver, DelayedCall] = {}     # driver -> its ICP wait
        self._standby_opening: set[int] = set()     # id() of the peers a standby connection is opening to
        self._loop = LoopingCall(self.tick)
        service.pool.on_peer_connections = self._peer_connections

    # ------------------------------------------------------------ configuration
    def configure(self, config: Config) -> None:
        """A configuration is taken: a new table of its peers (their state starts over,
        as Squid's does on reconfigure)."""
        self.config = config
        old = self.table
        self.table = PeerTable(config.cache_peer, time.time(), first=self.first, started=self.service.started)
        self.table.reqnum = old.reqnum      # ICP request numbers never repeat while replies may be out
        self.table.icp_open = self.icp_port is not None
        self.first = False
        table = self.table
        if not hashing.RANKING_IN_C and (table.carp or table.sourcehash or table.userhash):
            log.warning("cache_peer: squidpy was installed without a C compiler: CARP, sourcehash and "
                        "userhash rank parents in Python, about 100 times slower for a URL not seen before "
                        "(reinstall with gcc and python3-dev for squidpy/peers/_carp.c)")
        if self.started:
            self._resolve_all()
            self._open_icp()

    def start(self) -> None:
        self.started = True
        self._resolve_all()
        self._open_icp()
        if not self._loop.running:
            self._loop.start(TICK, now=False)

    def stop(self) -> None:
        self.started = False
        if self._loop.running:
            self._loop.stop()
        if self.icp_port is not None:
            self.icp_port.stopListening()
            self.icp_port = self.icp_key = None
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
        self.waiting.clear()

    def _resolve_all(self) -> None:
        table = self.table
        for peer in table.peers:
            address = _address_of(peer.host)
            if address is not None:
                self._resolved(table, peer, [address])
                continue
            self.service.dns.resolve(peer.host).addCallbacks(
                lambda addresses, p=peer: self._resolved(table, p, addresses),
                lambda failure, p=peer: log.error("cache_peer %s: cannot resolve %s: %s", p.name, p.host,
                                                  failure.getErrorMessage()))

    def _resolved(self, table: PeerTable, peer, addresses: list[str]) -> None:
        if table is not self.table:
            return          # a reconfigure replaced that table
        for line in table.resolved(peer, addresses):
            log.info("%s", line)
        self.tick()

    # ------------------------------------------------------------ probes and standby connections
    def tick(self) -> None:
        """Probes due now (peers that are down, asked about by a selection), and the
        standby connections to keep open."""
        table, now = self.table, time.time()
        for peer in table.probes_due(now):
            self._probe(table, peer)
        for peer in table.peers:
            if peer.standby:
                self._standby(table, peer, now)

    def _peer_connections(self, name: str, delta: int) -> None:
        """A connection to a peer opened (+1) or closed (-1): max-conn counts them."""
        peer = self.table.find(name)
        if peer is not None:
            state = self.table.state(peer)
            state.conn_open = max(0, state.conn_open + delta)

    def _standby(self, table: PeerTable, peer, now: float) -> None:
        """standby=N: keep N idle connections open to an up peer, opening one at a time
        (as Squid does); requests take them like any idle connection to the peer.  They
        are opened from the address tcp_outgoing_address gives them (Squid's
        getOutgoingAddress, for a made-up request), and pooled under that address as
        the driver pools a request's connections, so requests sent from it reuse them."""
        pool, state = self.service.pool, table.state(peer)
        bind = (for_standby(self.config.tcp_outgoing_address, peer.name, peer.host, state.addresses)
                if self.config.tcp_outgoing_address else None)
        key = pool_key(("peer", peer.name, peer.http_port), bind)
        state.standby_idle = pool.idle_count(key)
        if (state.standby_idle >= peer.standby or id(peer) in self._standby_opening
                or not state.up(now, self.config.dead_peer_timeout) or not state.can_open_more()):
            return
        self._standby_opening.add(id(peer))

        def opened(server) -> None:
            self._standby_opening.discard(id(peer))
            pool.release(server)
            if table is self.table:
                state.standby_idle = pool.idle_count(key)

        def failed(_failure) -> None:
            self._standby_opening.discard(id(peer))
            if table is self.table:     # standby failures count towards connect-fail-limit
                for line in table.connect_failed(peer, time.time()):
                    log.warning("%s", line)
        pool.connect(key, state.addresses, self.tls_factory(peer), timeout=self.connect_timeout(peer),
                     bind=bind).addCallbacks(
            opened, failed)

    def _probe(self, table: PeerTable, peer) -> None:
        """A TCP connect to the peer, closed once made, from the address tcp_outgoing_address
        gives a connection without a request (as Squid's peerProbeConnect)."""
        addresses = table.state(peer).addresses
        lines = self.config.tcp_outgoing_address
        bind = for_probe(lines, peer.name, addresses) if lines else None
        endpoint = HostnameEndpoint(_ResolvedReactor(self.reactor, addresses, bind), peer.host, peer.http_port,
                                    timeout=self.connect_timeout(peer))

        def done(ok: bool) -> None:
            if table is not self.table:
                return
            for line in table.probe_done(peer, ok, time.time()):
                log.warning("%s", line)
            if table.state(peer).probe_wanted:
                self.tick()
        # Factory provides IProtocolFactory through zope's @implementer, which mypy does not read
        probing = endpoint.connect(_ProbeFactory())  # type: ignore[arg-type]
        probing.addCallbacks(lambda _p: done(True), lambda _f: done(False))

    # ------------------------------------------------------------ connecting to peers
    def connect_timeout(self, peer) -> float:
        return peer.connect_timeout or self.config.peer_connect_timeout

    def tls_factory(self, peer):
        """What makes the TLS session of a connection to a ``tls`` peer (None: plain TCP)."""
        if peer.tls is None:
            return None
        tls = self.service.tls
        return lambda: tls.peer_session(peer)

    # ------------------------------------------------------------ ICP: our queries
    def query(self, driver, queries, timeout: float) -> None:
        now = time.time()
        port = self.icp_port
        for q in queries:
            self.waiting[q.reqnum] = (driver, now)
            if port is not None:
                for address in self.table.state(q.peer).addresses[:1]:
                    port.write(icp.encode(icp.IcpMessage(icp.ICP_QUERY, q.reqnum, q.url)), (address, q.peer.icp_port))
        self.timers[driver] = self.reactor.callLater(timeout, self._timed_out, driver)

    def forget(self, driver, reqnums) -> None:
        for reqnum in reqnums:
            entry = self.waiting.get(reqnum)
            if entry is not None and entry[0] is driver:
                del self.waiting[reqnum]
        timer = self.timers.pop(driver, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self, driver) -> None:
        self.timers.pop(driver, None)
        driver.icp_timed_out()

    def replied(self, msg: icp.IcpMessage, host: str, port: int) -> None:
        peer = self.table.peer_at(host, port)
        if peer is None:
            return          # not one of our peers: ignored, as Squid ignores it
        now = time.time()
        waiting = self.waiting.get(msg.reqnum)
        rtt = int((now - waiting[1]) * 1000) if waiting is not None else None
        for line in self.table.icp_reply_from(peer, now, rtt):
            log.warning("%s", line)
        if waiting is not None:
            waiting[0].icp_reply(peer, msg.name, msg.reqnum, now)

    # ------------------------------------------------------------ ICP: answering other proxies
    def _open_icp(self) -> None:
        self._open_icp_port()
        self.table.icp_open = self.icp_port is not None

    def _open_icp_port(self) -> None:
        config = self.config
        wanted = (config.udp_incoming_address, config.icp_port) if config.icp_port else None
        if wanted == self.icp_key:
            return
        if self.icp_port is not None:
            self.icp_port.stopListening()
            self.icp_port = self.icp_key = None
        if wanted is None:
            return
        try:
            self.icp_port = self.reactor.listenUDP(config.icp_port, IcpPort(self),
                                                   interface=config.udp_incoming_address or "")
        except Exception as e:      # a port in use must not stop the proxy: Squid logs it too
            log.error("cannot open icp_port %s: %s (no ICP: peers are not queried)", config.icp_port, e)
            return
        self.icp_key = wanted
        log.info("Accepting ICP messages on %s:%d", config.udp_incoming_address or "*",
                 self.icp_port.getHost().port)

    def answer(self, query: icp.IcpMessage, host: str, port: int, size: int) -> None:
        """Squid's doV2Query: ICP_ERR for a URL it cannot read, ICP_DENIED unless icp_access
        allows the sender, else ICP_HIT when the URL is fresh in the cache (stale too with
        icp_hit_stale), ICP_MISS otherwise."""
        try:
            target = parse_target("GET", query.url)
            if target.kind != "absolute":
                raise BadTarget("ERR_INVALID_URL", "not an absolute URL")
        except BadTarget:
            return self._send_answer(query, icp.ICP_ERR, host, port)
        rules = self.config.icp_access
        ch = Checklist(src=host, src_port=port, method="GET", url=target.url, scheme=target.scheme,
                       host=target.host, port=target.port, path=target.path, ip_literal=target.ip_literal)
        try:
            allowed = bool(rules) and rules.check(ch).allowed
        except Pending:
            allowed = False         # a fast check: what needs a lookup does not match
        if not allowed:
            return self._send_answer(query, icp.ICP_DENIED, host, port, ch)
        cache = self.service.cache
        if cache is None:
            return self._send_answer(query, icp.ICP_MISS, host, port, ch)
        found = cache.find_in_memory(target.url, [])
        if found is not None:
            return self._answer_found(query, target.url, found, host, port, ch)
        cache.on_disk(cache.store.find_on_disk, target.url, []).addCallbacks(
            lambda got: self._answer_found(query, target.url, got, host, port, ch),
            lambda _f: self._send_answer(query, icp.ICP_MISS, host, port, ch))

    def _answer_found(self, query, url: str, found, host: str, port: int, ch) -> None:
        reply, body, names = found
        opcode = icp.ICP_MISS
        cache = self.service.cache
        if reply is not None and cache is not None:
            decision = CacheRole(cache, url, "GET", [], True).found(reply, body, names, time.time(), False)
            if decision is Found.SERVE or (self.config.icp_hit_stale and decision in (
                    Found.REVALIDATE, Found.SERVE_AND_REFRESH)):
                opcode = icp.ICP_HIT
        self._send_answer(query, opcode, host, port, ch)

    def _send_answer(self, query, opcode: int, host: str, port: int, ch=None) -> None:
        if self.icp_port is None:
            return
        data = icp.encode(icp.reply_to(query, opcode))
        self.icp_port.write(data, (host, port))
        if self.config.log_icp_queries:
            self._log(query, opcode, host, len(data), ch)

    def _log(self, query, opcode: int, host: str, size: int, ch) -> None:
        """Squid logs each answered query: ``UDP_MISS/000 SIZE ICP_QUERY URL - HIER_NONE/- -``."""
        now = time.time()
        entry = LogEntry(now)
        entry.end = now
        entry.client_ip = host
        entry.method = "ICP_QUERY"
        entry.url = query.url
        entry.result = icp.LOG_CODES.get(opcode, "UDP_INVALID")
        entry.status = 0
        entry.reply_body_size = size
        self.service.log_transaction(entry, ch)


def _address_of(host: str) -> str | None:
    """The canonical text of a peer host that is an IP address (None: a name)."""
    try:
        return str(ip_address(host))
    except ValueError:
        return None
