"""The cache's I/O: streaming stored bodies, keeping copies of replies, the shared cache state.

Every decision about the cache is made by the exchange's cache sub-machine
(:mod:`squidpy.exchange.caching`, over :mod:`squidpy.cache.policy`); this
module carries them out.  :class:`BodyStreamer` sends a stored body from disk
as the client takes it, :class:`Tee` keeps the copy of a reply being
received, and :class:`Cache` holds what every exchange shares: the store, the
settings and the collapsed fetches under way.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
import time
from typing import IO, TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from squidpy.acl.checklist import UNDECIDED
from squidpy.cache import policy
from squidpy.cache.policy import RefreshRule
from squidpy.cache.refresh import RefreshSettings, rule_for
from squidpy.cache.store import CachedReply
from squidpy.exchange import events as ev
from squidpy.http import message

if TYPE_CHECKING:
    from squidpy.config.loader import Config
    from squidpy.proxy.server_side import ServerConnection

log = logging.getLogger("squidpy")

STREAM_CHUNK = 64 * 1024
READER_THREADS = 4
# bytes of one reply received but not yet written to its temp file: past HOLD_AT the
# origin is not read until the writer is down to RESUME_AT (the disk sets the pace, as
# the client does when it is slower); past WRITE_BACKLOG (possible only without an origin
# to hold) the reply is not stored, and the client's transfer goes on
HOLD_AT = 4 * 1024 * 1024
RESUME_AT = 1024 * 1024
WRITE_BACKLOG = 16 * 1024 * 1024


class BodyStreamer:
    """Sends a stored body from disk in chunks read by a reader thread, one chunk at a
    time and only while the client takes them, and checks its length and CRC-32 on
    the way (a damaged entry is removed)."""

    def __init__(self, driver, cache, reply: CachedReply, stream, window: tuple[int, int] | None = None):
        self.driver = driver
        self.cache = cache
        self.reply = reply
        self.stream = stream
        self.sent = 0
        # a byte range (first, last) sends only that part: its length is checked, not the digest
        self.expected = reply.body_size if window is None else window[1] - window[0] + 1
        self.whole = window is None
        if window is not None and window[0]:
            stream.seek(window[0])
        self.check = reply.body_check()
        self.paused = {"start"}
        self.reading = False
        self.done = False

    def pause_reading(self, reason: str) -> None:
        self.paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.paused.discard(reason)
        if not self.paused and not self.reading and not self.done:
            self._read()

    def _read(self) -> None:
        if self.done or self.driver.finished:
            return self.stop()
        size = STREAM_CHUNK if self.whole else min(STREAM_CHUNK, self.expected - self.sent)
        self.reading = True
        self.cache.on_disk(self.stream.read, size).addCallbacks(self._got, self._failed)

    def _failed(self, failure) -> None:
        self._got(b"")

    def _got(self, chunk: bytes) -> None:
        self.reading = False
        if self.done or self.driver.finished:
            return self.stop()
        if not chunk:
            return self._end()
        self.sent += len(chunk)
        if self.whole:
            self.check.update(chunk)
        self.driver.feed(ev.StoredBody(chunk))
        if self.done:
            return
        if self.sent > self.expected or (not self.whole and self.sent == self.expected):
            return self._end()
        if not self.paused:
            self._read()

    def _end(self) -> None:
        intact = self.sent == self.expected and (not self.whole or self.check.intact())
        self.stop()
        if not intact:
            self.cache.store.remove_url(self.reply.url)
        self.driver.feed(ev.StoredBodyEnd(intact))

    def stop(self) -> None:
        if not self.done:
            self.done = True
            try:
                self.stream.close()
            except OSError:
                pass


class Tee:
    """A copy of a reply being received, for the store: in memory while it is small,
    then in a temp file in the cache_dir written by the writer thread.

    The chunks for the temp file wait in ``unwritten`` and one writer job at a time takes
    all of them, so the writer's queue holds at most one job per reply however small the
    reads; what waits is bounded in bytes: past ``HOLD_AT`` the driver's origin connection
    is paused ("store") until the writer catches up."""

    def __init__(self, cache, resp, request_time: float, driver=None):
        self.cache = cache
        self.driver = driver                # whose origin connection is held while the disk lags
        self.held: ServerConnection | None = None   # that connection, while paused for the store
        self.resp = resp
        self.request_time = request_time
        self.chunks: list[bytes] = []
        self.size = 0
        self.crc32 = 0
        self.temp: IO[bytes] | None = None  # the temp file, while the reply is being received
        self.file: IO[bytes] | None = None  # the same, for the writer thread, to the end
        self.failed = False
        self.lock = threading.Lock()        # unwritten, backlog, queued: the reactor and the writer
        self.unwritten: list[bytes] = []
        self.backlog = 0
        self.queued = False                 # a _drain job is in the writer's queue

    def add(self, data: bytes) -> bool:
        self.size += len(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        if not self.cache.size_allowed(self.size):
            self.discard()
            return False
        if self.temp is None:
            self.chunks.append(data)
            if self.size > self.cache.max_in_memory:
                disk = self.cache.store.disk
                if disk is None:
                    self.discard()
                    return False
                self.temp = self.file = disk.new_temp()
                if self.temp is None:
                    self.discard()
                    return False
                pending, self.chunks = b"".join(self.chunks), []
                return self._write(pending)
            return True
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        with self.lock:
            self.unwritten.append(data)
            self.backlog += len(data)
            overflow = self.backlog > WRITE_BACKLOG
            hold = self.backlog > HOLD_AT
            submit = not self.queued and not overflow
            self.queued = self.queued or submit
        if overflow or (submit and not self.cache.store.disk.writer.submit(self._drain)):
            self.discard()
            return False
        if hold and self.held is None and self.driver is not None and self.driver.server is not None:
            held = self.held = self.driver.server
            held.pause_reading("store")
        return True

    def _let_go(self) -> None:
        """(reactor) Read the origin again, if it is still this reply's."""
        held, self.held = self.held, None
        if held is not None and held.driver is self.driver:
            held.resume_reading("store")

    def _drain(self) -> None:
        """(writer thread) Write what was received since the last time."""
        with self.lock:
            chunks, self.unwritten = self.unwritten, []
            self.queued = False
        if self.failed or not chunks:
            return
        file = self.file
        assert file is not None, "a _drain job is queued only once the temp file exists"
        try:
            file.write(b"".join(chunks))
        except ValueError:          # discarded and closed meanwhile (the queue was full)
            return
        except OSError as e:
            self.failed = True
            self.cache.store.disk.report_failure(f"writing {file.name}", e)
        with self.lock:
            self.backlog -= sum(len(c) for c in chunks)
            caught_up = self.backlog <= RESUME_AT
        if caught_up and self.held is not None:
            self.driver.service.reactor.callFromThread(self._let_go)

    def commit(self, key: str, url: str, names, vary_key, now: float) -> None:
        self._let_go()
        if self.failed:
            return self.discard()
        headers = policy.headers_to_store(self.resp.headers, self.size, message.http_date(now))
        reply = CachedReply(url=url, status=self.resp.status, reason=self.resp.reason, headers=headers,
                            request_time=self.request_time, response_time=now, body_size=self.size,
                            vary_names=names, vary_key=vary_key, crc32=self.crc32,
                            stored_at=now)
        self.cache.service.stats.direct.swap_outs += 1
        if self.temp is None:
            self.cache.store.put(key, reply, b"".join(self.chunks), None)
            self.chunks = []
            return
        temp = self.temp
        if not self.cache.store.disk.writer.submit(temp.close):    # after the last _drain
            return self.discard()
        self.temp = None
        self.cache.store.put(key, reply, None, temp.name)

    def discard(self) -> None:
        self._let_go()
        self.chunks = []
        self.failed = True
        temp, self.temp = self.temp, None
        if temp is not None:
            def job():
                temp.close()
                try:
                    os.unlink(temp.name)
                except OSError:
                    pass
            if not self.cache.store.disk.writer.submit(job):
                job()           # a _drain still queued writes nothing now (failed)


class Cache:
    """The running cache: the store, the cache-related settings, collapsed fetches."""

    def __init__(self, service, config: Config, store):
        self.service = service
        self.store = store
        self.readers: ThreadPool | None = None     # disk reads happen there, never on the reactor
        self.pending: dict[str, list] = {}      # key -> drivers waiting for its fetch
        self.uncacheable: dict[str, float] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        self.generation = getattr(self, "generation", 0) + 1     # stored entries' memos are stale now
        self.config = config
        self.patterns = config.refresh_pattern
        self.refresh_settings = RefreshSettings.from_config(config)
        self.max_in_memory = config.maximum_object_size_in_memory
        self.store.max_in_memory = self.max_in_memory
        self.store.memory.limit = config.cache_mem
        self.store.set_memory_policy(config.memory_replacement_policy)
        self.offline = config.offline_mode
        self.collapsed = config.collapsed_forwarding

    UNCACHEABLE_MEMORY = 60.0     # seconds a URL with an unstorable reply is not collapsed

    def mark_uncacheable(self, key: str) -> None:
        if len(self.uncacheable) > 10000:
            self.uncacheable.clear()
        self.uncacheable[key] = time.time() + self.UNCACHEABLE_MEMORY

    def recently_uncacheable(self, key: str, now: float) -> bool:
        until = self.uncacheable.get(key)
        return until is not None and until > now

    def refresh_rule(self, url: str) -> RefreshRule:
        return rule_for(self.patterns, url)

    def allows(self, checklist) -> bool:
        """The ``cache`` access list: may this request be answered from or stored in the cache?
        (An ACL that would need a lookup does not match here: Squid's ``cache`` is a fast check.)"""
        access = self.config.cache
        if not access:
            return True
        try:
            return access.check(checklist).allowed
        except UNDECIDED:
            return False

    def size_allowed(self, size: int) -> bool:
        return self.config.minimum_object_size <= size <= self.config.maximum_object_size

    def find_in_memory(self, url: str, request_headers) -> tuple | None:
        return self.store.find_in_memory(url, request_headers)

    def on_disk(self, read, *args) -> defer.Deferred:
        """Run a disk read in a reader thread; fires on the reactor with its result."""
        if self.readers is None:
            self.readers = ThreadPool(minthreads=1, maxthreads=READER_THREADS, name="squidpy-cache-reader")
            self.readers.start()
        return deferToThreadPool(self.service.reactor, self.readers, read, *args)

    def close(self) -> None:
        readers, self.readers = self.readers, None
        if readers is not None:
            readers.stop()
        self.store.close()
