"""Whether a peer is up, as Squid 5.7's neighbors.cc decides it; the clock is passed in.

* TCP: a peer starts with a budget of ``connect-fail-limit`` (10) failed
  connections.  Each failure to connect spends one; at none left the peer is
  dead ("Detected DEAD Parent: NAME" in cache_log) and is skipped.  Any
  successful connection refills the budget; one that revives a dead peer is
  reported ("Detected REVIVED Parent: NAME") and resets the round-robin
  counters, so the revived peer is not flooded with the requests it missed.
* A peer nobody has connected to yet (after start or reconfigure) has no
  budget: it counts as down until a probe connects, as in Squid.
* Probes: asking whether a down peer is up wants a probe (a TCP connect to
  its HTTP port), at most one at a time and one per second.
* ICP: a peer that is queried (not ``no-query``) and has not answered any
  query for ``dead_peer_timeout`` since it was first left unanswered is down.

Times are whole seconds (Squid's ``squid_curtime``), passed in by the caller.
"""

from __future__ import annotations

from squidpy.peers.peer import CachePeer

RTT_AV_FACTOR = 50                  # Squid's running average of ICP round trips
RTT_BACKGROUND_AV_FACTOR = 25       # ... for weighted-round-robin peers


def int_average(current: int, new: int, count: int, limit: int) -> int:
    """Squid's Math::intAverage: the average of ``count`` samples, or of the last
    ``limit`` or so (C's division truncates toward zero)."""
    n = min(count, limit)
    return (current * (n - 1) + new) // n


class PeerHealth:
    """One peer's runtime state: liveness, probes, ICP statistics, round-robin count."""

    __slots__ = ("peer", "tcp_up", "dead_logged", "addresses", "last_connect_failure", "last_connect_probe",
                 "probing", "reprobe", "probe_wanted", "probe_start", "last_query", "last_reply", "rtt",
                 "pings_sent", "pings_acked", "rr_count", "conn_open", "standby_idle", "fetches", "icp_version")

    def __init__(self, peer: CachePeer, addresses: list[str] | None = None):
        self.peer = peer
        self.tcp_up = 0
        self.dead_logged = False
        self.addresses: list[str] = list(addresses or [])
        self.last_connect_failure = 0
        self.last_connect_probe = 0
        self.probing = False
        self.reprobe = False
        self.probe_wanted = False
        self.probe_start = 0
        self.last_query = 0
        self.last_reply = 0
        self.rtt = 0                  # ms, ICP round trip average
        self.pings_sent = 0
        self.pings_acked = 0
        self.rr_count = 0
        self.conn_open = 0
        self.standby_idle = 0         # standby=N: connections opened ahead and waiting
        self.fetches = 0
        self.icp_version = 2

    def __repr__(self) -> str:
        return f"<PeerHealth {self.peer.name} tcp_up={self.tcp_up}>"

    # ------------------------------------------------------------ questions
    def up(self, now: float, dead_peer_timeout: float) -> bool:
        """Squid's neighborUp; a peer without its TCP budget wants a probe."""
        if not self.tcp_up:
            self.probe_wanted = True
            return False
        if not self.addresses:
            return False
        if self.peer.no_query:
            return True
        if self.probe_start and int(now) - self.probe_start > dead_peer_timeout:
            return False
        return True

    def can_open_more(self) -> bool:
        """max-conn: another connection may be opened to this peer."""
        limit = self.peer.max_conn
        return limit <= 0 or self.conn_open < limit

    def has_connection(self) -> bool:
        """Squid's peerCanOpenMore or peerHasConnAvailable (a standby connection)."""
        return self.can_open_more() or self.standby_idle > 0

    # ------------------------------------------------------------ TCP outcomes
    def connect_failed(self, now: float, quiet: bool = False) -> list[str]:
        """A connection to the peer failed; returns the cache_log lines to write."""
        peer = self.peer
        lines = [] if quiet else [f"TCP connection to {peer.host}/{peer.http_port} failed"]
        self.last_connect_failure = int(now)
        if not self.tcp_up:
            return lines
        self.tcp_up -= 1
        if not self.tcp_up:
            self.dead_logged = True
            lines.append(f"Detected DEAD {peer.type_text}: {peer.name}")
        return lines

    def connect_succeeded(self, now: float) -> list[str]:
        """A connection to the peer was made; returns the cache_log lines to write."""
        revived = not self.tcp_up
        self.tcp_up = self.peer.connect_fail_limit
        return self.alive(now) if revived else []

    def alive(self, now: float) -> list[str]:
        """Squid's peerAlive: the peer answered (a connection or an ICP reply)."""
        lines = []
        if self.dead_logged and self.tcp_up:
            self.dead_logged = False
            lines.append(f"Detected REVIVED {self.peer.type_text}: {self.peer.name}")
        self.last_reply = int(now)
        self.probe_start = 0
        return lines

    # ------------------------------------------------------------ probes
    def start_probe(self, now: float) -> bool:
        """Whether a probe should start now (none running, none this second)."""
        if self.probing or int(now) == self.last_connect_probe:
            self.reprobe = self.reprobe or self.probe_wanted
            return False
        self.probing = True
        self.probe_wanted = False
        self.reprobe = False
        self.last_connect_probe = int(now)
        return True

    def probe_done(self, ok: bool, now: float) -> list[str]:
        """A probe ended; returns cache_log lines.  ``probe_wanted`` is set again
        when another probe was asked for meanwhile."""
        self.probing = False
        lines = self.connect_succeeded(now) if ok else self.connect_failed(now, quiet=True)
        if self.reprobe:
            self.probe_wanted = True
            self.reprobe = False
        return lines

    # ------------------------------------------------------------ ICP
    def would_be_pinged(self, now: float, dead_peer_timeout: float) -> bool:
        """The time part of Squid's peerWouldBePinged: a peer not queried for a while
        is queried even when down (that is how it comes back); else only when up."""
        if int(now) - self.last_query > dead_peer_timeout:
            return True
        return self.up(now, dead_peer_timeout)

    def query_sent(self, now: float) -> None:
        self.pings_sent += 1
        self.last_query = int(now)
        if self.probe_start == 0:
            self.probe_start = int(now)

    def reply_received(self, now: float, rtt_ms: int | None) -> list[str]:
        """An ICP reply came from the peer (``rtt_ms``: for a query we sent and still
        remember)."""
        lines = self.alive(now)
        self.pings_acked += 1
        if rtt_ms is not None and 1 <= rtt_ms <= 10000:
            factor = RTT_BACKGROUND_AV_FACTOR if self.peer.weighted_round_robin else RTT_AV_FACTOR
            self.rtt = int_average(self.rtt, rtt_ms, self.pings_acked, factor)
        return lines
