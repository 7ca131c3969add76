"""CARP, sourcehash and userhash rankings pinned: the expected tables were written by the
pure-Python implementation before the cold path was rewritten for speed (issue 15),
whose picks tests/test_peer_select_squid.py checks against Squid 5.7.  The ranking is
now made in C (squidpy/peers/_carp.c) where squidpy was built with a C compiler, else by
hashing.ranking_in_python: the pinned tables hold for both, and the C is compared with the
Python one, its specification, on thousands of random cases.
Pure: no sockets."""

from __future__ import annotations

import math
import random

import pytest

from squidpy.config import loader
from squidpy.http.url import parse_target
from squidpy.peers import _carp, hashing
from squidpy.peers.hashing import HashArray

ARRAYS = {
    "five_equal": "".join(f"cache_peer 10.0.0.{i} parent 3128 0 carp\n" for i in range(1, 6)),
    "bench32": "".join(f"cache_peer 10.0.{i // 200}.{i % 200 + 1} parent 3128 0 carp weight={1 + i % 3} "
                       f"name=parent{i:02d}.fleet.example.net\n" for i in range(32)),
    "weights_unsorted": "".join(f"cache_peer p{i}.test parent 3128 0 carp weight={w}\n"
                                for i, w in enumerate([5, 1, 3, 1, 9, 2, 3])),
    "tiny_factor_nan": "cache_peer a.test parent 3128 0 carp weight=1\ncache_peer b.test parent 3128 0 carp weight=5000\n"
                       "cache_peer c.test parent 3128 0 carp weight=200\n",
    "latin1_names": "cache_peer 10.1.0.1 parent 3128 0 carp name=p\xe4rent-\xfc\ncache_peer 10.1.0.2 parent 3128 0 carp name=\xdfecond\n"
                    "cache_peer 10.1.0.3 parent 3128 0 carp name=THIRD\n",
    "carp_keys": "cache_peer k1.test parent 3128 0 carp carp-key=host,path\n"
                 "cache_peer k2.test parent 3128 0 carp\n"
                 "cache_peer k3.test parent 3128 0 carp carp-key=host,path\n"
                 "cache_peer k4.test parent 3128 0 carp carp-key=scheme,port,params weight=2\n"
                 "cache_peer k5.test parent 3128 0 carp carp-key=path weight=2\n",
    "single": "cache_peer only.test parent 3128 0 carp\n",
}
URLS = [
    ("GET", "http://www.example.com/"),
    ("GET", "http://img7.shop.example.com/catalog/cold3/item-12345.jpg?v=3"),
    ("GET", "http://a.test:8080/x?"),
    ("GET", "http://cdn.example.net/static/js/app.0123456789abcdef.bundle.min.js?build=2026-11-30&locale=en-GB&x=" + "y" * 40),
    ("GET", "http://h.test/" + "p" * 180),
    ("GET", "http://latin.test/caf\xe9/\xff\x80"),
    ("GET", "http://euro.test/\u20ac/x"),
    ("GET", "http://[2001:db8::1]:3129/v6?q=1"),
    ("CONNECT", "secure.example.org:443"),
    ("GET", "ftp://files.test/pub/file.tar.gz"),
]
KEYS = ["10.0.0.7", "192.168.200.254", "alice", "b\xf6b", "x" * 70, "\u20acuro"]


def target(method: str, raw: str) -> tuple:
    """The parts CARP hashes; a target the parser refuses still exercises the bytes."""
    try:
        t = parse_target(method, raw)
        return t.url, t.scheme, t.host, t.port, t.path
    except Exception:
        return raw, "http", "raw.test", 80, "/" + raw.split("/", 3)[-1]


def many_urls() -> list[str]:
    """240 URLs of 40 to 120 characters."""
    out = []
    for i in range(240):
        n = 40 + (i * 37) % 81
        base = f"http://host{i % 13}.example{i % 3}.com/p/{i}/"
        out.append(base + ("abcdefghij" * 13)[: max(0, n - len(base))])
    return out


def array_of(name: str) -> tuple[HashArray, dict[int, int]]:
    peers = loader.load("/golden.conf", text=ARRAYS[name]).cache_peer
    return HashArray(peers), {id(p): i for i, p in enumerate(peers)}


RANKINGS = {
    'five_equal': [[0, 3, 2, 1, 4], [4, 1, 2, 0, 3], [0, 1, 3, 4, 2], [2, 0, 3, 4, 1], [3, 2, 1, 0, 4], [3, 1, 0, 4, 2], [1, 2, 4, 0, 3], [1, 3, 4, 0, 2], [0, 3, 2, 4, 1], [1, 3, 2, 4, 0]],
    'bench32': [[25, 24, 4, 11, 19, 27, 22, 3, 18, 16, 0, 23, 28, 9, 31, 29, 12, 14, 26, 17, 7, 15, 5, 2, 1, 30, 21, 13, 8, 20, 6, 10], [5, 28, 29, 27, 17, 3, 11, 8, 25, 21, 4, 13, 6, 0, 10, 24, 9, 22, 12, 31, 7, 1, 14, 16, 15, 20, 30, 2, 18, 19, 23, 26], [5, 19, 24, 7, 10, 20, 2, 3, 30, 9, 17, 6, 25, 4, 26, 15, 28, 21, 27, 31, 23, 22, 18, 1, 12, 29, 16, 8, 14, 11, 0, 13], [26, 16, 19, 30, 13, 5, 22, 10, 23, 7, 12, 24, 21, 8, 27, 14, 18, 4, 15, 20, 11, 9, 2, 6, 25, 17, 29, 28, 0, 1, 3, 31], [23, 19, 0, 13, 30, 3, 31, 25, 28, 8, 10, 4, 18, 5, 12, 16, 27, 1, 9, 2, 15, 11, 20, 24, 22, 26, 17, 29, 6, 7, 14, 21], [2, 14, 24, 1, 31, 30, 0, 18, 17, 28, 29, 20, 16, 12, 6, 25, 22, 8, 11, 9, 7, 15, 27, 13, 3, 21, 26, 23, 10, 19, 5, 4], [20, 21, 28, 26, 29, 2, 8, 18, 25, 0, 30, 19, 12, 17, 14, 4, 24, 5, 3, 10, 16, 1, 27, 13, 9, 11, 22, 6, 31, 7, 15, 23], [7, 23, 8, 25, 31, 27, 4, 16, 10, 28, 22, 26, 20, 1, 13, 11, 21, 24, 17, 12, 3, 19, 18, 14, 9, 6, 5, 29, 30, 0, 15, 2], [4, 0, 18, 8, 29, 7, 15, 5, 14, 27, 28, 10, 20, 9, 19, 30, 21, 12, 13, 26, 24, 31, 22, 2, 17, 11, 23, 1, 3, 16, 6, 25], [4, 1, 19, 16, 26, 29, 9, 5, 21, 13, 30, 3, 7, 0, 27, 8, 24, 12, 2, 15, 31, 18, 23, 22, 10, 28, 6, 25, 20, 17, 11, 14]],
    'weights_unsorted': [[4, 5, 1, 2, 6, 0, 3], [4, 0, 6, 2, 5, 1, 3], [2, 4, 5, 3, 1, 6, 0], [0, 3, 1, 5, 4, 6, 2], [4, 2, 6, 1, 3, 5, 0], [4, 5, 1, 0, 3, 6, 2], [0, 6, 1, 3, 2, 5, 4], [4, 0, 2, 1, 6, 5, 3], [2, 5, 1, 4, 0, 3, 6], [1, 4, 2, 3, 0, 5, 6]],
    'tiny_factor_nan': [[2], [2], [2], [2], [2], [2], [2], [2], [2], [2]],
    'latin1_names': [[1, 0, 2], [0, 1, 2], [1, 0, 2], [0, 1, 2], [1, 0, 2], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0], [1, 2, 0]],
    'carp_keys': [[3, 1, 2, 4, 0], [3, 1, 2, 4, 0], [1, 0, 4, 3, 2], [4, 1, 2, 3, 0], [3, 1, 4, 0, 2], [4, 0, 2, 1, 3], [0, 1, 2, 4, 3], [1, 3, 0, 4, 2], [4, 3, 1, 0, 2], [4, 2, 1, 3, 0]],
    'single': [[0], [0], [0], [0], [0], [0], [0], [0], [0], [0]],
}
PICKS_32 = [2, 12, 29, 17, 8, 2, 20, 25, 5, 7, 6, 16, 7, 31, 22, 26, 26, 23, 8, 10, 19, 29, 31, 17, 8, 5, 20, 7, 14, 26, 7, 28, 11, 1, 6, 28, 8, 7, 23, 28, 4, 11, 2, 9, 23, 23, 19, 29, 21, 23, 7, 23, 25, 29, 16, 25, 10, 15, 11, 7, 2, 8, 11, 1, 11, 29, 7, 29, 20, 5, 8, 11, 12, 31, 9, 11, 23, 10, 31, 19, 21, 13, 4, 2, 15, 22, 31, 28, 14, 15, 26, 21, 25, 2, 2, 3, 0, 2, 14, 12, 4, 13, 17, 22, 13, 4, 5, 5, 31, 13, 20, 8, 16, 8, 7, 13, 12, 5, 22, 25, 4, 28, 17, 1, 28, 20, 23, 23, 27, 20, 5, 17, 11, 10, 2, 0, 7, 18, 14, 29, 22, 24, 28, 23, 12, 2, 2, 28, 29, 0, 2, 30, 19, 13, 27, 12, 11, 11, 5, 16, 17, 28, 7, 30, 17, 2, 7, 20, 31, 19, 23, 26, 20, 25, 22, 28, 11, 4, 7, 2, 26, 19, 15, 31, 17, 13, 27, 2, 0, 26, 22, 5, 31, 9, 7, 22, 27, 28, 7, 22, 23, 7, 17, 23, 0, 16, 29, 12, 9, 3, 7, 12, 0, 22, 5, 11, 15, 26, 11, 22, 10, 26, 21, 31, 19, 19, 2, 2, 29, 14, 29, 10, 8, 5, 8, 20, 17, 19, 24, 15]
KEY_RANKINGS = {
    'five_equal': [[1, 2, 3, 0, 4], [1, 4, 0, 3, 2], [0, 2, 4, 3, 1], [2, 0, 1, 3, 4], [2, 3, 0, 4, 1], [1, 4, 0, 2, 3]],
    'weights_unsorted': [[3, 2, 6, 5, 1, 4, 0], [4, 6, 2, 3, 1, 5, 0], [0, 5, 2, 3, 1, 6, 4], [0, 1, 3, 4, 5, 6, 2], [3, 4, 2, 6, 0, 5, 1], [0, 4, 6, 2, 5, 3, 1]],
    'latin1_names': [[0, 2, 1], [2, 0, 1], [1, 2, 0], [1, 2, 0], [1, 0, 2], [0, 1, 2]],
}


@pytest.fixture(params=["c", "python"])
def ranked_in(request, monkeypatch):
    """The pinned tables hold for the C ranking and for the Python one (a squidpy
    installed without a C compiler)."""
    if request.param == "python":
        monkeypatch.setattr(hashing, "ranking", hashing.ranking_in_python)
    return request.param


@pytest.mark.parametrize("name", sorted(RANKINGS))
def test_carp_rankings_are_the_pinned_ones(name, ranked_in):
    array, index = array_of(name)
    for (method, raw), expected in zip(URLS, RANKINGS[name]):
        args = target(method, raw)
        assert [index[id(p)] for p in array.carp_ranking(*args)] == expected, raw
        assert [index[id(p)] for p in array.carp_ranking(*args)] == expected, "remembered: " + raw


def test_carp_picks_of_240_urls_among_32_parents_are_the_pinned_ones(ranked_in):
    array, index = array_of("bench32")
    assert [index[id(array.carp_ranking(*target("GET", u))[0])] for u in many_urls()] == PICKS_32


@pytest.mark.parametrize("name", sorted(KEY_RANKINGS))
def test_sourcehash_and_userhash_rankings_are_the_pinned_ones(name, ranked_in):
    array, index = array_of(name)
    assert [[index[id(p)] for p in array.ranking_for_key(k)] for k in KEYS] == KEY_RANKINGS[name]


def test_a_peer_hash_is_squids():
    """Pinned with the rankings above (a name with bytes from 0x80 counts them as negative)."""
    assert hashing.peer_hash("10.0.0.1") == 3466492874
    assert hashing.peer_hash("p\xe4rent-\xfc") == 1162369893


def test_remembered_rankings_are_bounded_and_the_oldest_go_first():
    array, _ = array_of("five_equal")
    array.kept = 3
    urls = [f"http://bound.test/{i}" for i in range(5)]
    first = [array.carp_ranking(*target("GET", u)) for u in urls]
    assert list(array._rankings) == [target("GET", u)[0] for u in urls[2:]]
    assert [array.carp_ranking(*target("GET", u)) for u in urls] == first


def test_a_pick_is_the_first_usable_peer_of_the_ranking():
    array, _ = array_of("bench32")
    args = target("GET", URLS[1][1])
    ranking = array.carp_ranking(*args)
    assert array.carp_pick(*args, lambda p: True) is ranking[0]
    assert array.carp_pick(*args, lambda p: p is not ranking[0]) is ranking[1]
    assert array.carp_pick(*args, lambda p: p is ranking[-1]) is ranking[-1]
    assert array.carp_pick(*args, lambda p: False) is None
    cold, _ = array_of("bench32")           # nothing remembered: the pick hashes
    assert cold.carp_pick(*args, lambda p: p.name != ranking[0].name).name == ranking[1].name
    keys, _ = array_of("five_equal")
    assert keys.key_pick("10.0.0.7", lambda p: p is not keys.ranking_for_key("10.0.0.7")[0]) is \
        keys.ranking_for_key("10.0.0.7")[1]


# ---------------------------------------------------------------- the C ranking against its specification
def reference_order(keys: list[bytes], scoring: list[tuple[int, int, float]]) -> list[int]:
    """The specification of ``_carp.order``: hashing.ranking_in_python (which a squidpy
    installed without a C compiler ranks with)."""
    return list(hashing.ranking_in_python(tuple(keys), hashing.pack_scoring(scoring)))


def test_the_ranking_is_made_in_c():
    """Where squidpy is installed with a C compiler (CI is), arrays rank in C."""
    assert hashing.RANKING_IN_C and hashing.ranking is _carp.order


MULTIPLIERS = [0.0, -0.0, math.nan, math.inf, -math.inf, -1.5, 5e-324, 1e-300, 1e300, 1.0, 0.25, 0.9999999]


def random_key(rnd: random.Random) -> bytes:
    size = rnd.choice([0, 1, 2, rnd.randrange(3, 40), rnd.randrange(40, 121), rnd.randrange(121, 400)])
    if rnd.random() < 0.5:
        return bytes(rnd.randrange(0x20, 0x7F) for _ in range(size))        # ASCII
    return bytes(rnd.randrange(256) for _ in range(size))                    # any byte, 0x80-0xFF included


def random_scoring(rnd: random.Random, peers: int, keys: int) -> list[tuple[int, int, float]]:
    scoring = []
    for _ in range(peers):
        if scoring and rnd.random() < 0.1:              # a twin: ties when the key adds nothing
            scoring.append((rnd.randrange(keys),) + scoring[-1][1:])
            continue
        multiplier = rnd.choice(MULTIPLIERS) if rnd.random() < 0.3 else rnd.uniform(0.0, 3.0)
        peer_hash_value = rnd.choice([0, 0xFFFFFFFF, rnd.randrange(1 << 32)])
        scoring.append((rnd.randrange(keys), peer_hash_value, multiplier))
    return scoring


def test_the_c_ranking_is_the_specifications_on_random_keys_and_arrays():
    """4,000 cases: 1 to 64 peers, one to four keys (carp-key= parts) of 0 to 400 bytes,
    ASCII or any byte, multipliers zero, negative, NaN, infinite or tiny, twins."""
    rnd = random.Random(15)
    for case in range(4000):
        keys = [random_key(rnd) for _ in range(rnd.randrange(1, 5))]
        scoring = random_scoring(rnd, rnd.randrange(1, 65), len(keys))
        got = _carp.order(tuple(keys), hashing.pack_scoring(scoring))
        assert isinstance(got, bytes)
        assert list(got) == reference_order(keys, scoring), (case, keys, scoring)


def test_ties_go_to_the_earlier_peer_and_nothing_not_above_zero_is_ranked():
    scoring = [(0, 7, 1.0), (0, 9, 2.0), (0, 7, 1.0), (0, 5, math.nan), (0, 9, 2.0), (0, 3, 0.0), (0, 1, -1.0)]
    expected = reference_order([b""], scoring)
    assert expected[:4] in ([1, 4, 0, 2], [0, 2, 1, 4])
    assert sorted(expected) == [0, 1, 2, 4]
    assert list(_carp.order((b"",), hashing.pack_scoring(scoring))) == expected


def test_more_than_256_peers_are_ranked_as_a_tuple():
    rnd = random.Random(256)
    keys = [random_key(rnd), b"\xff\x80 key"]
    scoring = random_scoring(rnd, 300, 2)
    got = _carp.order(tuple(keys), hashing.pack_scoring(scoring))
    assert isinstance(got, tuple) and list(got) == reference_order(keys, scoring)
    assert _carp.order((b"",), b"") == b""


def test_the_c_ranking_refuses_what_it_cannot_read():
    packed = hashing.pack_scoring([(1, 5, 1.0)])
    with pytest.raises(IndexError):
        _carp.order((b"only one key",), packed)
    with pytest.raises(TypeError):
        _carp.order(("text",), hashing.pack_scoring([(0, 5, 1.0)]))
    with pytest.raises(TypeError):
        _carp.order([b"a list"], packed)
    with pytest.raises(TypeError):
        _carp.order((b"k",), packed[:-1])
    with pytest.raises(TypeError):
        _carp.order((b"k",))


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_an_arrays_rankings_are_the_specifications(name):
    """HashArray's part: the keys of its carp-key= specifications, the names' hashes and
    the multipliers, on URLs with and without bytes from 0x80; sourcehash and userhash
    hash their key once for all peers."""
    array, index = array_of(name)
    rnd = random.Random(name)
    scoring = [(array._specs.index(m.peer.carp_key), m.hash, m.load_multiplier) for m in array.members]
    once = [(0 if n == 0 else 1, h, x) for n, (_, h, x) in enumerate(scoring)]
    for n in range(300):
        path = "".join(rnd.choice("abc/%?=&\xe9\xff\u20ac") for _ in range(rnd.randrange(0, 90)))
        args = target("GET", f"http://h{n % 7}.test:{rnd.choice([80, 8080])}/{path}")
        keys = [hashing.text_bytes(hashing.carp_key(spec, *args)) for spec in array._specs]
        ranked = [array.members[i].peer for i in reference_order(keys, scoring)]
        assert list(array.carp_ranking(*args)) == ranked, args
        key = path or "10.0.0.1"
        by_key = [array.members[i].peer for i in reference_order([hashing.text_bytes(key), b""], once)]
        assert list(array.ranking_for_key(key)) == by_key, key
