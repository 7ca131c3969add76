"""CARP, sourcehash and userhash: which parent a request hashes to, as Squid 5.7 computes it.

The facts, from Squid's src/carp.cc, src/peer_sourcehash.cc and src/peer_userhash.cc:

* A peer's hash is taken over its *name* (``name=`` or the host as written):
  ``h += rotl(h, 19) + c`` for each byte, ``c`` read as a signed ``char``
  (bytes from 0x80 count as negative), then ``h += h * 0x62531965`` and
  ``h = rotl(h, 21)``, all in 32 bits.
* Peers are sorted by weight (a stable sort, as glibc's qsort is for such
  arrays); each has a load factor ``weight / total`` (0 below one thousandth)
  and a load multiplier from Squid's recurrence over the sorted factors, in
  IEEE doubles (a zero factor makes the later multipliers infinite or NaN,
  exactly as C's arithmetic does).
* A request's score on a peer: the key's hash XORed with the peer's hash,
  ``+= * 0x62531965``, ``rotl 21``, times the multiplier.  The highest score
  among usable peers wins; on a tie the earlier peer in the sorted order.
* CARP's key is the request URL (``host:port`` for CONNECT) or the parts
  ``carp-key=`` names.  Squid 5.7 does not reset the key's hash between
  peers: the n-th peer in sorted order is scored on the key hashed n times
  over.  squidpy does the same, or a mixed array would split URLs differently.
* sourcehash hashes the client's address as text, userhash the user name,
  once for all peers.

A cold CARP pick therefore costs one step per key byte per peer (32 peers and an
80-character URL: 2,560 steps, each ``h += rotl(h, 19) + c`` depends on the one before,
so nothing can be shared, vectorised or skipped): about 100 ns a step in Python, some
hundred microseconds a URL.  The ranking is therefore made in C when it can be
(``squidpy/peers/_carp.c``, built when squidpy is installed with a C compiler; a
nanosecond a step); :func:`ranking_in_python` is the same ranking, for a squidpy
installed without one, and the specification tests/test_carp_hash.py holds the C to.
Either way it starts from what this module works out once per configuration.  The
ranking of peers for a key is also remembered (:attr:`HashArray.kept` keys per array,
oldest forgotten first): a key seen before costs a dictionary lookup
(``benchmarks/carp_bench.py``).
"""

from __future__ import annotations

import math
import struct
from typing import Callable, Iterable

from squidpy.peers.peer import CachePeer, CarpKey

Order = bytes | tuple[int, ...]      # members' indices, best first

MASK = 0xFFFFFFFF
MIX = 0x62531965
RANKINGS_KEPT = 65536


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & MASK


def _signed(data: bytes) -> list[int]:
    """Bytes as C's signed ``char`` promoted to ``unsigned int``."""
    return [b if b < 0x80 else b | 0xFFFFFF00 for b in data]


def text_bytes(text: str) -> bytes:
    """The bytes a configuration word was written with: squidpy.config.reader reads
    files as Latin-1, as Squid reads bytes.  tests/test_peer_select_squid.py checks a
    non-ASCII peer name against Squid, which hashes the file's bytes."""
    return text.encode("latin-1", "replace")


def update(h: int, data: Iterable[int]) -> int:
    """``h += rotl(h, 19) + c`` for each (signed) byte ``c``: ``h + rotl(h, 19)`` is
    ``h * (2**19 + 1) + (h >> 13)`` modulo 2**32."""
    for c in data:
        h = (h * 524289 + (h >> 13) + c) & MASK
    return h


def peer_hash(name: str) -> int:
    return combine(update(0, _signed(text_bytes(name))), 0)


def combine(key_hash: int, peer_hash_value: int) -> int:
    """A key's hash on one peer (a peer's own hash is its name's on 0)."""
    h = key_hash ^ peer_hash_value
    h = (h + h * MIX) & MASK
    return _rotl(h, 21)


def _div(a: float, b: float) -> float:
    """IEEE division, as C's: x/0 is +-inf, 0/0 is NaN."""
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


SCORING = struct.Struct("@IId")       # what pack_scoring writes per peer


def pack_scoring(scoring: Iterable[tuple[int, int, float]]) -> bytes:
    """(key index, peer hash, load multiplier) per peer, in Squid's order, as
    :func:`ranking` reads them (its ``struct peer``)."""
    return b"".join([SCORING.pack(*peer) for peer in scoring])


def ranking_in_python(keys: tuple[bytes, ...], scoring: bytes) -> Order:
    """What ``_carp.order`` computes, as Squid 5.7's carp.cc does: one hash runs on over
    each peer's key (``scoring``: key index, peer hash, multiplier per peer, in Squid's
    order; bytes as C's signed char); a peer's score is that hash combined with its own,
    times its multiplier; the highest score first, ties to the earlier peer (a stable
    sort), and a score not above 0 (or NaN) never chosen.  Bytes for up to 256 peers
    (a tuple of peers would take four times the memory per key), else a tuple."""
    h = 0
    scores = []
    for which, peer_hash_value, multiplier in SCORING.iter_unpack(scoring):
        h = update(h, _signed(keys[which]))
        scores.append(combine(h, peer_hash_value) * multiplier)
    order = [i for i, score in enumerate(scores) if score > 0]
    order.sort(key=scores.__getitem__, reverse=True)
    return bytes(order) if len(scores) <= 256 else tuple(order)


try:
    from squidpy.peers._carp import order as ranking
    RANKING_IN_C = True
except ImportError:         # installed without a C compiler: the same ranking, slower
    ranking = ranking_in_python
    RANKING_IN_C = False


class Member:
    """One peer of a hashing array: its hash, load factor and multiplier."""

    __slots__ = ("peer", "hash", "load_factor", "load_multiplier")

    def __init__(self, peer: CachePeer, hash_value: int, load_factor: float):
        self.peer = peer
        self.hash = hash_value
        self.load_factor = load_factor
        self.load_multiplier = 0.0


class HashArray:
    """The peers of one method (``carp``, ``sourcehash`` or ``userhash``), in Squid's order.

    Everything that depends only on the peers (hashes, multipliers, the distinct
    ``carp-key=`` specifications) is worked out here, once per configuration."""

    def __init__(self, peers: Iterable[CachePeer]):
        chosen = [p for p in peers if p.weight != 0]
        total = sum(p.weight for p in chosen)
        members = []
        for p in chosen:
            factor = p.weight / total
            if math.floor(factor * 1000.0) == 0.0:
                factor = 0.0
            members.append(Member(p, peer_hash(p.name), factor))
        members.sort(key=lambda m: m.peer.weight)        # stable, like glibc's qsort here
        k_total = len(members)
        p_last, x_last, xn = 0.0, 0.0, 1.0
        for k, m in enumerate(members, 1):
            kk1 = float(k_total - k + 1)
            x = _div(kk1 * (m.load_factor - p_last), xn)
            x += _pow(x_last, kk1)
            x = _pow(x, 1.0 / kk1)
            m.load_multiplier = x
            xn *= x
            x_last = x
            p_last = m.load_factor
        self.members = members
        self.kept = RANKINGS_KEPT
        self._peers = tuple(m.peer for m in members)
        specs: list[CarpKey | None] = []
        for m in members:
            if m.peer.carp_key not in specs:
                specs.append(m.peer.carp_key)
        self._specs = tuple(specs)
        self._url_only = self._specs == (None,)
        scoring = [(specs.index(m.peer.carp_key), m.hash, m.load_multiplier) for m in members]
        self._scoring = pack_scoring(scoring)
        # sourcehash and userhash hash their key once: the first peer is scored on the key,
        # the others on nothing more (key 1 is empty), so one running hash serves all three
        self._key_scoring = pack_scoring([(0 if n == 0 else 1, h, x) for n, (_, h, x) in enumerate(scoring)])
        self._rankings: dict[str, Order] = {}

    def __bool__(self) -> bool:
        return bool(self.members)

    def __len__(self) -> int:
        return len(self.members)

    # ------------------------------------------------------------ picking
    def _remember(self, key: str, order: Order) -> Order:
        """Kept as bytes (a tuple of peers would take four times the memory per key)."""
        rankings = self._rankings
        if len(rankings) >= self.kept:
            del rankings[next(iter(rankings))]
        rankings[key] = order
        return order

    def _first_usable(self, order: Order, usable: Callable[[CachePeer], bool]) -> CachePeer | None:
        """Squid: the highest score among usable peers."""
        peers = self._peers
        for i in order:
            peer = peers[i]
            if usable(peer):
                return peer
        return None

    # ------------------------------------------------------------ sourcehash, userhash
    def _key_order(self, key: str) -> Order:
        order = self._rankings.get(key)
        if order is not None:
            return order
        return self._remember(key, ranking((text_bytes(key), b""), self._key_scoring))

    def key_pick(self, key: str, usable: Callable[[CachePeer], bool]) -> CachePeer | None:
        """sourcehash and userhash: the key is hashed once for every peer."""
        return self._first_usable(self._key_order(key), usable)

    def ranking_for_key(self, key: str) -> tuple[CachePeer, ...]:
        """The peers in the order :meth:`key_pick` tries them."""
        peers = self._peers
        return tuple([peers[i] for i in self._key_order(key)])

    # ------------------------------------------------------------ CARP
    def _carp_order(self, url: str, scheme: str, host: str, port: int, path: str) -> Order:
        """``url`` is Squid's effective request URI; the other parts feed ``carp-key=``."""
        order = self._rankings.get(url)
        if order is not None:
            return order
        if self._url_only:
            keys: tuple[bytes, ...] = (text_bytes(url),)
        else:
            keys = tuple([text_bytes(carp_key(spec, url, scheme, host, port, path)) for spec in self._specs])
        return self._remember(url, ranking(keys, self._scoring))

    def carp_pick(self, url: str, scheme: str, host: str, port: int, path: str,
                  usable: Callable[[CachePeer], bool]) -> CachePeer | None:
        """CARP's parent for a request: the usable peer of highest score."""
        order = self._rankings.get(url)         # here too: the call saved is a sixth of a warm pick
        if order is None:
            order = self._carp_order(url, scheme, host, port, path)
        return self._first_usable(order, usable)

    def carp_ranking(self, url: str, scheme: str, host: str, port: int, path: str) -> tuple[CachePeer, ...]:
        """The peers in the order :meth:`carp_pick` tries them."""
        peers = self._peers
        return tuple([peers[i] for i in self._carp_order(url, scheme, host, port, path)])


def carp_key(spec: CarpKey | None, url: str, scheme: str, host: str, port: int, path: str) -> str:
    """The text CARP hashes for one peer: the URL, or the parts ``carp-key=`` names
    (scheme ``://``, host, ``:port`` always written, path without the query, the
    query with its ``?``); an empty result falls back to the URL."""
    if spec is None:
        return url
    key = ""
    if spec.scheme and scheme:
        key += scheme + "://"
    if spec.host:
        key += f"[{host}]" if ":" in host else host
    if spec.port:
        key += f":{port}"
    if spec.path or spec.params:
        cut = path.find("?")
        if spec.path:
            key += path if cut < 0 else path[:cut]
        if spec.params and cut >= 0:
            key += path[cut:]
    return key or url
