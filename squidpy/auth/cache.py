"""The authenticated-user cache, so a logged-in browser costs no helper round trip.

As in Squid (src/auth/User.cc, src/auth/basic/User.cc):

* a user whose credentials a helper accepted is trusted for ``credentialsttl``
  (Basic) while the browser keeps sending the same password; another password
  is checked again at once;
* credentials a helper refused (``ERR``) stay refused while they are sent again
  unchanged, until ``credentialsttl``; a helper that could not decide (``BH``,
  it died, it timed out) is asked again next time, so an LDAP server coming back
  lets people in at once;
* a user not seen for ``authenticate_ttl`` is forgotten
  (``authenticate_cache_garbage_interval``);
* the addresses a user came from are remembered for ``authenticate_ip_ttl``
  (``max_user_ip``).

Passwords are never kept: only a keyed hash of them, with a key made at start.
The clock is injected.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable

from squidpy.digests import blake2b, compare_digest, token_bytes

if TYPE_CHECKING:
    from squidpy.auth.decide import Outcome

Notes = Iterable[tuple[str, str]]
"""A helper's key=value notes (group=, log= ...)."""

OK = "ok"
FAILED = "failed"
UNCHECKED = "unchecked"     # ask the helper

MAX_USERS = 100_000         # bounded whatever clients send: the least recently seen go first
MAX_IPS_PER_USER = 1024
SEEN_RESOLUTION = 1.0       # seconds: how finely known_header keeps a user's last use

_KEY = token_bytes(32)


def secret_digest(secret: str) -> bytes:
    """A keyed hash (BLAKE2b with a key made at start): what is kept instead of a secret."""
    return blake2b(secret.encode("latin-1", "replace"), key=_KEY, digest_size=32).digest()


@dataclass
class CachedUser:
    scheme: str
    user: str
    secret: bytes | None = None        # keyed hash of the password (Basic)
    state: str = UNCHECKED
    checked: float = 0.0
    seen: float = 0.0
    notes: list[tuple[str, str]] = field(default_factory=list)
    ha1: str | None = None             # Digest: from the helper
    requeried_for: str | None = None   # Digest: the response a fresh HA1 was fetched for
    ips: "OrderedDict[str, float]" = field(default_factory=OrderedDict)
    header: bytes | None = None        # Basic: keyed hash of the whole Proxy-Authorization value accepted
    accepted: Outcome | None = None    # the Outcome a request with that value gets


def forget_addresses(entry: CachedUser, ip: str, strict: bool) -> None:
    """max_user_ip matched (too many addresses): with -s the address that went over
    is dropped (the user stays denied from it); without, all are forgotten so the
    user's next request gets in, as Squid does."""
    if strict:
        entry.ips.pop(ip, None)
    else:
        entry.ips.clear()


class UserCache:
    def __init__(self, clock: Callable[[], float], authenticate_ttl: float = 3600,
                 ip_ttl: float = 1, garbage_interval: float = 3600):
        self.clock = clock
        self.authenticate_ttl = authenticate_ttl
        self.ip_ttl = ip_ttl
        self.garbage_interval = garbage_interval
        self.users: "OrderedDict[tuple[str, str], CachedUser]" = OrderedDict()
        self.headers: dict[bytes, CachedUser] = {}     # Basic: accepted header (keyed hash) -> its user
        self.last_gc = clock()

    def _entry(self, scheme: str, user: str) -> CachedUser:
        key = (scheme, user)
        entry = self.users.get(key)
        if entry is None:
            entry = self.users[key] = CachedUser(scheme, user)
            if len(self.users) > MAX_USERS:
                self.users.popitem(last=False)
        else:
            self.users.move_to_end(key)
        entry.seen = self.clock()
        return entry

    def basic(self, user: str, password: str, credentials_ttl: float) -> tuple[str, CachedUser]:
        """What is known of these Basic credentials: OK (no helper needed), FAILED, or UNCHECKED."""
        self.collect()
        entry = self._entry("basic", user)
        digest = secret_digest(password)
        if entry.secret is None or not compare_digest(entry.secret, digest):
            entry.secret, entry.state, entry.notes = digest, UNCHECKED, []
            return UNCHECKED, entry
        if entry.state in (OK, FAILED) and self.clock() - entry.checked < credentials_ttl:
            return entry.state, entry
        entry.state = UNCHECKED
        return UNCHECKED, entry

    def known_header(self, header: bytes, credentials_ttl: float) -> CachedUser | None:
        """The user a Basic ``Proxy-Authorization`` value (its keyed hash) was accepted
        for, while that still holds (same password, within credentialsttl): a logged-in
        browser's requests are answered without decoding their credentials again."""
        entry = self.headers.get(header)
        if entry is None:
            return None
        now = self.clock()
        if entry.header != header or entry.state != OK or now - entry.checked >= credentials_ttl:
            del self.headers[header]
            return None
        if now - entry.seen >= SEEN_RESOLUTION:
            # when it was last seen (authenticate_ttl, the least recently seen first out)
            # is kept to the second: the browser's next requests cost no bookkeeping
            if now - self.last_gc >= self.garbage_interval:
                self.collect()
            entry.seen = now
            key = (entry.scheme, entry.user)
            if key in self.users:
                self.users.move_to_end(key)
        return entry

    def remember_header(self, entry: CachedUser, header: bytes, accepted: Outcome | None) -> None:
        entry.header, entry.accepted = header, accepted
        if len(self.headers) >= MAX_USERS:
            self.headers.clear()
        self.headers[header] = entry

    def record_basic(self, user: str, password: str, result: str, notes: Notes = ()) -> CachedUser:
        """The helper's verdict: ``OK`` and ``ERR`` are remembered, anything else is not."""
        entry = self._entry("basic", user)
        entry.secret = secret_digest(password)
        entry.checked = self.clock()
        entry.state = OK if result == "OK" else FAILED if result == "ERR" else UNCHECKED
        entry.notes = list(notes) if result == "OK" else []
        return entry

    def digest_user(self, user: str, realm: str) -> CachedUser:
        self.collect()
        return self._entry("digest", f"{user}\0{realm}")

    def record_ha1(self, user: str, realm: str, ha1: str | None, notes: Notes = ()) -> CachedUser:
        entry = self._entry("digest", f"{user}\0{realm}")
        entry.ha1 = ha1.lower() if ha1 else None
        entry.checked = self.clock()
        entry.state = OK if ha1 else FAILED
        entry.notes = list(notes) if ha1 else []
        return entry

    def authenticated(self, scheme: str, user: str, notes: Notes = ()) -> CachedUser:
        """A connection-oriented scheme finished its handshake for ``user``."""
        entry = self._entry(scheme, user)
        entry.state, entry.checked, entry.notes = OK, self.clock(), list(notes)
        return entry

    # ------------------------------------------------------------ max_user_ip

    def note_ip(self, entry: CachedUser, ip: str) -> int:
        """Record that ``entry``'s user sent a request from ``ip``; returns how many
        distinct addresses the user has used within authenticate_ip_ttl."""
        now = self.clock()
        ips = entry.ips
        for old in [a for a, t in ips.items() if now - t >= self.ip_ttl and a != ip]:
            del ips[old]
        ips[ip] = now
        ips.move_to_end(ip)
        if len(ips) > MAX_IPS_PER_USER:
            ips.popitem(last=False)
        return len(ips)

    def ip_count(self, entry: CachedUser) -> int:
        now = self.clock()
        return sum(1 for t in entry.ips.values() if now - t < self.ip_ttl)

    def over_limit(self, entry: CachedUser, ip: str, strict: bool) -> None:
        forget_addresses(entry, ip, strict)

    # ------------------------------------------------------------ garbage

    def collect(self) -> int:
        """Every authenticate_cache_garbage_interval: drop users idle for authenticate_ttl."""
        now = self.clock()
        if now - self.last_gc < self.garbage_interval:
            return 0
        self.last_gc = now
        stale = [k for k, e in self.users.items() if now - e.seen >= self.authenticate_ttl]
        for key in stale:
            del self.users[key]
        if stale:
            self.headers = {h: e for h, e in self.headers.items() if (e.scheme, e.user) in self.users}
        return len(stale)
