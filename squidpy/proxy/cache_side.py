"""The cache's part of a transaction (Squid's store client): look up, serve, revalidate, store.

A :class:`CacheFlow` is attached to each GET or HEAD the cache may answer.
Every decision comes from :mod:`squidpy.cache.policy`; this module only
moves bytes between the store and the connections, and sets the access log's
result code (TCP_HIT, TCP_MEM_HIT, TCP_REFRESH_UNMODIFIED ...).

The transaction calls, in order: :meth:`start` (may answer from the cache, or
wait for a collapsed fetch), :meth:`request_headers` (validators to add when
revalidating), :meth:`on_head` (may take the reply over: a 304 freshens the
stored entry, an error may be answered stale), :meth:`on_body`,
:meth:`on_done` and :meth:`on_error`, and finally :meth:`finish`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.parse

from squidpy.cache import policy
from squidpy.cache.store import CachedReply, entry_key
from squidpy.http import message

log = logging.getLogger("squidpy")

STREAM_CHUNK = 64 * 1024
MULTIRANGE_READ_LIMIT = 8 << 20    # several ranges of a disk object are cut from it in memory up to this size
_REPLACED_ON_PARTS = frozenset({b"content-length", b"content-range"})   # a 304/206/416 from a stored 200


class CacheFlow:
    def __init__(self, txn, cache):
        self.txn = txn
        self.cache = cache
        self.req_cc: dict = {}
        self.key: str | None = None
        self.stored: CachedReply | None = None     # the entry found, if any
        self.stored_body: bytes | None = None      # its body, when it came from memory
        self.revalidating = False
        self.leader = False                        # this transaction fetches for a collapsed group
        self.tee = None
        self.streamer = None

    # ------------------------------------------------------------ lookup
    def start(self, may_wait: bool = True) -> bool:
        """Answer from the cache if possible; True when the transaction is taken care of
        (``may_wait``: it may wait for another transaction's fetch of the same URL)."""
        txn = self.txn
        head = txn.head
        self.req_cc = policy.request_directives(head.headers) if head.cache_fields else {}
        url = txn.target.url
        names = self.cache.store.vary_names(url) or ()
        self.key = entry_key(url, policy.vary_key(names, head.headers) if names else ())
        if "no-cache" in self.req_cc:
            # a reload (RFC 9111 5.2.1.4), as Squid 5.7 does it: no lookup, no validators of
            # ours; the origin's reply is logged TCP_MISS and replaces the stored one
            txn.entry.result = "TCP_MISS"
            return self._miss(False)
        found = self.cache.store.lookup(self.key)
        if found is not None:
            reply, body, in_memory = found
            if reply.vary_names != names and reply.vary_names:
                found = None        # the index changed under us: treat as absent
            else:
                self.stored, self.stored_body = reply, body
                self.in_memory = in_memory
        if self.stored is None:
            if "only-if-cached" in self.req_cc:
                txn.fail("ERR_ONLY_IF_CACHED_MISS", "the request asked for a cached reply only", 504, result="TCP_MISS")
                return True
            return self._miss(may_wait)
        now = time.time()
        reply = self.stored
        resp_cc, initial_age, lifetime = reply.facts(self.cache.refresh_rule, self.cache.generation)
        age = initial_age + (now - reply.response_time)
        if self.cache.offline:
            return self.serve(reply, "TCP_OFFLINE_HIT", age)
        reuse = policy.can_reuse(self.req_cc, resp_cc, age, lifetime)
        if txn.background:
            reuse = policy.Reuse(policy.VALIDATE, age, lifetime, "background refresh")
        self.age, self.lifetime, self.resp_cc = age, lifetime, resp_cc
        if reuse.decision in (policy.FRESH, policy.STALE_OK, policy.STALE_REVALIDATE):
            if reuse.decision == policy.STALE_REVALIDATE:
                self.cache.background_refresh(txn)
            return self.serve(reply, None, age)
        # stale: ask the origin with our validators
        self.revalidating = True
        return False

    def _miss(self, may_wait: bool) -> bool:
        """Nothing usable is stored: fetch, unless someone is already fetching it
        (collapsed forwarding) and that URL's replies have been cacheable."""
        txn, cache = self.txn, self.cache
        if (may_wait and txn.head.method == "GET" and cache.collapsed and "no-cache" not in self.req_cc
                and not cache.recently_uncacheable(self.key)):
            pending = cache.pending.get(self.key)
            if pending is not None:
                pending.append(self)
                txn.entry.result = "TCP_MISS"
                return True                 # resumed when the leader's reply is known
            cache.pending[self.key] = []
            self.leader = True
        return False

    def resume_after_collapse(self) -> None:
        """The fetch we waited for is over (or will not be stored): look again, and
        fetch ourselves if it is not there — without waiting a second time."""
        txn = self.txn
        if txn.finished:
            return
        self.stored = self.stored_body = None
        if not self.start(may_wait=False):
            txn.forward()

    def _release_waiters(self) -> None:
        if self.leader:
            self.leader = False
            for waiter in self.cache.pending.pop(self.key, []):
                waiter.resume_after_collapse()

    # ------------------------------------------------------------ serving from the store
    def serve(self, reply: CachedReply, result: str | None, age: float, body: bytes | None = None) -> bool:
        txn = self.txn
        head = txn.head
        e = txn.entry
        # the hierarchy stays as the transaction set it: HIER_DIRECT/ADDR when a revalidation
        # reached the origin (TCP_REFRESH_UNMODIFIED, TCP_REFRESH_FAIL_OLD after a 5xx), else HIER_NONE/-
        body = self.stored_body if body is None else body
        from_memory = body is not None
        if result is None:
            result = "TCP_MEM_HIT" if from_memory else "TCP_HIT"
        if head.cache_fields and reply.status in (200, 203, 206) and policy.not_modified_for_client(head.headers, reply.headers):
            result = "TCP_INM_HIT" if policy.field(head.headers, b"if-none-match") is not None else "TCP_IMS_HIT"
            if result == "TCP_IMS_HIT" and e.result == "TCP_REFRESH_UNMODIFIED":
                result = "TCP_REFRESH_UNMODIFIED"
            return self._send(reply, 304, b"Not Modified", age, None, result, extra=b"")
        if body is None:
            stream = self.cache.store.disk.open_body(reply) if self.cache.store.disk else None
            if stream is None:
                e.result = "TCP_SWAPFAIL_MISS"
                self.stored = None
                return False
        ranges = None
        if (head.cache_fields and head.method == "GET" and reply.status == 200
                and policy.if_range_allows(head.headers, reply.headers)):
            ranges = policy.parse_range(policy.field(head.headers, b"range"), reply.body_size)
        if ranges is not None:
            if from_memory:
                return self._send_ranges(reply, body, ranges, age, result)
            if len(ranges) == 1:
                return self._stream(reply, stream, age, result, ranges[0])
            if not ranges or reply.body_size <= MULTIRANGE_READ_LIMIT:
                body = stream.read() if ranges else b""
                stream.close()
                return self._send_ranges(reply, body, ranges, age, result)
            # several ranges of a large object: the whole object (RFC 9110 14.2 allows ignoring Range)
        if from_memory:
            return self._send(reply, reply.status, reply.reason, age, body, result)
        return self._stream(reply, stream, age, result)

    def _hit_head(self, reply: CachedReply, status: int, reason: bytes, age: float, fields: bytes) -> bytes:
        txn, svc = self.txn, self.txn.service
        if status == reply.status:
            lines = [reply.head]
        else:
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
            lines.extend(b"%s: %s\r\n" % kv for kv in policy.fields_for_hit(reply.headers, _REPLACED_ON_PARTS))
        lines.append(b"Age: %d\r\n" % int(age))
        lines.append(fields)
        if svc.via_header is not None:
            lines.append(b"Via: %s\r\n" % svc.via_header)
        lines.append(svc.x_cache_hit)
        if not txn.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif txn.head.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _send(self, reply, status, reason, age, body, result, extra: bytes = b"") -> bool:
        txn = self.txn
        if not txn.body_done:
            txn.keep_alive = False
        head = self._hit_head(reply, status, reason, age, extra)
        e = txn.entry
        e.result, e.status = result, status
        e.mime_type = reply.mime_type
        e.reply_headers = reply.headers
        e.reply_header_size = len(head)
        send_body = body if (body is not None and txn.head.method != "HEAD" and status not in (204, 304)) else b""
        e.reply_body_size = len(send_body)
        txn.reply_started = True
        txn.client.write(head + send_body if send_body else head)
        txn.finish()
        return True

    def _send_ranges(self, reply, body: bytes, ranges, age: float, result: str) -> bool:
        """RFC 9110 14: 206 with one range or multipart/byteranges; 416 when none fits."""
        length = reply.body_size
        if not ranges:
            fields = b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % length
            return self._send(reply, 416, b"Range Not Satisfiable", age, b"", result, fields)
        if len(ranges) == 1:
            first, last = ranges[0]
            return self._send(reply, 206, b"Partial Content", age, body[first:last + 1], result,
                              _single_range_fields(first, last, length))
        boundary = hashlib.sha1(b"%d" % time.monotonic_ns()).hexdigest()[:24].encode()
        content_type = policy.field(reply.headers, b"content-type")
        parts = []
        for first, last in ranges:
            parts.append(b"--%s\r\n" % boundary)
            if content_type:
                parts.append(b"Content-Type: %s\r\n" % content_type)
            parts.append(b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (first, last, length))
            parts.append(body[first:last + 1])
            parts.append(b"\r\n")
        parts.append(b"--%s--\r\n" % boundary)
        payload = b"".join(parts)
        fields = b"Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %d\r\n" % (boundary, len(payload))
        reply_copy = CachedReply(**{**reply.meta(), "headers": [kv for kv in reply.headers
                                                                 if kv[0].lower() != b"content-type"]})
        reply_copy.serialise_head()
        return self._send(reply_copy, 206, b"Partial Content", age, payload, result, fields)

    def _stream(self, reply, stream, age: float, result: str, window: tuple[int, int] | None = None) -> bool:
        """A disk hit: the body (or one byte range of it, a 206) goes out in chunks as
        the client takes them."""
        txn = self.txn
        if not txn.body_done:
            txn.keep_alive = False
        if window is None:
            status, reason, fields = reply.status, reply.reason, b""
        else:
            status, reason, fields = 206, b"Partial Content", _single_range_fields(*window, reply.body_size)
        head = self._hit_head(reply, status, reason, age, fields)
        e = txn.entry
        e.result, e.status, e.reply_headers = result, status, reply.headers
        e.mime_type = reply.mime_type
        e.reply_header_size = len(head)
        txn.reply_started = True
        txn.client.write(head)
        if txn.head.method == "HEAD":
            stream.close()
            txn.finish()
            return True
        self.streamer = BodyStreamer(self, reply, stream, window)
        self.streamer.resume_reading("start")
        return True

    # ------------------------------------------------------------ talking to the origin
    def request_headers(self) -> list[tuple[bytes, bytes]]:
        """Validators to send when revalidating a stored entry (RFC 9111 4.3.1)."""
        if self.revalidating and self.stored is not None:
            return policy.validation_headers(self.stored.headers)
        return []

    def drops_client_validators(self) -> bool:
        """When revalidating, the client's own conditionals are replaced by ours."""
        return self.revalidating and self.stored is not None and bool(policy.validation_headers(self.stored.headers))

    def on_head(self, resp) -> bool:
        """The origin's reply head.  True when the cache answers the client instead."""
        txn = self.txn
        e = txn.entry
        if self.revalidating and self.stored is not None:
            if resp.status == 304 or (resp.status == 200 and txn.head.method == "HEAD" and policy.head_updates_stored(
                    self.stored.headers, self.stored.body_size, resp.headers)):
                return self._freshen_and_serve(resp)        # 4.3.4, 4.3.5
            if resp.status >= 500 and policy.may_serve_stale_on_error(self.req_cc, self.resp_cc, self.age, self.lifetime):
                txn.divert_reply()
                self.serve(self.stored, "TCP_REFRESH_FAIL_OLD", self.age)
                return True
            e.result = "TCP_REFRESH_MODIFIED" if resp.status < 500 else "TCP_REFRESH_FAIL_ERR"
        self._maybe_tee(resp)
        return False

    def _freshen_and_serve(self, resp) -> bool:
        """The origin says the stored entry is still good: update its fields, answer from it."""
        txn, reply = self.txn, self.stored
        if self.stored_body is None:
            stream = self.cache.store.disk.open_body(reply) if self.cache.store.disk else None
            if stream is None:
                return False        # the body vanished: the origin's reply is passed on
            stream.close()
        reply.freshen(policy.freshen_headers(reply.headers, resp.headers),
                      txn.upstream_started_wall or time.time(), time.time())
        self.cache.store.refresh(self.key, reply, self.stored_body)
        txn.entry.result = "TCP_REFRESH_UNMODIFIED"
        txn.divert_reply()
        self.serve(reply, "TCP_REFRESH_UNMODIFIED", 0.0)
        return True

    def on_error(self, error) -> bool:
        """The origin could not be reached.  True when a stale entry answers instead
        (RFC 5861 4, RFC 9111 4.2.4)."""
        if self.revalidating and self.stored is not None:
            if (policy.may_serve_stale_on_error(self.req_cc, self.resp_cc, self.age, self.lifetime)
                    or policy.may_serve_stale_disconnected(self.req_cc, self.resp_cc)):
                self.serve(self.stored, "TCP_REFRESH_FAIL_OLD", self.age)
                return True
            if policy.must_revalidate(self.resp_cc):
                # 5.2.2.2: it may not be served stale, and the origin cannot be reached
                self.txn.fail(getattr(error, "error", "ERR_CANNOT_FORWARD"), str(error), 504,
                              result="TCP_REFRESH_FAIL_ERR")
                return True
            self.txn.entry.result = "TCP_REFRESH_FAIL_ERR"
        self._drop_tee()
        return False

    def _maybe_tee(self, resp) -> None:
        """Keep a copy of the reply while it streams, if it may be stored."""
        txn, cache = self.txn, self.cache
        if txn.head.method != "GET" or not cache.allows(txn):
            return
        if "no-store" in self.req_cc and "ignore-no-store" not in cache.options(txn.target.url):
            return
        ok, why = policy.is_storable("GET", resp.status, txn.head.headers, resp.headers,
                                     self.req_cc, policy.cache_control(resp.headers))
        if ok and resp.content_length is not None and not cache.size_allowed(resp.content_length):
            ok = False
        if not ok:
            # nobody should wait for this URL: the waiters fetch on their own, now and next time
            cache.mark_uncacheable(self.key)
            self._release_waiters()
            return
        self.tee = Tee(cache, resp, txn.upstream_started_wall or time.time())

    def on_body(self, data: bytes) -> None:
        tee = self.tee
        if tee is not None and not tee.add(data):
            self.tee = None

    def on_done(self, complete: bool) -> None:
        tee, self.tee = self.tee, None
        if tee is None:
            return
        if not complete or (tee.resp.content_length is not None and tee.size != tee.resp.content_length):
            tee.discard()
            return
        txn = self.txn
        names = policy.vary_names(tee.resp.headers)
        key = entry_key(txn.target.url, policy.vary_key(names, txn.head.headers) if names else ())
        tee.commit(key, txn.target.url, names, policy.vary_key(names, txn.head.headers) if names else ())

    def _drop_tee(self) -> None:
        tee, self.tee = self.tee, None
        if tee is not None:
            tee.discard()

    def finish(self) -> None:
        """The transaction ended: wake whoever waited for our fetch."""
        self._drop_tee()
        if self.streamer is not None:
            self.streamer.stop()
        self._release_waiters()

    # flow control, when a disk hit feeds the client
    def pause_reading(self, reason: str) -> None:
        if self.streamer is not None:
            self.streamer.pause_reading(reason)

    def resume_reading(self, reason: str) -> None:
        if self.streamer is not None:
            self.streamer.resume_reading(reason)


def _single_range_fields(first: int, last: int, length: int) -> bytes:
    return b"Content-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n" % (first, last, length, last - first + 1)


class BodyStreamer:
    """Sends a stored body from disk in chunks, pausing when the client is full,
    and checks its length and SHA-256 on the way (a corrupt entry is removed)."""

    def __init__(self, flow: CacheFlow, reply: CachedReply, stream, window: tuple[int, int] | None = None):
        self.flow = flow
        self.reply = reply
        self.stream = stream
        self.sent = 0
        # a byte range (first, last) sends only that part: its length is checked, not the digest
        self.expected = reply.body_size if window is None else window[1] - window[0] + 1
        self.whole = window is None
        if window is not None and window[0]:
            stream.seek(window[0])
        self.digest = hashlib.sha256()
        self.paused = {"start"}
        self.scheduled = False
        self.done = False

    def pause_reading(self, reason: str) -> None:
        self.paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        self.paused.discard(reason)
        if not self.paused and not self.scheduled and not self.done:
            self.scheduled = True
            self.flow.txn.service.reactor.callLater(0, self._pump)

    def _pump(self) -> None:
        self.scheduled = False
        txn = self.flow.txn
        if self.done or txn.finished:
            return self.stop()
        while not self.paused:
            try:
                chunk = self.stream.read(STREAM_CHUNK if self.whole else min(STREAM_CHUNK, self.expected - self.sent))
            except OSError:
                chunk = None
            if not chunk:
                return self._end()
            self.sent += len(chunk)
            if self.whole:
                self.digest.update(chunk)
            txn.entry.reply_body_size += len(chunk)
            txn.client.write(chunk)
            if self.sent > self.expected or (not self.whole and self.sent == self.expected):
                return self._end()
            if not self.paused:
                # let other connections run between chunks
                self.scheduled = True
                txn.service.reactor.callLater(0, self._pump)
                return

    def _end(self) -> None:
        txn = self.flow.txn
        intact = self.sent == self.expected and (
            not self.whole or not self.reply.sha256 or self.digest.hexdigest() == self.reply.sha256)
        self.stop()
        if not intact:
            log.error("cache_dir entry for %s is damaged (%d of %d bytes): removed", self.reply.url,
                      self.sent, self.reply.body_size)
            self.flow.cache.store.remove_url(self.reply.url)
            txn.entry.result += "_ABORTED"
            txn.keep_alive = False
            txn.client.abort()
        txn.finish()

    def stop(self) -> None:
        if not self.done:
            self.done = True
            try:
                self.stream.close()
            except OSError:
                pass


class Tee:
    """A copy of a reply being received, for the store: in memory while it is small,
    then in a temp file in the cache_dir written by the writer thread."""

    def __init__(self, cache, resp, request_time: float):
        self.cache = cache
        self.resp = resp
        self.request_time = request_time
        self.chunks: list[bytes] = []
        self.size = 0
        self.digest = hashlib.sha256()
        self.temp = None
        self.failed = False

    def add(self, data: bytes) -> bool:
        self.size += len(data)
        self.digest.update(data)
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
                self.temp = disk.new_temp()
                if self.temp is None:
                    self.discard()
                    return False
                pending, self.chunks = b"".join(self.chunks), []
                return self._write(pending)
            return True
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        temp, disk = self.temp, self.cache.store.disk

        def job():
            if self.failed:
                return
            try:
                temp.write(data)
            except OSError as e:
                self.failed = True
                disk.report_failure(f"writing {temp.name}", e)
        if not disk.writer.submit(job):
            self.discard()
            return False
        return True

    def commit(self, key: str, url: str, names, vary_key) -> None:
        if self.failed:
            return self.discard()
        now = time.time()
        headers = policy.headers_to_store(self.resp.headers, self.size, message.http_date(now))
        reply = CachedReply(url=url, status=self.resp.status, reason=self.resp.reason, headers=headers,
                            request_time=self.request_time, response_time=now, body_size=self.size,
                            vary_names=names, vary_key=vary_key, sha256=self.digest.hexdigest(),
                            stored_at=now)
        if self.temp is None:
            self.cache.store.put(key, reply, b"".join(self.chunks), None)
            self.chunks = []
            return
        temp = self.temp
        self.temp = None
        done = self.cache.store.disk.writer.submit(temp.close)
        if done:
            self.cache.store.put(key, reply, None, temp.name)

    def discard(self) -> None:
        self.chunks = []
        temp, self.temp = self.temp, None
        if temp is not None:
            def job():
                temp.close()
                try:
                    os.unlink(temp.name)
                except OSError:
                    pass
            if not self.cache.store.disk.writer.submit(job):
                temp.close()


def same_origin_resolver(url: str):
    """For invalidation (RFC 9111 4.4): resolve a Location against ``url``; None if
    it is on another origin."""
    base = urllib.parse.urlsplit(url)

    def resolve(value: str) -> str | None:
        try:
            target = urllib.parse.urlsplit(urllib.parse.urljoin(url, value))
        except ValueError:
            return None
        if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname, base.port):
            return None
        return urllib.parse.urlunsplit(target._replace(fragment=""))
    return resolve


HIT_RESULTS = frozenset({"TCP_HIT", "TCP_MEM_HIT", "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_FAIL_OLD",
                         "TCP_INM_HIT", "TCP_IMS_HIT", "TCP_OFFLINE_HIT"})


class Cache:
    """The running cache: the store, the cache-related settings, collapsed fetches, counters."""

    def __init__(self, service, config, store):
        self.service = service
        self.store = store
        self.pending: dict[str, list[CacheFlow]] = {}
        self.uncacheable: dict[str, float] = {}
        self.requests = self.hits = 0
        self.bytes = self.hit_bytes = 0
        self.configure(config)

    def configure(self, config) -> None:
        from squidpy.cache.refresh import pattern_for
        self._pattern_for = pattern_for
        self.generation = getattr(self, "generation", 0) + 1     # stored entries' memos are stale now
        self.config = config
        self.patterns = config.refresh_pattern
        self.max_in_memory = config.maximum_object_size_in_memory
        self.store.max_in_memory = self.max_in_memory
        self.store.memory.limit = config.cache_mem
        self.offline = config.offline_mode
        self.collapsed = config.collapsed_forwarding

    UNCACHEABLE_MEMORY = 60.0     # seconds a URL with an unstorable reply is not collapsed

    def mark_uncacheable(self, key: str) -> None:
        if len(self.uncacheable) > 10000:
            self.uncacheable.clear()
        self.uncacheable[key] = time.monotonic() + self.UNCACHEABLE_MEMORY

    def recently_uncacheable(self, key: str) -> bool:
        until = self.uncacheable.get(key)
        return until is not None and until > time.monotonic()

    def refresh_rule(self, url: str):
        pattern = self._pattern_for(self.patterns, url)
        return pattern.rule if pattern is not None else None

    def options(self, url: str) -> frozenset:
        pattern = self._pattern_for(self.patterns, url)
        return pattern.options if pattern is not None else frozenset()

    def allows(self, txn) -> bool:
        """The ``cache`` access list: may this request be answered from or stored in the cache?"""
        access = self.config.cache
        if not access:
            return True
        try:
            return access.check(txn.checklist).allowed
        except Exception:
            return False

    def size_allowed(self, size: int) -> bool:
        return self.config.minimum_object_size <= size <= self.config.maximum_object_size

    def flow_for(self, txn) -> CacheFlow | None:
        if txn.head.method not in ("GET", "HEAD") or not self.allows(txn):
            return None
        return CacheFlow(txn, self)

    def record(self, entry) -> None:
        """Counters for 'squidpy cache stats', from each finished transaction."""
        if entry.method not in ("GET", "HEAD"):
            return
        self.requests += 1
        self.bytes += entry.bytes_sent
        if entry.result in HIT_RESULTS:
            self.hits += 1
            self.hit_bytes += entry.bytes_sent

    def invalidate(self, method: str, status: int, url: str, headers) -> None:
        """RFC 9111 4.4, after an unsafe method's reply."""
        for target in policy.invalidated_urls(method, status, url, headers, same_origin_resolver(url)):
            self.store.remove_url(target)

    def background_refresh(self, txn) -> None:
        """stale-while-revalidate (RFC 5861 3): refresh the entry after answering stale."""
        from squidpy.proxy.refresh_client import refresh_in_background
        refresh_in_background(self.service, txn)

    def objects(self):
        """Every stored object, memory first (for the cache manager and 'squidpy cache ls')."""
        seen = set()
        for key, (reply, body) in list(self.store.memory.items.items()):
            seen.add(key)
            yield {"url": reply.url, "status": reply.status, "size": reply.body_size, "tier": "memory"}
        if self.store.disk is not None:
            for key, meta in self.store.disk.entries():
                if key not in seen:
                    yield {"url": meta["url"], "status": meta["status"], "size": meta["body_size"], "tier": "disk"}

    def stats(self) -> dict:
        memory = self.store.memory
        disk = self.store.disk
        disk_stats = {}
        if disk is not None:
            disk_stats = {"cache_dir": disk.path, "disk_bytes": disk.cache.volume(),
                          "disk_limit_bytes": disk.cache.size_limit}
        return {**disk_stats,
            "requests": self.requests, "hits": self.hits,
            "hit_ratio": self.hits / self.requests if self.requests else 0.0,
            "bytes": self.bytes, "hit_bytes": self.hit_bytes,
            "byte_hit_ratio": self.hit_bytes / self.bytes if self.bytes else 0.0,
            "memory_entries": len(memory.items), "memory_bytes": memory.size,
            "memory_limit_bytes": memory.limit,
        }

    def close(self) -> None:
        self.store.close()
