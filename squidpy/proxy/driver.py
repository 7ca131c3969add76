"""Carries out one exchange's commands with Twisted, and feeds it what happens.

An :class:`ExchangeDriver` is the I/O half of a
:class:`~squidpy.exchange.Exchange`: it writes to the client, looks names up,
takes origin connections from the pool or makes new ones, streams stored
bodies, keeps the copy of a reply the cache stores, opens tunnels and hands
the log line over.  It decides nothing: every choice was made by the
exchange, and every result goes back to it as an event.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from twisted.internet import defer

from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.exchange import Exchange, State
from squidpy.proxy.closing import lose
from squidpy.proxy.dns import DnsError
from squidpy.proxy.server_side import UpstreamError, pool_key
from squidpy.proxy.tunnel import Tunnel

log = logging.getLogger("squidpy")


class NullClient:
    """Stands in for a client connection that is not there (a background refresh, a
    fetch its client left): whatever is written to it is dropped."""

    tunnel = None

    def write(self, data) -> None:
        pass

    def write_sequence(self, parts) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self, reason) -> None:
        pass

    def resume_reading(self, reason) -> None:
        pass

    def exchange_finished(self, driver, keep_alive) -> None:
        pass


class ExchangeDriver:
    __slots__ = ("exchange", "client", "service", "server", "tee", "streamer", "tunnel", "delay_pool", "_busy",
                 "_queue", "__weakref__")

    def __init__(self, exchange: Exchange, client, service):
        self.exchange = exchange
        self.client = client            # the ClientConnection (a NullClient for background refreshes)
        self.service = service
        self.server = None              # the origin connection in use
        self.tee = None                 # the copy of the reply being kept for the store
        self.streamer = None            # a stored body being read from disk
        self.tunnel = None
        self.delay_pool = 0             # the delay pool this transfer reads through (0: none), for mgr pages
        self._busy = False
        self._queue: list = []           # event batches waiting while commands run

    @property
    def finished(self) -> bool:
        return self.exchange.state is State.DONE

    # ------------------------------------------------------------ events in
    def feed(self, event: ev.Event) -> None:
        self.feed_all((event,))

    def feed_all(self, events) -> None:
        """Hand events to the exchange and carry out its commands.  Events that arrive
        while commands run (a result known at once) wait for their turn."""
        if self._busy:
            self._queue.append(events)
            return
        self._busy = True
        try:
            self._run(self.exchange.handle_all(events))
            while self._queue:
                self._run(self.exchange.handle_all(self._queue.pop(0)))
        except Exception:
            # a bug: said in cache_log with its traceback, and the client's connection is
            # closed (no half reply, and no client left waiting on a request that went nowhere)
            log.exception("BUG: %r failed; closing the client's connection", self.exchange)
            self._queue.clear()
            self.client.abort()
        finally:
            self._busy = False

    # ------------------------------------------------------------ commands out
    def _run(self, commands: list[c.Command]) -> None:
        pending: list[bytes] = []           # client writes, joined into one
        for cmd in commands:
            kind = type(cmd)
            if kind is c.SendToClient:
                data = cmd.data
                if type(data) is tuple:
                    pending.extend(data)
                else:
                    pending.append(data)
                continue
            if pending:
                self.client.write_sequence(pending)
                pending = []
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise RuntimeError(f"no driver for {cmd!r}")
            handler(self, cmd)
        if pending:
            self.client.write_sequence(pending)

    def _abort_client(self, _cmd) -> None:
        self.client.abort()

    def _detach_client(self, _cmd) -> None:
        self.client = NullClient()
        if self.server is not None:
            self.server.resume_reading("client")

    def _pause_client(self, cmd: c.PauseClient) -> None:
        self.client.pause_reading(cmd.reason)

    def _resume_client(self, cmd: c.ResumeClient) -> None:
        self.client.resume_reading(cmd.reason)

    # lookups
    def _look_up(self, cmd: c.LookUp) -> None:
        dns = self.service.dns
        if cmd.fact in ("dst", "host"):
            started = time.monotonic()
            d = dns.resolve(cmd.name)
            d.addCallbacks(lambda addresses: self._fact(cmd.fact, addresses, time.monotonic() - started),
                           lambda _f: self._fact(cmd.fact, [], time.monotonic() - started))
        else:
            dns.reverse(cmd.name).addCallbacks(lambda name: self._fact(cmd.fact, name),
                                               lambda _f: self._fact(cmd.fact, ""))

    def _fact(self, fact: str, value, seconds: float = 0.0) -> None:
        if not self.finished:
            self.feed(ev.FactKnown(fact, value, seconds))

    def _collect_stats(self, cmd: c.CollectStats) -> None:
        d = self.service.collect_stats(cmd.action, cmd.needs, cmd.params)
        d.addCallbacks(self._stats_collected, self._stats_failed)

    def _stats_collected(self, reports: list) -> None:
        if not self.finished:
            self.feed(ev.StatsCollected(reports))

    def _stats_failed(self, failure) -> None:
        log.error("cache manager: gathering the figures failed: %s", failure.getErrorMessage())
        if not self.finished:
            self.client.abort()

    def _ask_helper(self, cmd: c.AskHelper) -> None:
        helper = cmd.helper
        self.service.running_helpers.ask(helper, cmd.line, cmd.reservation).addCallback(
            lambda answer: self._helper_answered(helper, answer))

    def _helper_answered(self, helper: str, answer) -> None:
        if not self.finished:
            self.feed(ev.HelperAnswered(helper, answer.reply, answer.child))

    def _reserve_helper(self, cmd: c.ReserveHelper) -> None:
        self.service.running_helpers.reserve(cmd.helper, cmd.child)

    def _release_helper(self, cmd: c.ReleaseHelper) -> None:
        self.service.running_helpers.release(cmd.helper, cmd.child)

    def _refresh_external(self, cmd: c.RefreshExternal) -> None:
        self.service.running_helpers.refresh_external(cmd.type_name, cmd.line)

    def _look_up_cache(self, cmd: c.LookUpCache) -> None:
        cache = self.service.cache
        cache.on_disk(cache.store.find_on_disk, cmd.url, cmd.request_headers).addCallbacks(
            self._found_on_disk, self._disk_failed, callbackArgs=(cmd,))

    def _found_on_disk(self, found, cmd: c.LookUpCache | None = None) -> None:
        reply, body, names = found
        if body is not None and cmd is not None:
            self.service.cache.store.keep_in_memory(cmd.url, cmd.request_headers, reply, body, names)
        if not self.finished:
            self.feed(ev.CacheFound(reply, body, names, from_disk=reply is not None))

    def _disk_failed(self, failure) -> None:
        log.error("cache_dir lookup failed: %s", failure.getErrorMessage())
        self._found_on_disk((None, None, ()))

    def _purge(self, cmd: c.Purge) -> None:
        reactor = self.service.reactor
        self.service.cache.store.remove_url(cmd.url, lambda n: reactor.callFromThread(self._purged, n))

    def _purged(self, count: int) -> None:
        if not self.finished:
            self.feed(ev.Purged(count))

    def _wait_for_fetch(self, cmd: c.WaitForFetch) -> None:
        self.service.cache.pending[cmd.key].append(self)

    def _lead_fetch(self, cmd: c.LeadFetch) -> None:
        self.service.cache.pending[cmd.key] = []

    def _release_fetch(self, cmd: c.ReleaseFetch) -> None:
        cache = self.service.cache
        if cmd.uncacheable:
            cache.mark_uncacheable(cmd.key)
        for waiter in cache.pending.pop(cmd.key, ()):
            if not waiter.finished:
                waiter.feed(ev.CollapseReleased)

    # the origin, or a peer
    def _connect(self, cmd: c.Connect) -> None:
        if self._later(cmd, self._connect):
            return
        pool, peer = self.service.pool, cmd.peer
        if peer is not None and cmd.through is not None:
            key = _through_key(cmd)
        elif peer is not None:
            # connections to a peer serve every request sent through it (from the same address)
            key = _from(("peer-tunnel" if cmd.tunnel else "peer", peer.name, cmd.port), cmd)
        else:
            key = ("tcp" if cmd.tunnel else cmd.scheme, cmd.host, cmd.port)
            if cmd.original_dst and cmd.addresses:
                key += ("to", cmd.addresses[0])     # a name pinned to the address a client connected to
            key = _from(key, cmd)
        if not cmd.fresh and not cmd.tunnel:
            server = pool.get_idle(key)
            if server is not None:
                return self._connected(server, reused=True)
        started = time.monotonic()
        if cmd.addresses:
            d = defer.succeed(cmd.addresses)
            dns_seconds = [0.0]
        else:
            d = self.service.dns.resolve(cmd.host)
            dns_seconds = [0.0]

            def timed(result):
                dns_seconds[0] = time.monotonic() - started
                return result
            d.addBoth(timed)
        tls_factory = timeout = None
        if peer is not None:
            peering = self.service.peering
            tls_factory, timeout = peering.tls_factory(peer), peering.connect_timeout(peer)
            if cmd.through is not None:
                tls, checklist, origin = self.service.tls, self.exchange.checklist, cmd.through_host
                tls_factory = lambda: tls.origin_session(origin, checklist)    # noqa: E731
        elif cmd.scheme == "https" and not cmd.tunnel:
            # TLS with the origin itself; to a peer an https:// URL goes as it is (Squid)
            tls, checklist = self.service.tls, self.exchange.checklist
            tls_factory = lambda: tls.origin_session(cmd.host, checklist)    # noqa: E731
        if cmd.timeout is not None:
            timeout = cmd.timeout
        d.addCallback(lambda addresses: pool.connect(key, addresses, tls_factory, timeout, cmd.bind, cmd.source,
                                                     cmd.through))
        d.addCallbacks(lambda server: self._connected(server, False, dns_seconds[0]), self._connect_failed)

    def _connected(self, server, reused: bool, dns_seconds: float = 0.0) -> None:
        if self.finished:
            # the client went away while we connected: keep the connection for later
            if self.exchange.tunnel:
                lose(server.transport)
            else:
                self.service.pool.release(server)
            return
        self.server = server
        server.driver = self
        self.feed(ev.Connected(server.peer_ip, server.peer_port, server.local_ip, server.local_port, reused,
                               dns_seconds, None if server.tls is None else server.tls.facts()))

    def _connect_failed(self, failure) -> None:
        if self.finished:
            return
        err = failure.value
        if isinstance(err, DnsError):
            event = ev.ConnectFailed("ERR_DNS_FAIL", str(err), 503)
        elif isinstance(err, UpstreamError):
            event = ev.ConnectFailed(err.error, err.detail, err.status, err.server_ip, err.tls, err.errno,
                                     err.reached or err.tls is not None)
        else:
            log.error("unexpected failure connecting to %s: %s", self.exchange.entry.url, failure.getErrorMessage())
            event = ev.ConnectFailed("ERR_CANNOT_FORWARD", failure.getErrorMessage(), 503)
        self.feed(event)

    # ICP queries of peer selection
    def _send_icp(self, cmd: c.SendIcp) -> None:
        self.service.peering.query(self, cmd.queries, cmd.timeout)

    def _forget_icp(self, cmd: c.ForgetIcp) -> None:
        self.service.peering.forget(self, cmd.reqnums)

    def icp_reply(self, peer, opcode: str, reqnum: int, at: float) -> None:
        if not self.finished:
            self.feed(ev.IcpReply(peer, opcode, reqnum, at))

    def icp_timed_out(self) -> None:
        if not self.finished:
            self.feed(ev.TimedOut("icp"))

    def _send_upstream(self, cmd: c.SendUpstream) -> None:
        server = self.server
        if cmd.head:
            server.start(self, cmd.data, self.exchange.config.read_timeout, cmd.method)
        elif type(cmd.data) is tuple:
            server.write_sequence(cmd.data)
        else:
            server.write(cmd.data)

    def _throttle(self, cmd: c.Throttle) -> None:
        server = self.server
        if server is None:
            return
        if cmd.pool is None:
            if server.delay is not None:
                server.delay.detach()
            self.delay_pool = 0
        elif self.service.throttles.attach(server, cmd.pool, cmd.client_ip, cmd.user, cmd.tag):
            self.delay_pool = cmd.pool + 1

    def _release_upstream(self, cmd: c.ReleaseUpstream) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        self.client.resume_reading("server")
        server.driver = None
        if cmd.reusable and server.connected:
            self.service.pool.release(server)
        else:
            server.detach()
            lose(server.transport)

    def _abort_upstream(self, _cmd) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        self.client.resume_reading("server")
        server.driver = None
        server.detach()
        server.transport.abortConnection()

    def _start_tunnel(self, cmd: c.StartTunnel) -> None:
        server, self.server = self.server, None
        server.driver = None
        self.tunnel = tunnel = Tunnel(self.client, server, self.exchange.config.read_timeout, self._tunnel_ended)
        if cmd.rest:
            tunnel.from_server(cmd.rest)
        self.client.become_tunnel(tunnel)
        tunnel.maybe_splice()

    def _tunnel_ended(self, tunnel) -> None:
        self.tunnel = None
        self.feed(ev.TunnelEnded(tunnel.bytes_up, tunnel.bytes_down))

    # SslBump
    def _read_client_hello(self, _cmd) -> None:
        self.client.read_client_hello(self._client_hello)

    def _client_hello(self, hello, problem, not_tls) -> None:
        if not self.finished:
            self.feed(ev.ClientHelloRead(hello, problem, not_tls))

    def _resolved(self, host: str, addresses):
        """The origin's addresses (known already, or looked up) and the DNS time."""
        if addresses:
            return defer.succeed((addresses, 0.0))
        started = time.monotonic()
        return self.service.dns.resolve(host).addCallback(lambda found: (found, time.monotonic() - started))

    def _later(self, cmd, run) -> bool:
        """connect_retries' pause before the next try of the same address."""
        if not cmd.delay:
            return False

        def later():
            if not self.finished:
                run(dataclasses.replace(cmd, delay=0.0))
        self.service.reactor.callLater(cmd.delay, later)
        return True

    def _server_connect(self, cmd, key: tuple, session=None) -> defer.Deferred:
        """SslBump's connection to the origin, or through a parent's tunnel (``cmd.through``,
        pooled as bumped requests' are, so the first of them reuses it) -> (server, DNS time)."""
        pool, timeout = self.service.pool, cmd.timeout
        if cmd.peer is not None:
            key = _through_key(cmd)
            if timeout is None:
                timeout = self.service.peering.connect_timeout(cmd.peer)
        else:
            key = _from(key, cmd)

        def connect(found):
            addresses, seconds = found
            d = pool.connect(key, addresses, session, timeout, cmd.bind, cmd.source, cmd.through)
            return d.addCallback(lambda server: (server, seconds))
        return self._resolved(cmd.host, cmd.addresses).addCallback(connect)

    def _connect_tls(self, cmd: c.ConnectTls) -> None:
        if self._later(cmd, self._connect_tls):
            return
        tls, checklist = self.service.tls, self.exchange.checklist

        def session():
            return tls.origin_session(cmd.server_name, checklist)

        d = self._server_connect(cmd, ("https", cmd.host, cmd.port), session)
        d.addCallbacks(lambda found: self._server_tls(found[0], found[1]), self._connect_failed)

    def _server_tls(self, server, seconds: float) -> None:
        if self.finished:
            lose(server.transport)
            return
        self.server = server
        verification = server.tls.verification
        self.feed(ev.ServerTlsReady(server.peer_ip, server.peer_port, verification.peer_cert,
                                    tuple(verification.errors), seconds, server.tls.facts()))

    def _peek_server(self, cmd: c.PeekServer) -> None:
        if self._later(cmd, self._peek_server):
            return
        d = self._server_connect(cmd, ("tcp", cmd.host, cmd.port))
        d.addCallbacks(lambda found: self._peek_connected(found[0]), self._connect_failed)

    def _peek_connected(self, server) -> None:
        if self.finished:
            lose(server.transport)
            return
        self.server = server
        server.driver = self
        server.peek(self._server_hello)
        server.write(self.client.take_raw())

    def _server_hello(self, hello, data: bytes, problem) -> None:
        if not self.finished:
            server = self.server
            self.feed(ev.ServerHelloRead(hello, data, problem, server.peer_ip, server.peer_port))

    def _start_client_tls(self, cmd: c.StartClientTls) -> None:
        listen = self.client.factory.listen
        minter = self.service.tls.minter(listen)
        if minter.helper is not None:
            from twisted.internet import threads
            threads.deferToThread(minter.certificate, cmd.props).addCallbacks(
                lambda minted: self._minted(minted, listen), self._mint_failed)
        else:
            try:
                minted = minter.certificate(cmd.props)
            except Exception as e:          # a CA or helper problem: the client cannot be answered
                return self._mint_failed(e)
            self._minted(minted, listen)

    def _minted(self, minted, listen) -> None:
        if self.finished:
            return
        context = self.service.tls.server_context(minted, listen)
        self.client.start_tls(context, self._client_tls_done)

    def _mint_failed(self, reason) -> None:
        from squidpy.tls.errors import SQUID_TLS_ERR_ACCEPT, TlsFailure
        message = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else str(reason)
        log.error("SslBump: cannot make a certificate: %s", message)
        if not self.finished:
            self.feed(ev.ClientTlsFailed(TlsFailure(SQUID_TLS_ERR_ACCEPT, lib_error=f"no certificate: {message}")))

    def _client_tls_done(self, failure) -> None:
        if self.finished:
            return
        if failure is None:
            tls = self.client.tls
            self.feed(ev.ClientTlsReady(tls.version, tls.alpn, tls.facts()))
        else:
            self.feed(ev.ClientTlsFailed(failure))

    def _bumped(self, cmd: c.Bumped) -> None:
        self.client.bumped_info = cmd.info
        server, self.server = self.server, None
        if server is not None:          # the origin connection made for bumping serves its requests
            server.driver = None
            self.service.pool.release(server)

    # the store
    def _stream_stored(self, cmd: c.StreamStored) -> None:
        cache = self.service.cache
        if cache.store.disk is None:
            return self.feed(ev.StoredBodyMissing)
        cache.on_disk(cache.store.disk.open_body, cmd.reply).addCallbacks(
            lambda stream: self._stored_opened(cmd, stream), lambda _f: self._stored_opened(cmd, None))

    def _stored_opened(self, cmd: c.StreamStored, stream) -> None:
        from squidpy.proxy.cache_side import BodyStreamer

        cache = self.service.cache
        if self.finished:
            if stream is not None:
                stream.close()
            return
        if stream is None:
            return self.feed(ev.StoredBodyMissing)
        if cmd.head_only:
            stream.close()
            return self.feed(ev.StoredBodyEnd(intact=True))
        self.streamer = BodyStreamer(self, cache, cmd.reply, stream, cmd.window)
        self.streamer.resume_reading("start")

    def _store_start(self, cmd: c.StoreStart) -> None:
        from squidpy.proxy.cache_side import Tee

        self.tee = Tee(self.service.cache, cmd.head, cmd.request_time, self)

    def _store_body(self, cmd: c.StoreBody) -> None:
        tee = self.tee
        if tee is not None and not tee.add(cmd.data):
            self.tee = None

    def _store_end(self, cmd: c.StoreEnd) -> None:
        tee, self.tee = self.tee, None
        if tee is not None:
            tee.commit(cmd.key, cmd.url, cmd.names, cmd.vary_key, cmd.response_time)

    def _store_discard(self, _cmd) -> None:
        tee, self.tee = self.tee, None
        if tee is not None:
            tee.discard()

    def _freshen(self, cmd: c.Freshen) -> None:
        self.service.cache.store.refresh(cmd.key, cmd.reply, cmd.body)

    def _invalidate(self, cmd: c.Invalidate) -> None:
        store = self.service.cache.store
        for url in cmd.urls:
            store.remove_url(url)

    def _background_refresh(self, cmd: c.BackgroundRefresh) -> None:
        self.service.refresh_in_background(self.exchange, cmd.target, cmd.headers)

    # the end
    def _log(self, cmd: c.Log) -> None:
        self.service.log_transaction(cmd.entry, cmd.checklist)

    def _finished(self, cmd: c.Finished) -> None:
        if self.exchange.selector is not None and self.exchange.selector.queried:
            self.service.peering.forget(self, tuple(self.exchange.selector.queried))
        streamer, self.streamer = self.streamer, None
        if streamer is not None:
            streamer.stop()
        self.client.exchange_finished(self, cmd.keep_alive)

    def _report(self, cmd: c.Report) -> None:
        getattr(log, cmd.level)("%s", cmd.message)

    # ------------------------------------------------------------ flow control
    def source(self):
        """What feeds the client's connection now: the origin, or the disk reader."""
        return self.server if self.server is not None else self.streamer


def _from(key: tuple, cmd) -> tuple:
    return pool_key(key, cmd.bind, cmd.source)


def _through_key(cmd) -> tuple:
    """A tunnel through the peer to one origin, TLS with it inside: only for that origin."""
    return _from(("peer-bump", cmd.peer.name, cmd.port, cmd.through), cmd)


_HANDLERS = {
    type(c.AbortClient): ExchangeDriver._abort_client,
    type(c.DetachClient): ExchangeDriver._detach_client,
    c.PauseClient: ExchangeDriver._pause_client,
    c.ResumeClient: ExchangeDriver._resume_client,
    c.LookUp: ExchangeDriver._look_up,
    c.LookUpCache: ExchangeDriver._look_up_cache,
    c.CollectStats: ExchangeDriver._collect_stats,
    c.AskHelper: ExchangeDriver._ask_helper,
    c.ReserveHelper: ExchangeDriver._reserve_helper,
    c.ReleaseHelper: ExchangeDriver._release_helper,
    c.RefreshExternal: ExchangeDriver._refresh_external,
    c.Purge: ExchangeDriver._purge,
    c.WaitForFetch: ExchangeDriver._wait_for_fetch,
    c.LeadFetch: ExchangeDriver._lead_fetch,
    c.ReleaseFetch: ExchangeDriver._release_fetch,
    c.Connect: ExchangeDriver._connect,
    c.SendIcp: ExchangeDriver._send_icp,
    c.ForgetIcp: ExchangeDriver._forget_icp,
    c.SendUpstream: ExchangeDriver._send_upstream,
    c.Throttle: ExchangeDriver._throttle,
    c.ReleaseUpstream: ExchangeDriver._release_upstream,
    type(c.AbortUpstream): ExchangeDriver._abort_upstream,
    c.StartTunnel: ExchangeDriver._start_tunnel,
    type(c.ReadClientHello): ExchangeDriver._read_client_hello,
    c.ConnectTls: ExchangeDriver._connect_tls,
    c.PeekServer: ExchangeDriver._peek_server,
    c.StartClientTls: ExchangeDriver._start_client_tls,
    c.Bumped: ExchangeDriver._bumped,
    c.StreamStored: ExchangeDriver._stream_stored,
    c.StoreStart: ExchangeDriver._store_start,
    c.StoreBody: ExchangeDriver._store_body,
    c.StoreEnd: ExchangeDriver._store_end,
    type(c.StoreDiscard): ExchangeDriver._store_discard,
    c.Freshen: ExchangeDriver._freshen,
    c.Invalidate: ExchangeDriver._invalidate,
    c.BackgroundRefresh: ExchangeDriver._background_refresh,
    c.Log: ExchangeDriver._log,
    c.Finished: ExchangeDriver._finished,
    c.Report: ExchangeDriver._report,
}
