"""Where a request goes: direct, or which peers in which order (Squid 5.7's peer_select.cc).

:class:`PeerTable` holds one configuration's peers and their state (shared by
every request, rebuilt on reconfigure).  :class:`PeerSelector` decides for one
request, as an explicit little machine:

1. ``always_direct`` then ``never_direct`` (their ACLs may need a lookup:
   :class:`~squidpy.acl.checklist.Pending` is raised and :meth:`PeerSelector.start`
   is called again once the fact is known) decide whether going direct is
   required (``DIRECT_YES``: also after a forwarding loop), forbidden
   (``DIRECT_NO``) or allowed (``DIRECT_MAYBE``).
2. Unless going direct is required, requests that have a cache entry (not
   CONNECT) query ICP peers: :meth:`start` answers :class:`Ping` with the
   queries to send and how long to wait; replies (:meth:`icp_reply`) or the
   timeout (:meth:`ping_timeout`) finish the selection.  A hit picks that peer
   (``SIBLING_HIT``/``PARENT_HIT``); when every expected reply came and a parent
   missed, the fastest one weighed by ``weight`` and ``basetime``
   (``FIRST_PARENT_MISS``).  After a timeout the misses are not used and the
   log's hierarchy code gets Squid's ``TIMEOUT_`` prefix.
3. The candidates, in order: with ``prefer_direct on`` the origin first;
   then (for hierarchical requests, or all when ``nonhierarchical_direct`` is
   off) one parent by the first method that has one — sourcehash, userhash,
   CARP, round-robin, weighted round-robin (logged ``ROUNDROBIN_PARENT``, as
   Squid 5.7 logs it), the first parent that is up, the ``default`` parent —
   then every other usable parent (``ANY_OLD_PARENT``) and the default one;
   then the origin (``HIER_DIRECT``) unless ``DIRECT_NO``.  Each peer appears
   once.  A peer is usable when it is up (:mod:`.health`), under ``max-conn``
   and ``cache_peer_access`` allows it (a fast check: an ACL that would need a
   lookup does not match); siblings are not used for reloads, revalidations or
   loops.

"Hierarchical" is Squid's flag: GET (and TRACE) requests for http URLs that
carry no ``Authorization`` and did not loop.  So by default POST and CONNECT
go direct even with parents configured, as in Squid; ``never_direct allow
all`` sends everything to the parents.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squidpy.acl.checklist import AuthRequired, Pending, Undecided
from squidpy.http.message import Fields, field_values
from squidpy.peers.hashing import HashArray
from squidpy.peers.health import PeerHealth
from squidpy.peers.peer import PARENT, SIBLING, CachePeer

if TYPE_CHECKING:
    from squidpy.acl.access import AccessList
    from squidpy.acl.checklist import Checklist
    from squidpy.config.loader import Config

# Hierarchy codes, as Squid's hier_code_str spells them in the access log.
HIER_NONE = "HIER_NONE"
HIER_DIRECT = "HIER_DIRECT"
SIBLING_HIT = "SIBLING_HIT"
PARENT_HIT = "PARENT_HIT"
DEFAULT_PARENT = "DEFAULT_PARENT"
FIRSTUP_PARENT = "FIRSTUP_PARENT"
FIRST_PARENT_MISS = "FIRST_PARENT_MISS"
CLOSEST_PARENT_MISS = "CLOSEST_PARENT_MISS"
ROUNDROBIN_PARENT = "ROUNDROBIN_PARENT"
CARP = "CARP"
ANY_OLD_PARENT = "ANY_OLD_PARENT"
USERHASH_PARENT = "USERHASH_PARENT"
SOURCEHASH_PARENT = "SOURCEHASH_PARENT"
TIMEOUT_PREFIX = "TIMEOUT_"

RR_CLEAR_INTERVAL = 300         # Squid resets round-robin counters every 5 minutes
WRR_RESET = 1_000_000


class Direct(enum.Enum):
    NO = "DIRECT_NO"
    MAYBE = "DIRECT_MAYBE"
    YES = "DIRECT_YES"


class PeerTable:
    """One configuration's peers and their runtime state.

    Round-robin counters start as Squid's do: its first reset runs while the first
    cache_peer line is read, so in the process's first configuration that peer
    starts at 1 and the others at 0, and after a reconfigure every peer starts at 0;
    all are reset to 1 every 5 minutes from ``started`` (the process's start)."""

    def __init__(self, peers: list[CachePeer], now: float = 0.0, first: bool = True,
                 started: float | None = None):
        self.peers = peers
        self.by_name = {p.name.lower(): p for p in peers}
        self.health: dict[int, PeerHealth] = {id(p): PeerHealth(p) for p in peers}
        for i, state in enumerate(self.health.values()):
            state.rr_count = 1 if first and i == 0 else 0
        self.parents = [p for p in peers if p.type == PARENT]
        self.icp_peers = [p for p in peers if p.icp_port and not p.no_query]
        self.carp = HashArray(p for p in peers if p.carp)
        self.sourcehash = HashArray(p for p in peers if p.sourcehash)
        self.userhash = HashArray(p for p in peers if p.userhash)
        start = int(now if started is None else started)
        self.rr_cleared = start + (int(now) - start) // RR_CLEAR_INTERVAL * RR_CLEAR_INTERVAL
        self.reqnum = 0                 # ICP request numbers
        self.icp_open = True            # our ICP socket is open (Squid also asks IsConnOpen(icpOutgoingConn))

    def __bool__(self) -> bool:
        return bool(self.peers)

    def state(self, peer: CachePeer) -> PeerHealth:
        return self.health[id(peer)]

    def find(self, name: str) -> CachePeer | None:
        """A peer by name, compared without case (Squid's peerFindByName)."""
        return self.by_name.get(name.lower())

    def peer_at(self, address: str, port: int) -> CachePeer | None:
        """The peer an ICP message came from (Squid's whichPeer: an address of the
        peer and its ICP port)."""
        for p in self.peers:
            if port == p.icp_port and address in self.state(p).addresses:
                return p
        return None

    # ------------------------------------------------------------ what the I/O layer reports
    def resolved(self, peer: CachePeer, addresses: list[str]) -> list[str]:
        """The peer's name was looked up: cache_log lines (Squid's "Configuring ...")."""
        state = self.state(peer)
        first = not state.addresses
        state.addresses = list(addresses)
        if addresses:
            state.probe_wanted = True           # detect died or revived peers at once
        if first:
            return [f"Configuring {peer.type_text} {peer.host}/{peer.http_port}/{peer.icp_port}"]
        return []

    def connect_failed(self, peer: CachePeer, now: float) -> list[str]:
        return self._revival(peer, self.state(peer).connect_failed(now))

    def connect_succeeded(self, peer: CachePeer, now: float) -> list[str]:
        return self._revival(peer, self.state(peer).connect_succeeded(now))

    def probes_due(self, now: float) -> list[CachePeer]:
        """Peers a TCP probe should be started for now."""
        due = []
        for p in self.peers:
            state = self.state(p)
            if state.probe_wanted and state.addresses and state.start_probe(now):
                due.append(p)
        return due

    def probe_done(self, peer: CachePeer, ok: bool, now: float) -> list[str]:
        return self._revival(peer, self.state(peer).probe_done(ok, now))

    def icp_reply_from(self, peer: CachePeer, now: float, rtt_ms: int | None) -> list[str]:
        return self._revival(peer, self.state(peer).reply_received(now, rtt_ms))

    def _revival(self, peer: CachePeer, lines: list[str]) -> list[str]:
        if any(line.startswith("Detected REVIVED") for line in lines):
            self.clear_rr()
        return lines

    def clear_rr(self) -> None:
        """Squid's peerClearRR: every round-robin counter back to 1."""
        for state in self.health.values():
            state.rr_count = 1

    def tick(self, now: float) -> None:
        """The periodic round-robin reset (every 5 minutes)."""
        if int(now) - self.rr_cleared >= RR_CLEAR_INTERVAL:
            self.rr_cleared += (int(now) - self.rr_cleared) // RR_CLEAR_INTERVAL * RR_CLEAR_INTERVAL
            self.clear_rr()

    def next_reqnum(self) -> int:
        self.reqnum = (self.reqnum + 1) & 0x7FFFFFFF or 1
        return self.reqnum


@dataclass
class RequestFacts:
    """What peer selection knows of a request."""

    method: str
    url: str                    # Squid's effective URI: the absolute URL, host:port for CONNECT
    scheme: str                 # '' for CONNECT
    host: str
    port: int
    path: str                   # with the query
    client_ip: str
    checklist: Any              # for always_direct, never_direct and cache_peer_access
    user: str | None = None
    hierarchical: bool = True
    no_cache: bool = False      # the client asked for a reload (no-cache)
    refresh: bool = False       # a refresh the client asked for
    need_validation: bool = False    # a stale entry is being revalidated
    loop_detected: bool = False

    @property
    def has_entry(self) -> bool:
        """Squid gives every request but CONNECT a store entry: only those query ICP."""
        return self.method != "CONNECT"


def is_hierarchical(method: str, scheme: str, headers: Fields, loop_detected: bool = False) -> bool:
    """Squid's clientHierarchical for a forward proxy: TRACE, or a GET without an
    Authorization field that did not loop (If-Modified-Since is fine: squidpy's peers,
    like Squid's, use private keys); every URL scheme counts but the cache manager's."""
    if field_values(headers, b"authorization"):
        return False
    if method == "TRACE":
        return True
    if method != "GET" or loop_detected:
        return False
    return scheme != "cache_object"


@dataclass
class IcpQuery:
    peer: CachePeer
    reqnum: int
    url: str


@dataclass
class Ping:
    """Send these ICP queries and wait up to ``timeout`` seconds for the replies."""

    queries: list[IcpQuery]
    timeout: float


@dataclass
class Destination:
    peer: CachePeer | None      # None: the origin server
    code: str                   # hierarchy code

    @property
    def direct(self) -> bool:
        return self.peer is None


class _Marker(enum.Enum):
    ALL_PARENTS = "all parents"


_ALL_PARENTS = _Marker.ALL_PARENTS     # where every other usable parent goes in the list, once it is wanted


class Selected:
    """The candidates, best first; ``timed_out``: ICP replies did not all come in time;
    ``lines``: cache_log lines (peers found dead).

    The one parent a method picked comes first; every other usable parent
    (ANY_OLD_PARENT, as Squid lists them) is only worked out when a retry gets that
    far, with the peers' health as it is then: with 32 parents that list costs more
    than everything else, and most requests never need it."""

    __slots__ = ("_selector", "_plan", "timed_out", "lines")

    def __init__(self, selector: "PeerSelector", plan: list[Destination | _Marker], timed_out: bool,
                 lines: list[str]) -> None:
        self._selector = selector
        self._plan = plan
        self.timed_out = timed_out
        self.lines = lines

    def next(self, now: float | None = None) -> Destination | None:
        """The next candidate (None: there is none left)."""
        plan = self._plan
        while plan:
            item = plan.pop(0)
            if item is _ALL_PARENTS:
                plan[0:0] = self._selector._all_parents(now)
                continue
            return item
        return None

    @property
    def destinations(self) -> list[Destination]:
        """Every candidate left, in order (works out the full list)."""
        plan = self._plan
        if _ALL_PARENTS in plan:
            at = plan.index(_ALL_PARENTS)
            plan[at:at + 1] = self._selector._all_parents(None)
        return [item for item in plan if item is not _ALL_PARENTS]


class PeerSelector:
    """One request's peer selection."""

    def __init__(self, table: PeerTable, config: Config, request: RequestFacts, now: float):
        self.table = table
        self.config = config
        self.request = request
        self.now = now
        self.always: bool | None = None
        self.never: bool | None = None
        self.direct: Direct | None = None
        self.servers: list[Destination | _Marker] = []
        self._chosen: set[int] = set()         # id() of the peers in servers (None: direct)
        self.ping_state = "none"        # none, waiting, done
        self.ping_start = 0.0
        self.expected = 0
        self.received = 0
        self.timed_out = False
        self.hit: CachePeer | None = None
        self.hit_type: str | None = None
        self.first_parent_miss: CachePeer | None = None
        self.w_rtt = 0
        self.queried: dict[int, IcpQuery] = {}      # reqnum -> query
        self.lines: list[str] = []

    # ------------------------------------------------------------ the machine
    def start(self) -> Ping | Selected:
        """Decide; may raise Pending (call again once the fact is known)."""
        self._decide_direct()
        self.table.tick(self.now)
        if self.request.has_entry and self.ping_state == "none":
            ping = self._select_some_neighbor()
            if ping is not None:
                return ping
        return self._finish()

    def icp_reply(self, peer: CachePeer, opcode: str, reqnum: int, now: float) -> Selected | None:
        """An ICP reply from ``peer`` (opcode names from :mod:`squidpy.peers.icp`);
        returns the selection when it is complete."""
        if self.ping_state != "waiting" or reqnum not in self.queried:
            return None
        if opcode in ("ICP_MISS", "ICP_DECHO"):
            self.received += 1
            if peer.type == PARENT:
                self._parent_miss(peer, now)
        elif opcode == "ICP_HIT":
            self.received += 1
            self.hit, self.hit_type = peer, peer.type
            return self._replies_done()
        elif opcode == "ICP_MISS_NOFETCH":
            self.received += 1
        else:
            return None             # ICP_DENIED, ICP_ERR ...: not counted, as in Squid
        if self.received < self.expected:
            return None
        return self._replies_done()

    def ping_timeout(self) -> Selected | None:
        """The wait for ICP replies is over: replies so far are not used."""
        if self.ping_state != "waiting":
            return None
        self.ping_state = "done"
        self.timed_out = True
        return self._finish()

    # ------------------------------------------------------------ direct or not
    def _decide_direct(self) -> None:
        if self.direct is not None:
            return
        ch = self.request.checklist
        if self.always is None:
            self.always = _allowed(self.config.always_direct, ch)
        if self.always:
            self.direct = Direct.YES
            return
        if self.never is None:
            self.never = _allowed(self.config.never_direct, ch)
        if self.never:
            self.direct = Direct.NO
        elif self.request.loop_detected:
            self.direct = Direct.YES
        else:
            self.direct = Direct.MAYBE

    def undecided(self) -> None:
        """The list being asked needs what cannot be waited for here (credentials, an
        external ACL): it does not allow (Squid: DUNNO and AUTH_REQUIRED are "not relevant")."""
        if self.always is None:
            self.always = False
        elif self.never is None:
            self.never = False

    # ------------------------------------------------------------ the candidates
    def _finish(self) -> Selected:
        direct, config = self.direct, self.config
        if direct is Direct.YES:
            self._select_some_direct()
        elif direct is Direct.NO:
            self._select_some_parent()
            self.servers.append(_ALL_PARENTS)
        else:
            if config.prefer_direct:
                self._select_some_direct()
            if self.request.hierarchical or not config.nonhierarchical_direct:
                self._select_some_parent()
                self.servers.append(_ALL_PARENTS)
            if not config.prefer_direct:
                self._select_some_direct()
        return Selected(self, self.servers, self.timed_out, self.lines)

    def _add(self, peer: CachePeer | None, code: str) -> None:
        key = id(peer)
        if key not in self._chosen:
            self._chosen.add(key)
            self.servers.append(Destination(peer, code))

    def _select_some_direct(self) -> None:
        if self.direct is not Direct.NO:
            self._add(None, HIER_DIRECT)

    def _select_some_parent(self) -> None:
        if self.direct is Direct.YES:
            return
        table, request = self.table, self.request
        peer, code = None, ""           # the code goes with the peer found
        if table.sourcehash:
            peer = table.sourcehash.key_pick(request.client_ip, self.http_okay)
            code = SOURCEHASH_PARENT
        if peer is None and table.userhash and request.user:
            peer = table.userhash.key_pick(request.user, self.http_okay)
            code = USERHASH_PARENT
        if peer is None and table.carp:
            peer = table.carp.carp_pick(request.url, request.scheme, request.host, request.port, request.path,
                                        self.http_okay)
            code = CARP
        if peer is None:
            peer, code = self._round_robin(), ROUNDROBIN_PARENT
        if peer is None:
            peer, code = self._weighted_round_robin(), ROUNDROBIN_PARENT
        if peer is None:
            peer, code = self._first_up_parent(), FIRSTUP_PARENT
        if peer is None:
            peer, code = self._default_parent(), DEFAULT_PARENT
        if peer is not None:
            self._add(peer, code)

    def _all_parents(self, now: float | None) -> list[Destination]:
        """Squid's selectAllParents: every usable parent not listed yet, then the default one."""
        if now is not None:
            self.now = now
        chosen, found = self._chosen, []
        for p in self.table.parents:
            if id(p) not in chosen and self.http_okay(p):
                chosen.add(id(p))
                found.append(Destination(p, ANY_OLD_PARENT))
        default = self._default_parent()
        if default is not None and id(default) not in chosen:
            chosen.add(id(default))
            found.append(Destination(default, DEFAULT_PARENT))
        return found

    def _round_robin(self) -> CachePeer | None:
        chosen: CachePeer               # set with chosen_state
        chosen_state: PeerHealth | None = None
        for p in self.table.peers:
            if not p.round_robin or p.type != PARENT or not self.http_okay(p):
                continue
            state = self.table.state(p)
            if chosen_state is not None:
                if p.weight == chosen.weight:
                    if chosen_state.rr_count < state.rr_count:
                        continue
                elif chosen_state.rr_count / chosen.weight < state.rr_count / p.weight:
                    continue
            chosen, chosen_state = p, state
        if chosen_state is None:
            return None
        chosen_state.rr_count += 1
        return chosen

    def _weighted_round_robin(self) -> CachePeer | None:
        table = self.table
        chosen: CachePeer               # set with chosen_state
        chosen_state: PeerHealth | None = None
        for p in table.peers:
            if not p.weighted_round_robin or p.type != PARENT or not self.http_okay(p):
                continue
            state = table.state(p)
            if chosen_state is not None and chosen_state.rr_count < state.rr_count:
                continue
            chosen, chosen_state = p, state
        if chosen_state is None:
            return None
        if chosen_state.rr_count > WRR_RESET:
            for p in table.peers:
                if p.weighted_round_robin and p.type == PARENT:
                    table.state(p).rr_count = 0
        weighted_rtt = _c_div(chosen_state.rtt - chosen.basetime, chosen.weight)
        chosen_state.rr_count += max(weighted_rtt, 1)
        return chosen

    def _first_up_parent(self) -> CachePeer | None:
        dead_peer_timeout = self.config.dead_peer_timeout
        for p in self.table.peers:
            if not self.table.state(p).up(self.now, dead_peer_timeout):
                continue
            if p.type == PARENT and self.http_okay(p):
                return p
        return None

    def _default_parent(self) -> CachePeer | None:
        for p in self.table.peers:
            if p.type == PARENT and p.default and self.http_okay(p):
                return p
        return None

    # ------------------------------------------------------------ may this peer be used
    def allowed_to_use(self, peer: CachePeer) -> bool:
        """Squid's peerAllowedToUse: siblings not for reloads, revalidations or loops,
        then cache_peer_access (a fast check)."""
        request = self.request
        if peer.type == SIBLING and (request.no_cache or request.refresh or request.loop_detected
                                     or request.need_validation):
            return False
        if not peer.access:
            return True
        try:
            return peer.access.check(request.checklist).allowed
        except (Pending, AuthRequired, Undecided):
            return False

    def http_okay(self, peer: CachePeer) -> bool:
        """Squid's peerHTTPOkay: a connection is possible, the peer may be used, it is up."""
        state = self.table.state(peer)
        return state.has_connection() and self.allowed_to_use(peer) and state.up(
            self.now, self.config.dead_peer_timeout)

    # ------------------------------------------------------------ ICP
    def _would_be_pinged(self, peer: CachePeer) -> bool:
        state = self.table.state(peer)
        if peer.icp_port == 0 or peer.no_query or not state.addresses:
            return False
        if peer.background_ping and int(self.now) - state.last_query < self.config.background_ping_rate:
            return False
        if peer.type == SIBLING and not self.request.hierarchical:
            return False
        if not self.allowed_to_use(peer):
            return False
        return state.would_be_pinged(self.now, self.config.dead_peer_timeout)

    def _select_some_neighbor(self) -> Ping | None:
        """Squid's selectSomeNeighbor: ICP queries when they can help."""
        self.ping_state = "done"
        if self.direct is Direct.YES:
            return None
        if not self.request.hierarchical and self.direct is not Direct.NO:
            return None
        table, config, now = self.table, self.config, self.now
        pinged = [p for p in table.icp_peers if self._would_be_pinged(p)]
        if not pinged or not config.icp_port or not table.icp_open:
            return None
        queries = []
        parent_rtt = parent_n = sibling_rtt = sibling_n = 0
        for p in pinged:
            state = table.state(p)
            query = IcpQuery(p, table.next_reqnum(), self.request.url)
            queries.append(query)
            self.queried[query.reqnum] = query
            if state.up(now, config.dead_peer_timeout):
                if p.type == PARENT:
                    parent_n += 1
                    parent_rtt += state.rtt
                else:
                    sibling_n += 1
                    sibling_rtt += state.rtt
            elif not state.dead_logged:
                state.dead_logged = True
                self.lines.append(f"Detected DEAD {p.type_text}: {p.name}")
            state.query_sent(now)
        self.expected = parent_n + sibling_n
        if config.icp_query_timeout:
            timeout_ms = config.icp_query_timeout
        else:
            if self.expected:
                timeout_ms = 2 * parent_rtt // parent_n if parent_n else 2 * sibling_rtt // sibling_n
            else:
                timeout_ms = 2000
            if config.maximum_icp_query_timeout:
                timeout_ms = min(timeout_ms, config.maximum_icp_query_timeout)
            timeout_ms = max(timeout_ms, config.minimum_icp_query_timeout)
        if self.expected <= 0:
            return None
        self.ping_state = "waiting"
        self.ping_start = now
        return Ping(queries, timeout_ms / 1000.0)

    def _parent_miss(self, peer: CachePeer, now: float) -> None:
        """Squid's handleIcpParentMiss (without ICMP measurements)."""
        if peer.closest_only:
            return
        elapsed_ms = int((now - self.ping_start) * 1000)
        rtt = max(_c_div(elapsed_ms - peer.basetime, peer.weight), 1)
        if self.first_parent_miss is None or rtt < self.w_rtt:
            self.first_parent_miss = peer
            self.w_rtt = rtt

    def _replies_done(self) -> Selected:
        """Squid's selectSomeNeighborReplies, then the rest of the selection."""
        self.ping_state = "done"
        if self.hit is not None:
            self._add(self.hit, PARENT_HIT if self.hit_type == PARENT else SIBLING_HIT)
        elif self.first_parent_miss is not None:
            self._add(self.first_parent_miss, FIRST_PARENT_MISS)
        return self._finish()


def _allowed(rules: AccessList, ch: Checklist) -> bool:
    """always_direct or never_direct allows the request; may raise Pending for a DNS fact.
    An ACL that wants credentials or whose helper failed does not allow."""
    if not rules:
        return False
    try:
        return rules.check(ch).allowed
    except (AuthRequired, Undecided):
        return False


def _c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q
