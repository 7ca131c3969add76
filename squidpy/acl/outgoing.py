"""``tcp_outgoing_address``: the local address of origin connections, as Squid 5.7
chooses it (FwdState.cc, getOutgoingAddress).

Lines are tried in order for each address squidpy connects to; a line applies
only to destinations of its own IP version (Squid's implicit version test),
and the first whose ACLs all match gives the address to bind.  Its ``dst``
ACLs test the address being connected to, so when one is used the exchange
looks the origin's addresses up first.  A peer's ``standby=`` connections
choose theirs the same way, for a request Squid makes up (:func:`for_standby`),
and its TCP probes without any request (:func:`for_probe`).
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from squidpy.acl.access import AccessRule, matches
from squidpy.acl.checklist import Checklist, Pending


@dataclass(slots=True, frozen=True)
class Bind:
    """The local addresses to connect from (tcp_outgoing_address): per IP version,
    or per origin address when a dst ACL decided; None leaves it to the system."""
    ipv4: str | None = None
    ipv6: str | None = None
    by_address: tuple[tuple[str, str | None], ...] = ()

    @property
    def binds(self) -> bool:
        return bool(self.ipv4 or self.ipv6 or any(local for _, local in self.by_address))

    def local_for(self, address: str) -> str | None:
        for known, local in self.by_address:
            if known == address:
                return local
        return self.ipv6 if ":" in address else self.ipv4


@dataclass
class OutgoingAddress:
    """One ``tcp_outgoing_address`` line."""

    address: str | None         # None: any_addr (the system chooses)
    version: int
    filter: AccessRule | None
    where: str


def _first(lines: list[OutgoingAddress], ch: Checklist, version: int) -> str | None:
    for line in lines:
        if line.version != version:
            continue
        try:
            if matches(line.filter, ch):
                return line.address
        except Pending as p:
            if p.fact == "dst":
                raise               # Squid always knows the address it connects to: look it up
            continue                # any other lookup: a fast check that cannot decide does not match
    return None


def outgoing_addresses(lines: list[OutgoingAddress], ch: Checklist) -> Bind | None:
    """The local addresses for this request's origin connections (None: the system
    chooses every one).  Raises Pending("dst") when a line needs the origin's
    addresses and they are not known yet."""
    known = ch.dst
    if known is None:
        bind = Bind(_first(lines, ch, 4), _first(lines, ch, 6))
    else:
        pairs = []
        try:
            for address in known:
                ch.dst = [address]
                pairs.append((address, _first(lines, ch, 6 if ":" in address else 4)))
        finally:
            ch.dst = known
        bind = Bind(by_address=tuple(pairs))
    return bind if bind.binds else None


def outgoing_to(lines: list[OutgoingAddress], ch: Checklist, addresses: list[str],
                peer_name: str | None = None) -> Bind | None:
    """The local addresses for connections to ``addresses`` already known (a peer's,
    an intercepted request's original destination): ``dst`` ACLs test them and
    ``peername`` ACLs the peer connected to; the checklist is left as it was."""
    known = ch.dst
    ch.dst = list(addresses)
    ch.dst_peer_name = peer_name
    try:
        return outgoing_addresses(lines, ch)
    finally:
        ch.dst = known
        ch.dst_peer_name = None


def for_standby(lines: list[OutgoingAddress], peer_name: str, peer_host: str, addresses: list[str]) -> Bind | None:
    """The local addresses of a peer's standby connections.  Squid 5.7 (PeerPoolMgr)
    opens them for a request it makes up: ``OPTIONS`` for ``*`` on the peer's host,
    initiated by ``peer-pool``, with no client (``src`` ACLs see no address, ``::``),
    connecting to the peer's addresses."""
    ch = Checklist(src="::", method="OPTIONS", url=f"http://{peer_host}/*", host=peer_host, path="*")
    ch.initiator = "peer-pool"
    return outgoing_to(lines, ch, addresses, peer_name)


def for_probe(lines: list[OutgoingAddress], peer_name: str, addresses: list[str]) -> Bind | None:
    """The local addresses of a TCP probe to a peer that is down.  Squid 5.7
    (neighbors.cc, peerProbeConnect) asks getOutgoingAddress with no request at all:
    ``dst`` tests the address probed, ``peername`` the peer, there is no client (``::``)
    nor proxy address, and an ACL about the request does not match (Squid: "used in
    context without an HTTP request. Assuming mismatch"; negated, it matches).  Here
    the request's facts are empty: no method, scheme, URL, host, port or initiator."""
    ch = Checklist(src="::", method="", url="", scheme="", host="", port=0, path="", local_ip="::", local_port=0)
    ch.initiator = ""
    return outgoing_to(lines, ch, addresses, peer_name)
