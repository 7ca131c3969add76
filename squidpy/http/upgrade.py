"""Which HTTP Upgrade offers go upstream: Squid 5's ``http_upgrade_request_protocols``.

After a 101 (Switching Protocols) the proxy only copies bytes both ways: no
ACL, log line or limit sees what the tunnel carries.  So, as in Squid, no
offer is forwarded unless a rule allows it: without rules the ``Upgrade``
field is removed and the request goes on as plain HTTP.

For each protocol the client offers (``name`` or ``name/version``), the rules
naming that protocol are tried in order; only when there is none are the
``OTHER`` rules tried.  A rule naming a version applies only to offers of that
version, and one naming no version to every version, but a rule for the same
name with another version still counts as a rule for that name (so OTHER is
then not tried).  The first rule whose ACLs all match decides: ``allow``
forwards the offer as the client wrote it, ``deny`` drops it; when no rule
matches the offer is dropped.  Names and versions compare case-sensitively.
Like Squid's, the rules take only ACLs that need no lookup: one that would
(``dst`` before the name is resolved) drops the offer.
"""

from __future__ import annotations

import re

from squidpy.acl.access import AccessList, AccessRule, AclTable, matches
from squidpy.acl.checklist import UNDECIDED, Checklist

OTHER = "OTHER"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PROTOCOL = re.compile(rf"{_TOKEN}(?:/{_TOKEN})?")
_OFFER = re.compile(_PROTOCOL.pattern.encode())


class UpgradeRules:
    """Every ``http_upgrade_request_protocols`` line of a configuration."""

    def __init__(self) -> None:
        self.named: list[tuple[bytes, bytes, AccessRule]] = []    # (name, "/version" or b"", rule)
        self.other = AccessList("http_upgrade_request_protocols")

    def add_rule(self, args: list[str], acls: AclTable, where: str, text: str) -> None:
        """Parse ``PROTOCOL allow|deny [!]ACL ...``; raises ValueError."""
        if not args:
            raise ValueError("expected a protocol name (such as websocket) or OTHER, then allow or deny")
        protocol, rest = args[0], args[1:]
        if protocol == OTHER:
            self.other.add_rule(rest, acls, where, text)
            return
        if not _PROTOCOL.fullmatch(protocol):
            raise ValueError(f"'{protocol}' is not a protocol name (a token, optionally /VERSION)")
        rule = AccessList("http_upgrade_request_protocols").add_rule(rest, acls, where, text)
        name, slash, version = protocol.partition("/")
        self.named.append((name.encode("latin-1"), (slash + version).encode("latin-1"), rule))

    def __bool__(self) -> bool:
        return bool(self.named) or bool(self.other)

    def allowed_offers(self, upgrade: bytes, ch: Checklist) -> bytes | None:
        """The client's ``Upgrade`` value reduced to the offers the rules allow, in its
        order; None when none is (then no Upgrade goes upstream at all).  A value that
        is not a valid list of protocols is dropped whole, as in Squid."""
        if not self:
            return None
        offers = [part.strip() for part in upgrade.split(b",")]
        offers = [offer for offer in offers if offer]
        if not offers or not all(_OFFER.fullmatch(offer) for offer in offers):
            return None
        kept = [offer for offer in offers if self._allows(offer, ch)]
        return b", ".join(kept) if kept else None

    def _allows(self, offer: bytes, ch: Checklist) -> bool:
        name, slash, version = offer.partition(b"/")
        version = slash + version
        named_rules = False
        try:
            for rule_name, rule_version, rule in self.named:
                if rule_name != name:
                    continue
                named_rules = True
                if (not rule_version or rule_version == version) and matches(rule, ch):
                    return rule.allow
            if named_rules or not self.other:
                return False
            verdict = self.other.check(ch)
        except UNDECIDED:
            return False
        return verdict.allowed and not verdict.implicit


def switch_refusal(offered: bytes | None, reply_upgrade: bytes | None,
                   reply_connection: set[bytes] | frozenset[bytes]) -> str | None:
    """Why a 101 (Switching Protocols) must not become a tunnel, or None when it may
    (RFC 9110 7.8, as Squid checks it): an upgrade squidpy offered, confirmed by the
    origin's ``Upgrade`` field naming a protocol and its ``Connection: upgrade``."""
    if offered is None:
        return "the server switched protocols though no upgrade was offered to it"
    if reply_upgrade is None or not reply_upgrade.strip(b", \t"):
        return "the server switched protocols without naming one in an Upgrade field"
    if b"upgrade" not in reply_connection:
        return "the server switched protocols without 'Connection: upgrade'"
    return None
