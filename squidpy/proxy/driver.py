"""Carries out one exchange's commands with Twisted, and feeds it what happens.

An :class:`ExchangeDriver` is the I/O half of a
:class:`~squidpy.exchange.Exchange`: it writes to the client, looks names up,
takes origin connections from the pool or makes new ones, streams stored
bodies, keeps the copy of a reply the cache stores, opens tunnels and hands
the log line over.  It decides nothing: every choice was made by the
exchange, and every result goes back to it as an event.
"""

from __future__ import annotations

import logging
import time

from twisted.internet import defer

from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.exchange import Exchange, State
from squidpy.proxy.closing import lose
from squidpy.proxy.dns import DnsError
from squidpy.proxy.server_side import UpstreamError
from squidpy.proxy.tunnel import Tunnel

log = logging.getLogger("squidpy")


class ExchangeDriver:
    __slots__ = ("exchange", "client", "service", "server", "tee", "streamer", "tunnel", "_busy", "_queue",
                 "__weakref__")

    def __init__(self, exchange: Exchange, client, service):
        self.exchange = exchange
        self.client = client            # the ClientConnection (a NullClient for background refreshes)
        self.service = service
        self.server = None              # the origin connection in use
        self.tee = None                 # the copy of the reply being kept for the store
        self.streamer = None            # a stored body being read from disk
        self.tunnel = None
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

    def _look_up_cache(self, cmd: c.LookUpCache) -> None:
        cache = self.service.cache
        cache.on_disk(cache.store.find_on_disk, cmd.url, cmd.request_headers).addCallbacks(
            self._found_on_disk, self._disk_failed)

    def _found_on_disk(self, found) -> None:
        if not self.finished:
            self.feed(ev.CacheFound(*found))

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

    # the origin
    def _connect(self, cmd: c.Connect) -> None:
        pool = self.service.pool
        key = ("tcp" if cmd.tunnel else cmd.scheme, cmd.host, cmd.port)
        if cmd.source is not None:
            key += (cmd.source,)        # a spoofed connection carries one client's address: never shared
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
        d.addCallback(lambda addresses: pool.connect(key, addresses, cmd.source))
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
                               dns_seconds))

    def _connect_failed(self, failure) -> None:
        if self.finished:
            return
        err = failure.value
        if isinstance(err, DnsError):
            event = ev.ConnectFailed("ERR_DNS_FAIL", str(err), 503)
        elif isinstance(err, UpstreamError):
            event = ev.ConnectFailed(err.error, err.detail, err.status, err.server_ip)
        else:
            log.error("unexpected failure connecting to %s: %s", self.exchange.entry.url, failure.getErrorMessage())
            event = ev.ConnectFailed("ERR_CANNOT_FORWARD", failure.getErrorMessage(), 503)
        self.feed(event)

    def _send_upstream(self, cmd: c.SendUpstream) -> None:
        server = self.server
        if cmd.head:
            server.start(self, cmd.data, self.exchange.config.read_timeout, cmd.method)
        elif type(cmd.data) is tuple:
            server.transport.writeSequence(cmd.data)
        else:
            server.transport.write(cmd.data)

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

        self.tee = Tee(self.service.cache, cmd.head, cmd.request_time)

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


_HANDLERS = {
    type(c.AbortClient): ExchangeDriver._abort_client,
    c.PauseClient: ExchangeDriver._pause_client,
    c.ResumeClient: ExchangeDriver._resume_client,
    c.LookUp: ExchangeDriver._look_up,
    c.LookUpCache: ExchangeDriver._look_up_cache,
    c.Purge: ExchangeDriver._purge,
    c.WaitForFetch: ExchangeDriver._wait_for_fetch,
    c.LeadFetch: ExchangeDriver._lead_fetch,
    c.ReleaseFetch: ExchangeDriver._release_fetch,
    c.Connect: ExchangeDriver._connect,
    c.SendUpstream: ExchangeDriver._send_upstream,
    c.ReleaseUpstream: ExchangeDriver._release_upstream,
    type(c.AbortUpstream): ExchangeDriver._abort_upstream,
    c.StartTunnel: ExchangeDriver._start_tunnel,
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
