"""The store's invalidation finds a URL's variants without walking the cache, and
disk entries being removed are never served meanwhile."""

from __future__ import annotations

import threading
from collections import OrderedDict

import pytest

from squidpy.cache.store import CachedReply, DiskTier, MemoryTier, Store, entry_key, memory_tier


class NoWalk(OrderedDict):
    """A memory tier's items that refuse to be walked."""

    def __iter__(self):
        raise AssertionError("invalidation walked every cached object")

    def items(self):
        raise AssertionError("invalidation walked every cached object")

    def values(self):
        raise AssertionError("invalidation walked every cached object")


def reply(url: str, vary_key=(), names=(), stored_at=1.0) -> CachedReply:
    r = CachedReply(url=url, status=200, reason=b"OK", headers=[(b"Content-Length", b"2")], request_time=1.0,
                    response_time=1.0, body_size=2, vary_names=names, vary_key=vary_key, stored_at=stored_at)
    r.serialise_head()
    return r


def test_memory_invalidation_touches_only_the_url_s_variants():
    memory = MemoryTier(1 << 30)
    for n in range(20000):
        memory.put(f"http://o/{n}", reply(f"http://o/{n}"), b"xx")
    names = (b"accept-encoding",)
    for value in (b"gzip", b"br", b"identity"):
        memory.put(entry_key("http://o/v", (value,)), reply("http://o/v", (value,), names), b"xx")
    memory.index["http://o/v"] = names
    memory.items = NoWalk(memory.items)
    assert memory.remove_url("http://o/v") == 3
    assert memory.remove_url("http://o/5") == 1
    assert memory.remove_url("http://o/absent") == 0
    assert "http://o/v" not in memory.index and "http://o/v" not in memory.by_url
    assert dict.__len__(memory.items) == 19999


def test_eviction_keeps_the_url_index_true():
    memory = MemoryTier(3 * (2 + 300))
    for n in range(10):
        memory.put(f"http://o/{n}", reply(f"http://o/{n}"), b"xx")
    assert set(memory.by_url) == {r.url for r, _ in memory.items.values()}
    assert len(memory.by_url) == len(memory.items) < 10


@pytest.fixture
def disk(tmp_path):
    d = DiskTier(str(tmp_path / "cache"), 10)
    yield d
    d.close()


def stored(disk: DiskTier, key: str, r: CachedReply) -> None:
    done = threading.Event()
    assert disk.store(key, r, None, b"xx")
    assert disk.writer.submit(done.set)
    assert done.wait(10)


def test_disk_invalidation_removes_every_variant_without_listing_the_cache(disk):
    names = (b"accept-encoding",)
    for value in (b"gzip", b"br"):
        stored(disk, entry_key("http://o/v", (value,)), reply("http://o/v", (value,), names))
    stored(disk, "http://o/other", reply("http://o/other"))

    def no_listing():
        raise AssertionError("invalidation listed the whole cache")
    disk.entries = no_listing
    counts: list[int] = []
    done = threading.Event()
    disk.remove_url("http://o/v", lambda n: (counts.append(n), done.set()))
    assert done.wait(10)
    assert counts == [2]
    assert disk.lookup(entry_key("http://o/v", (b"gzip",))) is None
    assert disk.index("http://o/v") is None
    assert disk.lookup("http://o/other") is not None


def test_entries_being_removed_are_not_served_meanwhile(disk):
    stored(disk, "http://o/a", reply("http://o/a", stored_at=100.0))
    hold = threading.Event()
    disk.writer.submit(hold.wait)          # the writer is busy: the removal waits behind it
    disk.remove_url("http://o/a")
    try:
        assert disk.lookup("http://o/a") is None        # still on disk, but no longer served
    finally:
        hold.set()


def test_store_remove_url_counts_memory_and_disk(tmp_path):
    store = Store(1 << 20, 1 << 20, DiskTier(str(tmp_path / "c"), 10))
    try:
        store.put("http://o/a", reply("http://o/a"), b"xx", None)
        counts: list[int] = []
        done = threading.Event()
        assert store.remove_url("http://o/a", lambda n: (counts.append(n), done.set())) == 1
        assert done.wait(10) and counts == [1]
        assert store.find_in_memory("http://o/a", []) == (None, None, ())     # gone from both
        assert store.find_on_disk("http://o/a", []) == (None, None, ())
    finally:
        store.close()


def test_a_small_disk_entry_is_read_whole_and_kept_in_memory(tmp_path):
    """A disk hit that fits the memory tier comes with its body and goes into memory (Squid
    keeps disk hits in memory); one larger than maximum_object_size_in_memory does not."""
    store = Store(1 << 20, 4, DiskTier(str(tmp_path / "c"), 10))
    try:
        small, big = reply("http://o/s"), reply("http://o/b")
        small.body_size, big.body_size = 2, 6
        store.disk.store("http://o/s", small, None, b"xx")
        store.disk.store("http://o/b", big, None, b"yyyyyy")
        _writer_idle(store.disk)
        found = store.find_on_disk("http://o/s", [])
        assert found[1] == b"xx" and store.find_on_disk("http://o/b", [])[1] is None
        assert store.find_in_memory("http://o/s", []) is None            # the disk must be asked ...
        store.keep_in_memory("http://o/s", [], *found)
        assert store.find_in_memory("http://o/s", [])[1] == b"xx"        # ... until it is kept
    finally:
        store.close()


# ---------------------------------------------------------------- memory_replacement_policy
def costed(url: str, body: bytes):
    r = reply(url)
    return r, body, len(body) + len(r.head) + 256


def test_lru_evicts_the_least_recently_used():
    memory = memory_tier(3 * costed("http://o/0", b"xx")[2], "lru")
    for n in range(3):
        memory.put(f"http://o/{n}", reply(f"http://o/{n}"), b"xx")
    memory.get("http://o/0")
    memory.put("http://o/3", reply("http://o/3"), b"xx")
    assert set(memory.items) == {"http://o/0", "http://o/2", "http://o/3"}


def test_lfuda_keeps_the_popular_and_ages_out_the_once_popular():
    cost = costed("http://o/0", b"xx")[2]
    memory = memory_tier(3 * cost, "heap LFUDA")
    for n in range(3):
        memory.put(f"http://o/{n}", reply(f"http://o/{n}"), b"xx")
    for _ in range(5):
        memory.get("http://o/0")                 # popular
    memory.get("http://o/1")
    memory.put("http://o/3", reply("http://o/3"), b"xx")
    assert "http://o/2" not in memory.items and "http://o/0" in memory.items
    assert memory.age == 1.0                     # the evicted object's key
    # new objects start at the heap's age: after enough evictions the old favourite goes too
    for n in range(4, 14):
        memory.put(f"http://o/{n}", reply(f"http://o/{n}"), b"xx")
        memory.get(f"http://o/{n}")
    assert "http://o/0" not in memory.items


def test_gdsf_prefers_small_objects():
    small, big = b"x", b"y" * 4000
    memory = memory_tier(costed("a", big)[2] + 2 * costed("a", small)[2], "heap GDSF")
    memory.put("http://o/big", reply("http://o/big"), big)
    memory.put("http://o/s1", reply("http://o/s1"), small)
    memory.put("http://o/s2", reply("http://o/s2"), small)
    memory.put("http://o/s3", reply("http://o/s3"), small)     # over the limit: the big one goes
    assert set(memory.items) == {"http://o/s1", "http://o/s2", "http://o/s3"}
    assert sum(costed(k, b)[2] for k, (_r, b) in memory.items.items()) == memory.size


def test_policy_change_keeps_the_objects_and_removal_works_in_heaps():
    store = Store(1 << 20, 1 << 20, None)
    store.put("http://o/a", reply("http://o/a"), b"xx", None)
    store.set_memory_policy("heap GDSF")
    assert store.memory.policy == "heap GDSF" and "http://o/a" in store.memory.items
    assert store.memory.remove_url("http://o/a") == 1 and not store.memory.keys


def test_disk_policy_is_diskcache_s(tmp_path):
    for policy, eviction in [("lru", "least-recently-used"), ("heap LFUDA", "least-frequently-used")]:
        d = DiskTier(str(tmp_path / policy.replace(" ", "")), 10, policy)
        try:
            assert d.cache.eviction_policy == eviction
        finally:
            d.close()


def test_a_miss_never_asks_the_disk_once_its_keys_are_known(disk):
    store = Store(1 << 20, 1 << 20, disk)
    done = threading.Event()
    disk.writer.submit(done.set)            # the startup scan runs first on the writer thread
    assert done.wait(10) and disk.known.complete
    assert store.find_in_memory("http://o/nothing", []) == (None, None, ())     # no disk lookup needed
    stored(disk, "http://o/a", reply("http://o/a"))
    assert store.find_in_memory("http://o/a", []) is None      # on disk only: ask it
    assert store.find_on_disk("http://o/a", [])[0] is not None
    done = threading.Event()
    disk.remove_url("http://o/a", lambda n: done.set())
    assert done.wait(10)
    assert store.find_in_memory("http://o/a", []) == (None, None, ())


def test_keys_on_disk_at_start_are_known_after_the_scan(tmp_path):
    path = str(tmp_path / "c")
    first = DiskTier(path, 10)
    stored(first, "http://o/kept", reply("http://o/kept"))
    first.close()
    again = DiskTier(path, 10)
    try:
        assert again.may_hold("e:" + "0" * 64) is True or not again.known.complete   # before the scan: maybe
        done = threading.Event()
        again.writer.submit(done.set)
        assert done.wait(10)
        from squidpy.cache.store import disk_key
        assert again.may_hold(disk_key("http://o/kept")) and not again.may_hold(disk_key("http://o/other"))
    finally:
        again.close()


def _tee_cache(tmp_path):
    from squidpy.config.loader import load
    from squidpy.proxy.cache_side import Cache
    from types import SimpleNamespace

    from squidpy.mgr.stats import Stats
    config = load(text="maximum_object_size_in_memory 1 KB\nmaximum_object_size 64 MB\n")
    service = SimpleNamespace(stats=Stats(0.0))        # what a stored reply is counted in (swap_outs)
    return Cache(service, config, Store(1 << 20, config.maximum_object_size_in_memory,
                                        DiskTier(str(tmp_path / "c"), 100)))


def _stored_body(cache, url: str) -> bytes | None:
    reply = cache.store.disk.lookup(url)
    if reply is None:
        return None
    with cache.store.disk.open_body(reply) as f:
        return f.read()


def _writer_idle(disk) -> None:
    done = threading.Event()
    assert disk.writer.submit(done.set) and done.wait(30)


def test_a_large_reply_in_many_small_reads_is_stored_while_the_disk_lags(tmp_path):
    """The copy of a reply waits for the writer thread in bytes, not in chunks: a reply
    read in more pieces than the writer's queue holds, while the writer is busy, is still
    stored whole (it used to be dropped, silently, once the queue filled)."""
    from squidpy.cache.store import WRITE_QUEUE
    from squidpy.http.message import ResponseHead
    from squidpy.proxy.cache_side import Tee

    cache = _tee_cache(tmp_path)
    disk = cache.store.disk
    try:
        busy = threading.Event()
        assert disk.writer.submit(lambda: busy.wait(30))         # the disk lags behind
        tee = Tee(cache, ResponseHead(200, b"OK", "HTTP/1.1", [(b"Cache-Control", b"max-age=60")]), 1.0)
        pieces = [bytes([i % 251]) * 1000 for i in range(4 * WRITE_QUEUE)]
        assert all(tee.add(piece) for piece in pieces)
        busy.set()
        tee.commit("http://o/big", "http://o/big", (), (), 2.0)
        _writer_idle(disk)
        assert _stored_body(cache, "http://o/big") == b"".join(pieces)
    finally:
        cache.close()


def test_a_reply_the_disk_cannot_keep_up_with_is_dropped_and_leaves_nothing(tmp_path, monkeypatch):
    """Past WRITE_BACKLOG bytes waiting for the writer, the copy is given up: the client's
    transfer is not affected (add() says no more), and no temp file stays behind."""
    import os

    from squidpy.http.message import ResponseHead
    from squidpy.proxy import cache_side

    monkeypatch.setattr(cache_side, "WRITE_BACKLOG", 100_000)
    cache = _tee_cache(tmp_path)
    disk = cache.store.disk
    try:
        busy = threading.Event()
        assert disk.writer.submit(lambda: busy.wait(30))
        tee = cache_side.Tee(cache, ResponseHead(200, b"OK", "HTTP/1.1", []), 1.0)
        results = [tee.add(b"x" * 10_000) for _ in range(20)]
        assert results[:10] == [True] * 10 and results[-1] is False
        busy.set()
        _writer_idle(disk)
        assert os.listdir(disk.tmp) == []
    finally:
        cache.close()


def test_the_origin_is_held_while_the_disk_catches_up(tmp_path):
    """Past HOLD_AT bytes waiting for the writer, the origin connection is paused
    ("store"), and read again once the writer is down to RESUME_AT: the disk sets the pace
    and the reply is stored whole, in bounded memory."""
    from types import SimpleNamespace

    from squidpy.http.message import ResponseHead
    from squidpy.proxy import cache_side

    class OriginConnection:
        def __init__(self):
            self.paused: set[str] = set()
            self.driver = None

        def pause_reading(self, reason):
            self.paused.add(reason)

        def resume_reading(self, reason):
            self.paused.discard(reason)

    class Reactor:
        def __init__(self):
            self.calls = []

        def callFromThread(self, f, *args):
            self.calls.append((f, args))

    server, reactor = OriginConnection(), Reactor()
    driver = SimpleNamespace(server=server, service=SimpleNamespace(reactor=reactor))
    server.driver = driver
    cache = _tee_cache(tmp_path)
    disk = cache.store.disk
    try:
        busy = threading.Event()
        assert disk.writer.submit(lambda: busy.wait(30))
        tee = cache_side.Tee(cache, ResponseHead(200, b"OK", "HTTP/1.1", [(b"Cache-Control", b"max-age=60")]), 1.0,
                             driver)
        piece = b"y" * 65536
        count = cache_side.HOLD_AT // len(piece) + 2
        assert all(tee.add(piece) for _ in range(count))
        assert server.paused == {"store"}                      # the writer lags: the origin waits
        busy.set()
        _writer_idle(disk)
        for f, args in reactor.calls:                          # what the writer asked of the reactor
            f(*args)
        assert server.paused == set()                          # caught up: read on
        tee.commit("http://o/held", "http://o/held", (), (), 2.0)
        _writer_idle(disk)
        assert _stored_body(cache, "http://o/held") == piece * count
    finally:
        cache.close()


# ---------------------------------------------------------------- a stored body read back
def test_a_body_read_back_is_checked_by_its_crc32():
    import zlib
    body = bytes(range(256)) * 40
    reply = CachedReply(url="http://o/x", status=200, reason=b"OK", headers=[], request_time=0, response_time=0,
                        body_size=len(body), crc32=zlib.crc32(body))
    check = reply.body_check()
    for i in range(0, len(body), 1000):        # as the streamer reads it: in chunks
        check.update(body[i:i + 1000])
    assert check.intact()
    damaged = reply.body_check()
    damaged.update(body[:5000] + b"\x00" + body[5001:])     # one byte changed, the same length
    assert not damaged.intact()


def test_an_entry_stored_before_the_crc32_is_checked_by_its_sha256():
    import hashlib
    body = b"stored by an older squidpy" * 100
    meta = {"url": "http://o/old", "status": 200, "reason": b"OK", "headers": [], "request_time": 0,
            "response_time": 0, "body_size": len(body), "vary_names": (), "vary_key": (),
            "sha256": hashlib.sha256(body).hexdigest(), "body_key": "b:1", "stored_at": 0}     # no crc32
    reply = CachedReply.from_meta(meta)
    good, bad = reply.body_check(), reply.body_check()
    good.update(body)
    bad.update(body[:-1] + b"?")
    assert good.intact() and not bad.intact()
    assert CachedReply.from_meta(reply.meta()).meta() == reply.meta()
