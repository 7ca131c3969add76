"""The store's invalidation finds a URL's variants without walking the cache, and
disk entries being removed are never served meanwhile."""

from __future__ import annotations

import threading
from collections import OrderedDict

import pytest

from squidpy.cache.store import CachedReply, DiskTier, MemoryTier, Store, entry_key


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
