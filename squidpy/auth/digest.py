"""Digest authentication (RFC 2617, qop=auth, MD5) and Squid's nonce rules.

Squid issues nonces itself, counts their uses (``nonce_max_count``), ages them
(``nonce_max_duration``), checks the client's nonce count (``check_nonce_count``,
``nonce_strictness``) and forgets them every ``nonce_garbage_interval``.  The
helper only supplies HA1 (``OK ha1="..."``).  Facts from Squid 5.7's
src/auth/digest/Config.cc and UserRequest.cc.  Clock injected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from squidpy.auth.credentials import Digest
from squidpy.digests import compare_digest, md5, token_bytes

VALID = "valid"
STALE = "stale"          # one of ours, but used up or too old: the client retries with stale=true
UNKNOWN = "unknown"      # not a nonce this proxy issued

MAX_NONCES = 100_000     # nonces outstanding at once; the oldest go first past this


@dataclass
class Nonce:
    created: float
    nc: int = 0
    valid: bool = True


@dataclass(frozen=True)
class NonceRules:
    max_duration: float = 30 * 60
    max_count: int = 50
    strictness: bool = False
    check_nonce_count: bool = True
    garbage_interval: float = 5 * 60


class NonceStore:
    def __init__(self, rules: NonceRules, clock: Callable[[], float]):
        self.rules = rules
        self.clock = clock
        self.nonces: dict[str, Nonce] = {}
        self.last_gc = clock()

    def new(self) -> str:
        self.collect()
        nonce = token_bytes(16).hex()
        self.nonces[nonce] = Nonce(self.clock())
        if len(self.nonces) > MAX_NONCES:
            del self.nonces[next(iter(self.nonces))]
        return nonce

    def check(self, nonce: str, nc: str | None) -> str:
        """Squid's authDigestNonceIsValid: counts one use when valid."""
        entry = self.nonces.get(nonce)
        if entry is None:
            return UNKNOWN
        if not entry.valid:
            return STALE
        try:
            count = int(nc, 16) if nc else entry.nc + 1
        except ValueError:
            count = -1
        if not self.rules.check_nonce_count:
            count = entry.nc + 1
        if (self.rules.strictness and count != entry.nc + 1) or count < entry.nc + 1:
            entry.valid = False
            return STALE
        entry.nc = count
        if self._stale(entry):
            entry.valid = False
            return STALE
        return VALID

    def is_stale(self, nonce: str) -> bool:
        entry = self.nonces.get(nonce)
        return entry is None or not entry.valid or self._stale(entry)

    def _stale(self, entry: Nonce) -> bool:
        return (entry.created + self.rules.max_duration < self.clock() or entry.nc > 99999998
                or entry.nc > self.rules.max_count)

    def collect(self) -> None:
        """Every nonce_garbage_interval: forget the nonces that can no longer be used."""
        now = self.clock()
        if now - self.last_gc < self.rules.garbage_interval:
            return
        self.last_gc = now
        for key in [k for k, e in self.nonces.items() if not e.valid or self._stale(e)]:
            del self.nonces[key]


def _md5(text: str) -> str:
    return md5(text.encode("latin-1", "replace")).hexdigest()


def ha1_from_password(user: str, realm: str, password: str) -> str:
    return _md5(f"{user}:{realm}:{password}")


def expected_response(ha1: str, creds: Digest, method: str) -> str:
    """The request-digest a client knowing HA1 sends (RFC 2617 3.2.2)."""
    if (creds.algorithm or "").upper() == "MD5-SESS":
        ha1 = _md5(f"{ha1}:{creds.nonce}:{creds.cnonce or ''}")
    ha2 = _md5(f"{method}:{creds.uri}")
    if creds.qop:
        return _md5(f"{ha1}:{creds.nonce}:{creds.nc}:{creds.cnonce}:{creds.qop}:{ha2}")
    return _md5(f"{ha1}:{creds.nonce}:{ha2}")


def response_matches(ha1: str, creds: Digest, method: str, post_workaround: bool = False) -> bool:
    if compare_digest(expected_response(ha1, creds, method), creds.response.lower()):
        return True
    # post_workaround: old browsers computed a POST's digest with GET
    return post_workaround and method != "GET" and compare_digest(
        expected_response(ha1, creds, "GET"), creds.response.lower())


def challenge(realm: str, nonce: str, stale: bool) -> str:
    return f'Digest realm="{realm}", nonce="{nonce}", qop="auth", stale={"true" if stale else "false"}'
