"""Delay pools carried out: origin reads paused and client writes held by their buckets.

The exchange decides which pool a transfer uses (squidpy.delay.select, a
``Throttle`` command); this module does the I/O.  An origin connection in a
delay pool reads at most what its buckets hold (``seam.limit_reads``); when they
are empty it stops reading and waits.  A client connection in a client delay
pool writes what its bucket allows and queues the rest; when the queue grows,
the origin (or the disk reader) feeding it is paused.  Waiting transfers are
woken by one timer per pool, ``TICK`` seconds apart, only while some wait:
no timer per connection, nothing at all when no pool is configured.  Under
``workers N`` each kid has its own pools, as in Squid.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from squidpy.acl.checklist import Checklist
from squidpy.delay import ClientPool, DelayPool, select
from squidpy.proxy import seam
from squidpy.proxy.closing import lose

if TYPE_CHECKING:
    from twisted.internet.base import DelayedCall

    from squidpy.config.loader import Config

TICK = 0.1                  # seconds between two looks at a pool's waiting transfers
READ_SIZE = 65536           # the most one read takes (Twisted's)
QUEUE_HIGH = 256 * 1024     # a throttled client's queued bytes that pause what feeds it ...
QUEUE_LOW = 64 * 1024       # ... until it is down to this


class Throttles:
    """This process's delay pools and client delay pools, and the transfers waiting on them."""

    def __init__(self, reactor, config: Config, clock=time.monotonic):
        self.reactor = reactor
        self.clock = clock
        # pool -> transfers waiting for its buckets; its timer, while some wait
        self.waiting: dict[DelayPool | ClientPool, list[DelayedReads | ClientWriter]] = {}
        self.timers: dict[DelayPool | ClientPool, DelayedCall] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Pools for a new configuration, their buckets afresh (as Squid's reconfigure does);
        transfers under way go on drawing on the pools they started with."""
        now = self.clock()
        self.pools = [DelayPool(spec, config.delay_initial_bucket_level, now) for spec in config.delay_specs]
        self.client_pools = [ClientPool(spec, config.client_delay_initial_bucket_level)
                             for spec in config.client_delay_specs]
        self.client_specs = config.client_delay_specs

    # ------------------------------------------------------------ origin reads (delay_pools)
    def attach(self, server, pool_index: int, client_ip: str, user: str | None, tag: str | None) -> bool:
        """Put an origin connection's reads under a pool; False when no bucket applies."""
        pool = self.pools[pool_index]
        delay = pool.id_for(client_ip, user, tag, self.clock())
        if server.delay is not None:
            if delay is not None and server.delay.delay.buckets == delay.buckets:
                return True         # chosen again once the reply's head is known: nothing changes
            server.delay.detach()
        if delay is None:
            return False
        server.delay = reads = DelayedReads(self, delay, server)
        reads.allow_next()
        return True

    # ------------------------------------------------------------ client writes (client_delay_pools)
    def limit_client(self, client, info=None) -> "ClientWriter | None":
        """The write limit of a new client connection, if a client pool takes it (only
        what is known of the connection can match, as in Squid).  ``info``: the
        addresses a PROXY protocol header gave (Squid chooses once the client's
        address is known: ConnStateData::whenClientIpKnown); else the connection's."""
        if not self.client_pools:
            return None
        who = client if info is None else info
        ch = Checklist(src=who.client_ip, src_port=who.client_port, local_ip=who.local_ip,
                       local_port=who.local_port, port_name=who.port_name, method="NONE", url="")
        index = select(self.client_specs, ch)
        if index is None:
            return None
        pool = self.client_pools[index]
        return ClientWriter(self, pool, pool.bucket_for(who.client_ip, self.clock()), client)

    # ------------------------------------------------------------ one timer per pool
    def wait(self, pool, waiter) -> None:
        waiters = self.waiting.setdefault(pool, [])
        if waiter not in waiters:
            waiters.append(waiter)
            pool.pauses += 1
        if pool not in self.timers:
            self.timers[pool] = self.reactor.callLater(TICK, self._tick, pool)

    def forget(self, pool, waiter) -> None:
        waiters = self.waiting.get(pool)
        if waiters and waiter in waiters:
            waiters.remove(waiter)

    def _tick(self, pool) -> None:
        self.timers.pop(pool, None)
        waiters = self.waiting.pop(pool, [])
        if not waiters:
            return
        now = self.clock()
        # a client's bucket is rationed among its waiting connections, as Squid does:
        # each gets an equal share of what the bucket holds at this tick
        sharing: dict[int, int] = {}
        for waiter in waiters:
            if isinstance(waiter, ClientWriter):
                sharing[id(waiter.bucket)] = sharing.get(id(waiter.bucket), 0) + 1
        quotas: dict[int, int] = {}
        for waiter in waiters:
            if isinstance(waiter, ClientWriter) and id(waiter.bucket) not in quotas:
                waiter.bucket.refill(now)
                level = int(waiter.bucket.level)
                quotas[id(waiter.bucket)] = max(1, level // sharing[id(waiter.bucket)]) if level > 0 else 0
        still = [w for w in waiters if not w.kick(now, quotas.get(id(getattr(w, "bucket", None)), 0))]
        if still:
            self.waiting[pool] = still
            self.timers[pool] = self.reactor.callLater(TICK, self._tick, pool)

    def stop(self) -> None:
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
        self.waiting.clear()

    def report(self) -> dict:
        now = self.clock()
        return {"pools": [pool.report(now) for pool in self.pools],
                "client_pools": [pool.report(now) for pool in self.client_pools]}


class DelayedReads:
    """An origin connection reading through a delay pool's buckets."""

    __slots__ = ("throttles", "delay", "server")

    def __init__(self, throttles: Throttles, delay, server):
        self.throttles = throttles
        self.delay = delay
        self.server = server

    @property
    def pool(self):
        return self.delay.pool

    def read(self, size: int) -> None:
        """``size`` bytes were read: they come out of the buckets; then the next read's size."""
        self.delay.used(size)
        self.allow_next()

    def allow_next(self) -> None:
        allowed = self.delay.wanted(READ_SIZE, self.throttles.clock())
        if allowed > 0:
            seam.limit_reads(self.server.transport, allowed)
        else:
            self.server.pause_reading("delay")
            self.throttles.wait(self.delay.pool, self)

    def kick(self, now: float, _quota: int) -> bool:
        allowed = self.delay.wanted(READ_SIZE, now)
        if allowed <= 0:
            return False
        seam.limit_reads(self.server.transport, allowed)
        self.server.resume_reading("delay")
        return True

    def detach(self) -> None:
        """The connection leaves the pool (its transaction ended, it closed)."""
        server = self.server
        if server.delay is self:
            server.delay = None
        self.throttles.forget(self.delay.pool, self)
        if server.transport is not None:
            seam.unlimit_reads(server.transport)
        server.resume_reading("delay")


class ClientWriter:
    """A client connection writing through its address's bucket: what the bucket
    allows goes out, the rest waits here, in order."""

    def __init__(self, throttles: Throttles, pool: ClientPool, bucket, client):
        self.throttles = throttles
        self.pool = pool
        self.bucket = bucket
        self.client = client
        self.queue: list[bytes] = []
        self.queued = 0
        self.paused = None              # what feeds the client, paused while the queue is long
        self.close_when_drained = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.queue:
            self._enqueue(data)
            return
        allowed = self.bucket.take(len(data), self.throttles.clock())
        if allowed:
            self.pool.bytes += allowed
            seam.write(self.client.transport, data if allowed == len(data) else data[:allowed])
        if allowed < len(data):
            self._enqueue(data[allowed:])
            self.throttles.wait(self.pool, self)

    def _enqueue(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued += len(data)
        if self.queued > QUEUE_HIGH and self.paused is None:
            source = self.client._source()
            if source is not None:
                source.pause_reading("throttle")
                self.paused = source

    def kick(self, now: float, quota: int) -> bool:
        """Send up to ``quota`` bytes (this connection's share of its bucket at this tick);
        True once the queue is empty."""
        transport = self.client.transport
        if not transport.connected:
            self.drop()
            return True
        budget = self.bucket.take(min(self.queued, quota), now) if quota > 0 else 0
        sent = []
        while self.queue and budget > 0:
            head = self.queue[0]
            if len(head) <= budget:
                sent.append(self.queue.pop(0))
                budget -= len(head)
            else:
                sent.append(head[:budget])
                self.queue[0] = head[budget:]
                budget = 0
        size = sum(map(len, sent))
        if size:
            self.queued -= size
            self.pool.bytes += size
            seam.write_sequence(transport, sent)
        if self.paused is not None and self.queued <= QUEUE_LOW:
            paused, self.paused = self.paused, None
            paused.resume_reading("throttle")
        if self.queue:
            return False
        if self.close_when_drained:
            lose(transport)
        return True

    def drop(self) -> None:
        """The connection is gone (or reset): what waits is not sent."""
        self.queue.clear()
        self.queued = 0
        self.throttles.forget(self.pool, self)
        paused, self.paused = self.paused, None
        if paused is not None:
            paused.resume_reading("throttle")
