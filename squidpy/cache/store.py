"""The cache store: a memory tier of small objects over a diskcache directory.

* An entry is a :class:`CachedReply`: the reply's head (pre-serialised, so a
  memory hit is a couple of byte strings), its metadata, and its body.
* Keys: ``entry_key(url, vary_key)``, the URL itself when its replies do not
  Vary (so a memory hit costs one dict lookup); on disk a digest of it.  A URL
  whose replies Vary keeps the Vary field names under ``index_key(url)``.
* The memory tier (``cache_mem``) holds objects up to
  ``maximum_object_size_in_memory``, least recently used out first.
* The disk tier (``cache_dir diskcache PATH MB``) is a diskcache Cache, safe
  for several processes.  A body is stored completely under a fresh key before
  the metadata that points at it is written, in one transaction each, so a
  crash at any moment leaves either the old entry, the new one, or none, never
  a truncated one; length and CRC-32 are checked again on the way out.
* Every disk write happens on one writer thread fed by a bounded queue; when
  the queue is full the object is simply not stored, so the reactor never
  waits for the disk.
"""

from __future__ import annotations

import heapq
import io
import logging
import os
import pickle
import queue
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol, TypedDict

from squidpy.cache import policy, refresh
from squidpy.http import message
from squidpy.cache.refresh import EntryFacts
from squidpy.digests import sha256

if TYPE_CHECKING:
    from squidpy.cache.policy import RefreshRule
    from squidpy.cache.refresh import RefreshSettings
    from squidpy.http.message import Fields

log = logging.getLogger("squidpy")

WRITE_QUEUE = 256
# what a misbehaving disk or database raises
DISK_ERRORS = (OSError, sqlite3.Error, pickle.UnpicklingError, EOFError)


Meta = dict[str, Any]
"""A :class:`CachedReply`'s fields by name, as stored on disk; read back, the values are
whatever was pickled (entries stored by older versions lack the newer fields)."""


class FactsSource(Protocol):
    """What :meth:`CachedReply.facts` needs of the cache (the running proxy's cache settings)."""

    @property
    def generation(self) -> int: ...
    @property
    def refresh_settings(self) -> RefreshSettings: ...
    def refresh_rule(self, url: str) -> RefreshRule: ...


class _Memo(TypedDict, total=False):
    """A reply's derived facts, memoised per process (never stored)."""

    generation: int
    facts: EntryFacts
    mime: str | None


class DiskCache(Protocol):
    """The part of diskcache's Cache the store uses (diskcache has no type information).
    ``get`` answers whatever was stored, unchecked: callers look before they trust it."""

    size_limit: int

    def get(self, key: str, default: object = None, read: bool = False, retry: bool = False) -> Any: ...
    def set(self, key: str, value: object, read: bool = False, retry: bool = False) -> bool: ...
    def delete(self, key: str, retry: bool = False) -> bool: ...
    def transact(self, retry: bool = False) -> AbstractContextManager[object]: ...
    def iterkeys(self) -> Iterator[object]: ...
    def volume(self) -> int: ...
    def close(self) -> None: ...


def entry_key(url: str, vary: tuple[bytes, ...] = ()) -> str:
    """The store's key for a URL and, when its replies Vary, the request's values."""
    if not vary:
        return url
    return url + "\0" + "\0".join(v.decode("latin-1") for v in vary)


def disk_key(key: str) -> str:
    """Keys on disk are fixed-length digests of the store's keys."""
    return "e:" + sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def index_key(url: str) -> str:
    return "v:" + sha256(url.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class CachedReply:
    """One stored reply.  ``head`` is the status line and stored fields, each ending in
    CRLF, without the blank line (per-hit fields such as Age are appended)."""

    url: str
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    request_time: float
    response_time: float
    body_size: int
    vary_names: tuple[bytes, ...] = ()
    vary_key: tuple[bytes, ...] = ()
    crc32: int = -1             # the body's CRC-32 (-1: stored before squidpy kept one)
    sha256: str = ""            # what entries stored before the CRC-32 carry instead
    body_key: str = ""
    head: bytes = b""
    stored_at: float = 0.0
    extra: _Memo = field(default_factory=_Memo)   # per-process memo of derived facts, never stored

    def facts(self, cache: FactsSource) -> EntryFacts:
        """What the freshness check needs (:class:`squidpy.cache.refresh.EntryFacts`),
        computed once per configuration (``cache.generation`` changes on reconfigure;
        ``cache.refresh_rule(url)`` is the refresh_pattern rule)."""
        memo = self.extra
        if memo.get("generation") != cache.generation:
            memo["facts"] = refresh.entry_facts(self.status, self.headers, cache.refresh_rule(self.url),
                                                self.request_time, self.response_time, cache.refresh_settings)
            memo["generation"] = cache.generation
        return memo["facts"]

    def freshen(self, headers: list[tuple[bytes, bytes]], request_time: float, response_time: float) -> None:
        """New fields and times from a 304 (RFC 9111 4.3.4): the derived facts are redone."""
        self.headers, self.request_time, self.response_time = headers, request_time, response_time
        self.extra = {}
        self.serialise_head()

    @property
    def mime_type(self) -> str | None:
        memo = self.extra
        if "mime" not in memo:
            value = message.field(self.headers, b"content-type") or b""
            memo["mime"] = value.split(b";")[0].strip().decode("latin-1") or None
        return memo["mime"]

    def serialise_head(self) -> None:
        """Status line and the fields a hit carries (Age is computed per hit; no
        per-user field such as Set-Cookie is ever replayed, see
        :func:`policy.fields_for_hit`).  Also forgets the derived facts, which the
        fields may have changed."""
        self.extra = {}
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, self.reason)]
        lines.extend(b"%s: %s\r\n" % kv for kv in policy.fields_for_hit(self.headers))
        self.head = b"".join(lines)

    def meta(self) -> Meta:
        """What goes to disk (the body is stored separately)."""
        return {
            "url": self.url, "status": self.status, "reason": self.reason, "headers": self.headers,
            "request_time": self.request_time, "response_time": self.response_time,
            "body_size": self.body_size, "vary_names": self.vary_names, "vary_key": self.vary_key,
            "crc32": self.crc32, "sha256": self.sha256, "body_key": self.body_key, "stored_at": self.stored_at,
        }

    def body_check(self) -> "BodyCheck":
        return BodyCheck(self.crc32, self.sha256)

    def without_field(self, name: bytes) -> "CachedReply":
        """A copy without the field ``name`` (a multipart reply has its own Content-Type)."""
        copy = CachedReply(**{**self.meta(), "headers": [kv for kv in self.headers if kv[0].lower() != name]})
        copy.serialise_head()
        return copy

    @classmethod
    def from_meta(cls, meta: Meta) -> "CachedReply":
        reply = cls(**meta)
        reply.serialise_head()
        return reply


class BodyCheck:
    """Whether a stored body read back is the one stored: its CRC-32 (zlib: a few
    times faster than SHA-256 and made to catch damaged bytes; the length is checked
    apart), or the SHA-256 that entries stored before carry."""

    def __init__(self, crc32: int, sha256_hex: str):
        self.expected = crc32
        self.crc = 0
        self.legacy = sha256_hex
        self.sha = sha256() if crc32 < 0 and sha256_hex else None

    def update(self, chunk: bytes) -> None:
        if self.sha is not None:
            self.sha.update(chunk)
        else:
            self.crc = zlib.crc32(chunk, self.crc)

    def intact(self) -> bool:
        if self.sha is not None:
            return self.sha.hexdigest() == self.legacy
        return self.expected < 0 or self.crc == self.expected


class MemoryTier:
    """Objects bounded by total bytes, least recently used out first (Squid's ``lru`` and
    ``heap LRU`` memory_replacement_policy); ``by_url`` finds every variant of a URL at
    once (invalidation costs the same with one object or a million)."""

    policy = "lru"

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self.items: OrderedDict[str, tuple[CachedReply, bytes]] = OrderedDict()
        self.index: dict[str, tuple[bytes, ...]] = {}
        self.by_url: dict[str, set[str]] = {}

    def get(self, key: str) -> tuple[CachedReply, bytes] | None:
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key: str, reply: CachedReply, body: bytes) -> None:
        cost = len(body) + len(reply.head) + 256
        if cost > self.limit:
            return
        self.remove(key)
        self.items[key] = (reply, body)
        self.by_url.setdefault(reply.url, set()).add(key)
        self.size += cost
        self._added(key, cost)
        while self.size > self.limit and self.items:
            self.remove(self._victim())

    def _added(self, key: str, cost: int) -> None:
        """A policy's bookkeeping for a new object."""

    def _victim(self) -> str:
        return next(iter(self.items))

    def remove(self, key: str) -> bool:
        item = self.items.pop(key, None)
        if item is None:
            return False
        reply, body = item
        self.size -= len(body) + len(reply.head) + 256
        keys = self.by_url.get(reply.url)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_url[reply.url]
        return True

    def remove_url(self, url: str) -> int:
        """Every variant of ``url``; returns how many there were."""
        self.index.pop(url, None)
        keys = self.by_url.pop(url, ())
        for key in list(keys):
            item = self.items.pop(key, None)
            if item is not None:
                self.size -= len(item[1]) + len(item[0].head) + 256
        return len(keys)


class FinishedBody:
    """A body received whole into a temp file in the cache_dir, to be stored by renaming
    the file into place rather than copying it."""

    __slots__ = ("path", "size")

    def __init__(self, path: str, size: int):
        self.path, self.size = path, size


_BODY_DISK: type[object] | None = None


def _body_disk() -> type[object]:
    """diskcache's Disk, storing a :class:`FinishedBody` by renaming its file (the temp
    file and the cache's files are on the same file system: both in the cache_dir), so a
    large object is written once, not written then copied."""
    global _BODY_DISK
    if _BODY_DISK is None:
        import diskcache
        from diskcache.core import MODE_BINARY

        class BodyDisk(diskcache.Disk):
            def store(self, value: object, read: bool,
                      key: object = diskcache.core.UNKNOWN) -> tuple[int, int, str | None, object]:
                if type(value) is not FinishedBody:
                    stored: tuple[int, int, str | None, object] = super().store(value, read, key)
                    return stored
                filename, full_path = self.filename(key, value)
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                os.rename(value.path, full_path)
                return value.size, MODE_BINARY, filename, None

        _BODY_DISK = BodyDisk
    return _BODY_DISK


class HeapMemoryTier(MemoryTier):
    """Squid's ``heap LFUDA`` and ``heap GDSF`` (src/repl/heap): each object has a key,
    the lowest goes first, and the heap's age becomes the key of the object evicted
    last, so that objects popular long ago age out (dynamic aging).  LFUDA's key is
    age + hits; GDSF's is age + hits / size, which keeps small popular objects.  Ties
    go to the more recently used (Squid breaks them by last reference time too)."""

    def __init__(self, limit: int, policy: str):
        super().__init__(limit)
        self.policy = policy
        self.by_size = policy == "heap GDSF"
        self.age = 0.0
        self.clock = 0                                  # recency, for ties
        self.keys: dict[str, tuple[float, int, int, int]] = {}   # key -> (heap key, clock, hits, cost)
        self.heap: list[tuple[float, int, str]] = []

    def _push(self, key: str, hits: int, cost: int) -> None:
        self.clock += 1
        rank = self.age + (hits / cost if self.by_size else hits)
        self.keys[key] = (rank, self.clock, hits, cost)
        heapq.heappush(self.heap, (rank, self.clock, key))
        if len(self.heap) > 3 * len(self.keys) + 64:
            self.heap = [(rank, clock, k) for k, (rank, clock, _h, _c) in self.keys.items()]
            heapq.heapify(self.heap)

    def get(self, key: str) -> tuple[CachedReply, bytes] | None:
        item = self.items.get(key)
        if item is not None:
            _rank, _clock, hits, cost = self.keys[key]
            self._push(key, hits + 1, cost)
        return item

    def _added(self, key: str, cost: int) -> None:
        self._push(key, 1, cost)

    def _victim(self) -> str:
        keys = self.keys
        while True:
            rank, clock, key = heapq.heappop(self.heap)
            current = keys.get(key)
            if current is not None and current[1] == clock:
                self.age = rank                        # dynamic aging
                return key

    def remove(self, key: str) -> bool:
        self.keys.pop(key, None)
        return super().remove(key)

    def remove_url(self, url: str) -> int:
        for key in self.by_url.get(url, ()):
            self.keys.pop(key, None)
        return super().remove_url(url)


def memory_tier(limit: int, policy: str = "lru") -> MemoryTier:
    """The memory tier for memory_replacement_policy ``policy``."""
    if policy in ("lru", "heap LRU"):
        return MemoryTier(limit)
    return HeapMemoryTier(limit, policy)


class DiskWriter(threading.Thread):
    """The one thread that writes to the cache_dir; jobs are callables."""

    def __init__(self) -> None:
        super().__init__(name="squidpy-cache-writer", daemon=True)
        self.jobs: queue.Queue[Callable[[], object] | None] = queue.Queue(WRITE_QUEUE)
        self.start()

    def submit(self, job: Callable[[], object]) -> bool:
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            return False

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("cache_dir write failed")

    def stop(self, timeout: float = 10.0) -> None:
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self.join(timeout)


# cache_replacement_policy -> diskcache's eviction policy: diskcache has no heap with
# dynamic aging nor a size-aware one, so both heap policies keep the most used objects
DISK_EVICTION = {"lru": "least-recently-used", "heap LRU": "least-recently-used",
                 "heap LFUDA": "least-frequently-used", "heap GDSF": "least-frequently-used"}


class DiskIndex:
    """Which keys the cache_dir holds, kept in memory like Squid's store index, so a
    miss costs a set probe instead of a database read.

    Keys are the first 64 bits of the on-disk digests.  Until the startup scan is
    done (``complete``) a probe says "maybe" and the disk is asked.  A key the disk
    evicted by itself stays here until a lookup misses it (a needless read, never
    a wrong answer)."""

    def __init__(self) -> None:
        self.keys: set[int] = set()
        self.complete = False

    @staticmethod
    def of(on_disk: str) -> int:
        return int(on_disk[2:18], 16)

    def may_hold(self, on_disk: str) -> bool:
        return not self.complete or int(on_disk[2:18], 16) in self.keys

    def add(self, on_disk: str) -> None:
        self.keys.add(int(on_disk[2:18], 16))

    def discard(self, on_disk: str) -> None:
        self.keys.discard(int(on_disk[2:18], 16))

    def load(self, keys: Iterable[object]) -> None:
        """Merge the keys a scan found (in the writer thread); adds made meanwhile stay."""
        found = {int(k[2:18], 16) for k in keys if isinstance(k, str) and k[:2] in ("e:", "v:")}
        self.keys |= found
        self.complete = True


class DiskTier:
    """A diskcache directory shared by every squidpy process using it.

    Every operation survives the disk misbehaving: a failure (disk full, a
    read-only or vanished directory, a corrupted database) makes the store
    answer "not stored" / "not found", is reported once in cache_log, and a
    corrupted database is moved aside and started afresh, so the proxy keeps
    serving, uncached, and recovers by itself.
    """

    def __init__(self, path: str, size_mb: int, policy: str = "lru"):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.eviction_policy = DISK_EVICTION[policy]
        self.size_limit = size_mb * 1024 * 1024
        incoming = os.path.join(path, "incoming")
        os.makedirs(incoming, exist_ok=True)
        _clean_incoming(incoming)
        self.tmp = os.path.join(incoming, str(os.getpid()))
        os.makedirs(self.tmp, exist_ok=True)
        self.cache = self._open()
        self.writer = DiskWriter()
        self.failing = False
        self._repairing = False
        # url -> when it was invalidated: entries stored before are not served while the
        # writer thread has yet to delete them
        self.invalidated: dict[str, float] = {}
        # on-disk key -> metadata a 304 freshened, until the writer thread has written it,
        # so that a lookup meanwhile does not find the stale fields and revalidate again
        self.refreshed: dict[str, Meta] = {}
        self.known = DiskIndex()
        # other processes (workers) write this cache_dir too: what they store is not in
        # ``known``, so every miss asks the disk
        self.shared = False
        self.writer.submit(self.scan)

    def scan(self) -> None:
        """Read which keys the cache_dir holds into ``known`` (writer thread)."""
        try:
            self.known.load(self.cache.iterkeys())
        except DISK_ERRORS as e:
            self.report_failure("listing", e)

    def may_hold(self, on_disk: str) -> bool:
        """Whether a lookup of ``on_disk`` can find anything (no disk access)."""
        return self.shared or self.known.may_hold(on_disk)
    def _open(self) -> DiskCache:
        import diskcache
        # sqlite's page cache and memory map are per connection (one per thread
        # here); diskcache's defaults (32 MB and 64 MB) make a long-running
        # proxy's memory creep up to ~200 MB, 4 MB each keeps the index hot
        cache: DiskCache = diskcache.Cache(self.path, size_limit=self.size_limit,
                                           eviction_policy=self.eviction_policy, cull_limit=50,
                                           sqlite_cache_size=1024, sqlite_mmap_size=1 << 22, disk=_body_disk())
        return cache

    # ---------------------------------------------------------------- failures
    def report_failure(self, what: str, error: Exception) -> None:
        if not self.failing:
            log.error("cache_dir %s: %s failed: %s; serving without the disk cache until it recovers",
                      self.path, what, error)
            self.failing = True
        corrupt = isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)
        if corrupt and not self._repairing:     # "file is not a database", "malformed" (not a full disk)
            self._repairing = True
            self.writer.submit(self._repair)

    def _recovered(self) -> None:
        if self.failing:
            log.warning("cache_dir %s works again", self.path)
            self.failing = False

    def _repair(self) -> None:
        """A database that cannot be read is moved aside and replaced by an empty one."""
        try:
            try:
                self.cache.close()
            except DISK_ERRORS:
                pass
            try:
                fresh = self._open()
                fresh.get("probe")          # does it read?
            except DISK_ERRORS:
                stamp = time.strftime("%Y%m%d%H%M%S")
                for name in os.listdir(self.path):
                    if name.startswith("cache.db"):
                        os.replace(os.path.join(self.path, name), os.path.join(self.path, f"{name}.corrupt-{stamp}"))
                log.error("cache_dir %s: the database was damaged; moved aside, starting empty", self.path)
                fresh = self._open()
            self.cache = fresh
            self.known = DiskIndex()
            self.scan()
        except DISK_ERRORS as e:
            log.error("cache_dir %s: cannot reopen: %s", self.path, e)
        finally:
            self._repairing = False

    # ---------------------------------------------------------------- reading (reader threads)
    def lookup(self, key: str) -> CachedReply | None:
        on_disk = disk_key(key)
        try:
            meta = self.cache.get(on_disk, retry=True)
        except DISK_ERRORS as e:
            self.report_failure("reading", e)
            return None
        if not isinstance(meta, dict):
            return None
        fresher = self.refreshed.get(on_disk)
        if fresher is not None and fresher.get("body_key") == meta.get("body_key"):
            meta = fresher
        gone = self.invalidated.get(meta["url"])
        if gone is not None and meta.get("stored_at", 0.0) <= gone:
            return None
        return CachedReply.from_meta(meta)

    def index(self, url: str) -> tuple[bytes, ...] | None:
        """The Vary field names of ``url``'s replies, if they vary."""
        try:
            value = self.cache.get(index_key(url), retry=True)
        except DISK_ERRORS as e:
            self.report_failure("reading", e)
            return None
        if value is None or url in self.invalidated:
            return None
        return tuple(value["names"]) if isinstance(value, dict) else tuple(value)

    def open_body(self, reply: CachedReply) -> IO[bytes] | None:
        """A file-like object of the body, or None if it is gone."""
        try:
            value = self.cache.get(reply.body_key, read=True, retry=True)
        except DISK_ERRORS as e:
            self.report_failure("reading", e)
            return None
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray)):
            return io.BytesIO(value)
        stream: IO[bytes] = value           # diskcache's file for a body stored as a file
        return stream

    def new_temp(self) -> IO[bytes] | None:
        """A temp file for a large body being received; None when the disk refuses."""
        try:
            return tempfile.NamedTemporaryFile(dir=self.tmp, prefix="obj-", delete=False)
        except DISK_ERRORS as e:
            self.report_failure("creating a temp file", e)
            return None

    # ---------------------------------------------------------------- writing (writer thread)
    def store(self, key: str, reply: CachedReply, body_path: str | None, body: bytes | None) -> bool:
        """Queue a whole reply for writing (body from memory or from a finished temp file)."""
        on_disk = disk_key(key)

        def job() -> None:
            reply.body_key = f"b:{on_disk[2:]}:{uuid.uuid4().hex}"
            try:
                if body_path is not None:
                    if os.path.getsize(body_path) != reply.body_size:     # a temp write failed
                        raise OSError(f"the body's temp file is short ({os.path.getsize(body_path)} "
                                      f"of {reply.body_size} bytes)")
                    self.cache.set(reply.body_key, FinishedBody(body_path, reply.body_size), read=True,
                                   retry=True)
                else:
                    self.cache.set(reply.body_key, body, retry=True)
                old = self.cache.get(on_disk, retry=True)
                self.cache.set(on_disk, reply.meta(), retry=True)
                self.known.add(on_disk)
                if reply.vary_names:
                    # the index names the variants, so that removing the URL finds them all
                    index = self.cache.get(index_key(reply.url), retry=True)
                    keys = set(index["keys"]) if isinstance(index, dict) and index["names"] == reply.vary_names \
                        else set()
                    keys.add(on_disk)
                    self.cache.set(index_key(reply.url), {"names": reply.vary_names, "keys": sorted(keys)},
                                   retry=True)
                    self.known.add(index_key(reply.url))
                else:
                    self.cache.delete(index_key(reply.url), retry=True)
                if isinstance(old, dict) and old.get("body_key"):
                    self.cache.delete(old["body_key"], retry=True)
                self._recovered()
            except DISK_ERRORS as e:
                try:
                    self.cache.delete(reply.body_key, retry=True)
                except DISK_ERRORS:
                    pass
                self.report_failure(f"storing {reply.url}", e)
            finally:
                if body_path is not None:
                    _unlink(body_path)
        return self.writer.submit(job)

    def refresh(self, key: str, reply: CachedReply) -> bool:
        """Queue new metadata for an entry whose body stays (after a 304): the body is
        neither read nor rewritten, and nothing changes if the entry was replaced meanwhile."""
        on_disk = disk_key(key)
        body_key = reply.body_key
        meta = reply.meta()

        def job() -> None:
            try:
                with self.cache.transact(retry=True):
                    current = self.cache.get(on_disk, retry=True)
                    if isinstance(current, dict) and body_key and current.get("body_key") == body_key:
                        self.cache.set(on_disk, meta, retry=True)
                self._recovered()
            except DISK_ERRORS as e:
                self.report_failure(f"updating {reply.url}", e)
            finally:
                if self.refreshed.get(on_disk) is meta:
                    del self.refreshed[on_disk]
        self.refreshed[on_disk] = meta
        if not self.writer.submit(job):
            self.refreshed.pop(on_disk, None)
            return False
        return True

    def _remove(self, on_disk: str) -> bool:
        self.known.discard(on_disk)
        meta = self.cache.get(on_disk, retry=True)
        if not isinstance(meta, dict):
            return False
        self.cache.delete(on_disk, retry=True)
        if meta.get("body_key"):
            self.cache.delete(meta["body_key"], retry=True)
        return True

    def remove_url(self, url: str, done: Callable[[int], object] | None = None) -> None:
        """Queue the removal of every variant of ``url`` (the variants the URL's index
        names, so the cost does not depend on the cache's size); until it is done,
        lookups do not find them.  ``done(count)`` runs in the writer thread."""
        self.invalidated[url] = time.time()

        def job() -> None:
            count = 0
            try:
                count += self._remove(disk_key(entry_key(url)))
                index = self.cache.get(index_key(url), retry=True)
                if isinstance(index, dict):
                    for on_disk in index["keys"]:
                        count += self._remove(on_disk)
                elif index is not None:     # an index written before variants were listed
                    for key, meta in list(self.entries()):
                        if meta.get("url") == url:
                            count += self._remove(disk_key(key))
                self.cache.delete(index_key(url), retry=True)
                self.known.discard(index_key(url))
            except DISK_ERRORS as e:
                self.report_failure("removing", e)
            finally:
                self.invalidated.pop(url, None)
                if done is not None:
                    done(count)
        if not self.writer.submit(job):
            job()       # the queue is full: remove now rather than serve what must go

    def volume(self) -> int:
        """Bytes the cache_dir takes on disk (diskcache's estimate: cheap)."""
        try:
            return self.cache.volume()
        except DISK_ERRORS:
            return 0

    def count_entries(self) -> int:
        """How many objects are stored (for the cache manager; run in a reader thread).
        Counted by the database over its key index, without loading anything."""
        import sqlite3 as sql
        try:
            with sql.connect(f"file:{os.path.join(self.path, 'cache.db')}?mode=ro", uri=True, timeout=5) as con:
                count: int = con.execute("SELECT COUNT(*) FROM Cache WHERE key >= 'e:' AND key < 'e;'").fetchone()[0]
                return count
        except sql.Error:
            return sum(1 for _ in self.entries())

    def entries(self) -> Iterator[tuple[str, Meta]]:
        """(store key, metadata) of every entry on disk."""
        try:
            for key in self.cache.iterkeys():
                if isinstance(key, str) and key.startswith("e:"):
                    meta = self.cache.get(key, retry=True)
                    if isinstance(meta, dict):
                        yield entry_key(meta["url"], tuple(meta.get("vary_key") or ())), meta
        except DISK_ERRORS as e:
            self.report_failure("listing", e)

    def probe(self) -> None:
        """Write a temp file where bodies are written, and check the database files may be
        written (opening the database already wrote to it); raises what the disk says."""
        with tempfile.NamedTemporaryFile(dir=self.tmp) as f:
            f.write(b"probe")
            f.flush()
        for name in os.listdir(self.path):
            if name.startswith("cache.db") and not os.access(os.path.join(self.path, name), os.W_OK):
                raise PermissionError(13, "Permission denied", os.path.join(self.path, name))

    def close(self) -> None:
        self.writer.stop()
        try:
            self.cache.close()
        except DISK_ERRORS:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class CacheDirError(Exception):
    """One line saying why a cache_dir cannot be used."""


def open_cache_dir(path: str, size_mb: int, policy: str = "lru") -> DiskTier:
    """A cache_dir known to work: created if missing, and written to once (a directory
    that exists but is read-only, or not ours, fails here, at start, not on the first
    store).  Raises CacheDirError."""
    try:
        disk = DiskTier(path, size_mb, policy)
    except DISK_ERRORS as e:
        raise CacheDirError(f"cache_dir {path}: {_reason(e)}") from None
    try:
        disk.probe()
    except DISK_ERRORS as e:
        disk.close()
        raise CacheDirError(f"cache_dir {path}: {_reason(e)}") from None
    return disk


def _reason(error: Exception) -> str:
    import errno
    import pwd
    if isinstance(error, OSError) and error.strerror:
        if error.errno == errno.ENOTDIR:
            return f"{error.strerror} (a part of the path is a file)"
        if error.errno in (errno.EACCES, errno.EPERM):
            try:
                user = pwd.getpwuid(os.geteuid()).pw_name
            except KeyError:
                user = str(os.geteuid())
            return f"{error.strerror} (squidpy runs as {user})"
        return error.strerror
    return str(error)


def _clean_incoming(incoming: str) -> None:
    """Remove the temp files of processes that died while storing (one folder per pid)."""
    for name in os.listdir(incoming):
        folder = os.path.join(incoming, name)
        if not name.isdigit():
            continue
        try:
            os.kill(int(name), 0)
            continue                      # still alive: another worker's
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Store:
    """Both tiers behind one interface."""

    def __init__(self, cache_mem: int, max_in_memory: int, disk: DiskTier | None, memory_policy: str = "lru"):
        self.memory = memory_tier(cache_mem, memory_policy)
        self.max_in_memory = max_in_memory
        self.disk = disk

    def set_memory_policy(self, policy: str) -> None:
        """memory_replacement_policy changed (reconfigure): the objects move to a tier
        of the new policy, least recently used first."""
        if memory_tier(0, policy).policy == self.memory.policy:
            return
        old = self.memory
        self.memory = memory_tier(old.limit, policy)
        self.memory.index = old.index
        for key, (reply, body) in old.items.items():
            self.memory.put(key, reply, body)

    def vary_names(self, url: str) -> tuple[bytes, ...] | None:
        names = self.memory.index.get(url)
        if names is None and self.disk is not None:
            names = self.disk.index(url)
        return names

    def find_in_memory(self, url: str, request_headers: Fields) \
            -> tuple[CachedReply | None, bytes | None, tuple[bytes, ...]] | None:
        """The stored reply for a request if memory answers: (reply, body, Vary names),
        (None, None, names) when nothing is stored at all (the disk's index in memory
        says it holds neither the URL's Vary index nor its entry); None when the disk
        must be asked."""
        names = self.memory.index.get(url, ())
        key = entry_key(url, policy.vary_key(names, request_headers) if names else ())
        item = self.memory.get(key)
        if item is not None:
            return item[0], item[1], names
        disk = self.disk
        if disk is None:
            return None, None, names
        if names or disk.may_hold(index_key(url)) or disk.may_hold(disk_key(key)):
            return None
        return None, None, names

    def find_on_disk(self, url: str, request_headers: Fields) \
            -> tuple[CachedReply | None, bytes | None, tuple[bytes, ...]]:
        """The same, asking the disk (run it in a reader thread).  A body small enough for
        the memory tier is read whole, for :meth:`keep_in_memory`: Squid keeps a disk hit
        in memory, so the next hit on it costs no disk read."""
        names = self.vary_names(url) or ()
        key = entry_key(url, policy.vary_key(names, request_headers) if names else ())
        disk = self.disk
        reply = disk.lookup(key) if disk is not None else None
        body = None
        if disk is not None and reply is not None and self.memory.limit and reply.body_size <= self.max_in_memory:
            f = disk.open_body(reply)
            if f is not None:
                with f:
                    data = f.read(reply.body_size + 1)
                if len(data) == reply.body_size:
                    body = data
        return reply, body, names

    def keep_in_memory(self, url: str, request_headers: Fields, reply: CachedReply, body: bytes,
                       names: tuple[bytes, ...]) -> None:
        """(reactor) A disk hit read whole goes into the memory tier, as Squid's does."""
        key = entry_key(url, policy.vary_key(names, request_headers) if names else ())
        reply.serialise_head()
        self.memory.put(key, reply, body)

    def put(self, key: str, reply: CachedReply, body: bytes | None, body_path: str | None) -> None:
        reply.serialise_head()
        if reply.vary_names:
            self.memory.index[reply.url] = reply.vary_names
        else:
            self.memory.index.pop(reply.url, None)
        if body is not None and len(body) <= self.max_in_memory:
            self.memory.put(key, reply, body)
        if self.disk is not None:
            if not self.disk.store(key, reply, body_path, None if body_path is not None else body) \
                    and body_path is not None:
                _unlink(body_path)          # the writer's queue is full: not stored, not left behind
        elif body_path is not None:
            _unlink(body_path)

    def refresh(self, key: str, reply: CachedReply, body: bytes | None) -> None:
        """A stored entry revalidated (its fields changed, its body did not)."""
        if body is not None and len(body) <= self.max_in_memory:
            self.memory.put(key, reply, body)
        if self.disk is not None:
            self.disk.refresh(key, reply)

    def remove_url(self, url: str, done: Callable[[int], object] | None = None) -> int:
        """Every stored variant of ``url`` (for PURGE and invalidation), from memory at
        once and from disk by the writer thread.  Returns how many were in memory;
        ``done(count)``, when given, is called (in the writer thread, or at once without a
        disk) with how many there were in memory or on disk."""
        in_memory = self.memory.remove_url(url)
        if self.disk is None:
            if done is not None:
                done(in_memory)
            return in_memory
        self.disk.remove_url(url, None if done is None else (lambda on_disk: done(max(in_memory, on_disk))))
        return in_memory

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()
