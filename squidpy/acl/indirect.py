"""The indirect client address: ``follow_x_forwarded_for``, as Squid 5.7 walks it.

A request that carries X-Forwarded-For is walked from its last address
(client_side_request.cc, clientFollowXForwardedForCheck): the connecting
client is tested first; while the address being tested is allowed, the last
address left in the field (the one that host says it got the request from)
becomes the indirect client and is tested in turn.  The walk ends at a
denial, at a value that is not an IP address (the previous one stays), or
when no address is left.  During the walk ``src`` (and ``srcdomain``, and
``maxconn``) see the address being tested.  Pure: a check that needs a
lookup raises :class:`~squidpy.acl.checklist.Pending` and the walk resumes
where it stopped once the fact is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from squidpy.acl.checklist import Checklist
from squidpy.ip import ip_address, numeric_ipv4

if TYPE_CHECKING:
    from squidpy.acl.access import AccessList

_SEPARATORS = ", \t\r\n\v\f"


def parse_address(text: str) -> str | None:
    """An X-Forwarded-For value as Squid reads it (getaddrinfo with AI_NUMERICHOST):
    IPv4 in inet_aton's forms, IPv6 without brackets; None for anything else."""
    if not text or text.startswith("["):
        return None
    try:
        return str(ip_address(text))
    except ValueError:
        address = numeric_ipv4(text.lower())
        return str(address) if address is not None else None


class IndirectClient:
    """One request's walk; ``address`` is the indirect client found so far."""

    __slots__ = ("address", "rest")

    def __init__(self, direct: str, values: list[bytes]):
        self.address = direct
        self.rest = ",".join(value.decode("latin-1") for value in values)

    def _take_last(self) -> bool:
        """Move to the last address left in the field; False when there is none (or it
        is not an address: the walk stops there, as in Squid)."""
        text = self.rest.rstrip(_SEPARATORS)
        start = len(text)
        while start > 0 and text[start - 1] not in _SEPARATORS:
            start -= 1
        address = parse_address(text[start:])
        if address is None:
            return False
        self.address = address
        self.rest = text[:start]
        return True

    def run(self, access: AccessList, ch: Checklist, move: Callable[[str], None]) -> None:
        """Walk to the end; ``move(address)`` makes ``ch`` test that address.  May raise
        Pending: call again with the fact known."""
        while access.check(ch).allowed and self._take_last():
            move(self.address)
