"""What one request's credentials mean, as pure decisions.

:class:`Authenticator` turns a ``Proxy-Authorization`` value into an
:class:`Outcome`: no credentials, malformed (407 again, never 500), known good
(from the cache, no helper), known bad, or "ask the helper this line".  The
helper's answer comes back through :meth:`Authenticator.answered`.  The
exchange turns ``ask`` into a helper lookup command (``AskHelper``) and
the others into its verdicts; :func:`denial` says which status and page a
denied request gets, as Squid's clientAccessCheckDone decides.

Connection-oriented schemes (Negotiate, NTLM) keep their state in a
:class:`ConnectionAuth` that lives as long as the client connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from squidpy.auth import credentials as cred
from squidpy.auth.cache import FAILED, OK, UNCHECKED, CachedUser, UserCache, secret_digest
from squidpy.auth.digest import STALE, UNKNOWN, VALID, NonceRules, NonceStore, response_matches
from squidpy.auth.schemes import AuthConfig, SchemeConfig, challenges
from squidpy.helpers.protocol import escape

KeyExtras = Callable[[str], "str | None"]
"""A scheme's ``key_extras`` for the request being checked (None: it has none)."""

NONE = "none"             # no credentials: challenge
MALFORMED = "malformed"   # unreadable credentials: challenge again
ASK = "ask"               # send ``line`` to the scheme's helper, then call answered()
HANDSHAKE = "handshake"   # Negotiate/NTLM: 407 carrying the helper's token, same connection
DONE = "ok"               # authenticated as ``user``
REFUSED = "failed"        # wrong credentials (or the helper could not check them)
ENCAPSULATED = "encapsulated"   # inside a bumped connection whose CONNECT was not authenticated:
                                # Squid authenticates no request there, authentication ACLs do not match


@dataclass
class Outcome:
    kind: str
    scheme: str | None = None
    user: str | None = None
    line: str | None = None              # for ASK: the helper request line
    message: str | None = None           # why it failed (shown on the error page as %m)
    notes: list[tuple[str, str]] = field(default_factory=list)
    entry: CachedUser | None = None
    stale: bool = False                  # Digest: the nonce is used up, say stale=true
    token: str | None = None             # HANDSHAKE: what goes in the challenge
    close: bool = False                  # close the connection after the 407 (failed handshake)
    credentials: cred.Basic | cred.Digest | cred.Token | None = field(default=None, repr=False)   # for ASK
    extras: str | None = None            # auth_param key_extras, as formatted for this request
    header: bytes | None = field(default=None, repr=False)   # Basic: keyed hash of the header value

    def __str__(self) -> str:
        return f"user {self.user}" if self.kind == DONE else f"{self.kind} ({self.message or 'no credentials'})"


@dataclass
class ConnectionAuth:
    """Negotiate/NTLM state of one client connection."""
    scheme: str | None = None
    child: int | None = None             # the helper child reserved for the handshake
    user: str | None = None              # set once the handshake succeeded
    notes: list[tuple[str, str]] = field(default_factory=list)
    last_header: str | None = field(default=None, repr=False)   # the credentials that finished it
    entry: CachedUser | None = None      # the user's cache entry (max_user_ip)
    # Basic: the last Proxy-Authorization value this connection sent and its cache key, so a
    # browser's next request on it costs a comparison and a dict probe, not a keyed hash
    # (the two are set together: the key is read only once the value matched)
    basic_value: str | bytes | None = field(default=None, repr=False)
    basic_key: bytes = field(default=b"", repr=False)


class Authenticator:
    def __init__(self, config: AuthConfig, cache: UserCache, clock: Callable[[], float]) -> None:
        self.config = config
        self.cache = cache
        self.basic = config.get("basic")
        digest = config.get("digest")
        self.nonces = NonceStore(NonceRules(digest.nonce_max_duration, digest.nonce_max_count,
                                            digest.nonce_strictness, digest.check_nonce_count,
                                            digest.nonce_garbage_interval), clock) if digest else None

    # ------------------------------------------------------------ reading credentials

    def examine(self, value: str | bytes | None, method: str = "GET", accept_language: str | None = None,
                conn: ConnectionAuth | None = None, extras: KeyExtras | None = None) -> Outcome:
        """``extras(scheme)``: that scheme's ``key_extras`` for this request (or None):
        appended to the helper's line, and part of the key users are cached under, so
        one user seen with other extras is checked again (Squid's userKey)."""
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        known = self.known(value, conn, extras)
        if known is not None:
            return known
        if value is None:
            return Outcome(NONE)
        basic = self.basic
        header = None
        if basic is not None and value[:6].lower() == "basic ":
            header = self._header_key(value, basic, extras)
        try:
            creds = cred.parse(value, casesensitive=basic.casesensitive if basic else False,
                               utf8=basic.utf8 if basic else False, accept_language=accept_language)
        except cred.Malformed as e:
            return Outcome(MALFORMED, message=str(e))
        scheme_config = self.config.get(creds.scheme)
        if scheme_config is None:
            return Outcome(MALFORMED, message=f"the {creds.scheme} scheme is not configured")
        more = extras(creds.scheme) if extras is not None and scheme_config.key_extras else None
        if isinstance(creds, cred.Basic):
            outcome = self._basic(creds, scheme_config, more)
            outcome.header = header
            return outcome
        if isinstance(creds, cred.Digest):
            return self._digest(creds, scheme_config, method, more)
        outcome = self._token(creds, conn, more)
        if conn is not None:
            conn.last_header = value
        return outcome

    def known(self, value: str | bytes | None, conn: ConnectionAuth | None = None,
              extras: KeyExtras | None = None) -> Outcome | None:
        """The outcome of credentials already known good, without parsing them or asking
        a helper (the warm path, one dict probe): a logged-in Negotiate/NTLM connection,
        or a Basic ``Proxy-Authorization`` value accepted within credentialsttl.  None:
        :meth:`examine` decides."""
        basic = self.basic
        if conn is not None and value is not None and value == conn.basic_value and basic is not None:
            # the common case: a browser sends the header it logged in with again, on the same connection
            entry = self.cache.known_header(conn.basic_key, basic.credentialsttl)
            return entry.accepted if entry is not None else None
        raw = value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if conn is not None and conn.user is not None and (value is None or value == conn.last_header):
            # an authenticated connection: later requests need no credentials (Squid
            # takes the same header again as the same login)
            return Outcome(DONE, conn.scheme, conn.user, notes=conn.notes, entry=conn.entry)
        if value is None or basic is None or value[:6].lower() != "basic ":
            return None
        key = self._header_key(value, basic, extras)
        if conn is not None and not basic.key_extras:    # with key_extras the key is per request
            conn.basic_value, conn.basic_key = raw, key
        entry = self.cache.known_header(key, basic.credentialsttl)
        return entry.accepted if entry is not None else None

    @staticmethod
    def _header_key(value: str, basic: SchemeConfig, extras: KeyExtras | None) -> bytes:
        """What a Basic header value is cached under: its keyed hash, with the request's
        key_extras when the scheme has them."""
        more = extras("basic") if extras is not None and basic.key_extras else None
        return secret_digest(f"{value}\0{more}" if more else value)

    def _basic(self, creds: cred.Basic, config: SchemeConfig, extras: str | None = None) -> Outcome:
        key = _key(creds.user, extras)
        state, entry = self.cache.basic(key, creds.password, config.credentialsttl)
        if state == OK:
            return Outcome(DONE, "basic", creds.user, notes=entry.notes, entry=entry)
        if state == FAILED:
            return Outcome(REFUSED, "basic", creds.user, message="Incorrect password", entry=entry)
        line = _line(f"{escape(creds.user)} {escape(creds.password)}", extras)
        return Outcome(ASK, "basic", creds.user, line=line, entry=entry, credentials=creds, extras=extras)

    def _digest(self, creds: cred.Digest, config: SchemeConfig, method: str, extras: str | None = None) -> Outcome:
        if creds.realm != config.realm:
            return Outcome(MALFORMED, "digest", message="the Digest realm is not ours")
        entry = self.cache.digest_user(creds.user, _key(creds.realm, extras))
        if entry.state != OK or entry.ha1 is None:
            return self._ask_ha1(creds, config, entry, extras)
        if not response_matches(entry.ha1, creds, method, config.post_workaround):
            if entry.requeried_for != creds.response:
                return self._ask_ha1(creds, config, entry, extras)     # the password may have changed
            return Outcome(REFUSED, "digest", creds.user, message="Incorrect password", entry=entry)
        nonces = self.nonces
        assert nonces is not None, "a Digest scheme is configured: so are its nonces"
        state = nonces.check(creds.nonce, creds.nc)
        if state == UNKNOWN:
            return Outcome(REFUSED, "digest", creds.user, message="not a nonce this proxy issued", entry=entry)
        if state == STALE:
            return Outcome(REFUSED, "digest", creds.user, stale=True, entry=entry,
                           message="the nonce is stale")
        return Outcome(DONE, "digest", creds.user, notes=entry.notes, entry=entry)

    def _ask_ha1(self, creds: cred.Digest, config: SchemeConfig, entry: CachedUser,
                 extras: str | None = None) -> Outcome:
        user = creds.user
        if config.utf8:
            user = cred.to_utf8(user.encode("latin-1", "replace"), None).decode("utf-8")
        line = _line(f'"{user}":"{creds.realm}"', extras)
        return Outcome(ASK, "digest", creds.user, line=line, entry=entry, credentials=creds, extras=extras)

    def _token(self, creds: cred.Token, conn: ConnectionAuth | None, extras: str | None = None) -> Outcome:
        if conn is None:
            return Outcome(MALFORMED, creds.scheme, message=f"{creds.scheme} needs a persistent connection")
        if conn.user is not None and conn.scheme == creds.scheme:
            # a new handshake on an authenticated connection starts over
            conn.user, conn.notes = None, []
        first = conn.scheme != creds.scheme or conn.child is None
        conn.scheme = creds.scheme
        return Outcome(ASK, creds.scheme, line=_line(f"{'YR' if first else 'KK'} {creds.token}", extras),
                       credentials=creds, extras=extras)

    # ------------------------------------------------------------ the helper's answer

    def answered(self, outcome: Outcome, result: str, notes: list[tuple[str, str]], method: str = "GET",
                 conn: ConnectionAuth | None = None, child: int | None = None) -> Outcome:
        """Turn the helper's reply to ``outcome.line`` into the final outcome."""
        creds = outcome.credentials
        message = next((v for k, v in notes if k == "message"), None)
        if isinstance(creds, cred.Basic):
            entry = self.cache.record_basic(_key(creds.user, outcome.extras), creds.password, result, notes)
            if result == "OK":
                accepted = Outcome(DONE, "basic", creds.user, notes=list(notes), entry=entry)
                if outcome.header is not None:
                    self.cache.remember_header(entry, outcome.header, accepted)
                return accepted
            return Outcome(REFUSED, "basic", creds.user, entry=entry,
                           message=message or ("Incorrect password" if result == "ERR" else
                                               "the authentication helper could not check the password"))
        if isinstance(creds, cred.Digest):
            ha1 = next((v for k, v in notes if k == "ha1"), None) if result == "OK" else None
            entry = self.cache.record_ha1(creds.user, _key(creds.realm, outcome.extras), ha1,
                                          [(k, v) for k, v in notes if k != "ha1"])
            if ha1 is None:
                return Outcome(REFUSED, "digest", creds.user, entry=entry, message=message or "Incorrect password")
            entry.requeried_for = creds.response
            digest = self.config.get("digest")
            assert digest is not None, "the helper was asked for a Digest user: the scheme is configured"
            return self._digest(creds, digest, method, outcome.extras)
        # Negotiate / NTLM (their ASK outcomes carry the token)
        assert conn is not None and creds is not None
        scheme = creds.scheme
        conn.child = child
        if result == "TT":
            token = next((v for k, v in notes if k == "token"), None)
            return Outcome(HANDSHAKE, scheme, token=token)
        if result == "OK":
            user = next((v for k, v in notes if k == "user"), None)
            if not user:
                conn.child = None
                return Outcome(REFUSED, scheme, message="the helper named no user", close=True)
            conn.user, conn.notes = user, [(k, v) for k, v in notes if k != "token"]
            conn.child = None                    # the handshake is over: the child is released
            token = next((v for k, v in notes if k == "token"), None)
            conn.entry = self.cache.authenticated(scheme, user, conn.notes)
            return Outcome(DONE, scheme, user, notes=conn.notes, token=token, entry=conn.entry)
        conn.child, conn.scheme = None, None
        return Outcome(REFUSED, scheme, message=message or "authentication failed", close=True)

    # ------------------------------------------------------------ the 407

    def challenge(self, outcome: Outcome | None = None) -> list[str]:
        """Proxy-Authenticate values for a 407 after ``outcome``."""
        handshake = None
        if outcome is not None and outcome.kind == HANDSHAKE and outcome.token:
            return [f"{'Negotiate' if outcome.scheme == 'negotiate' else 'NTLM'} {outcome.token}"]
        stale = outcome is not None and outcome.stale
        creds = outcome.credentials if outcome is not None else None
        nonce = creds.nonce if stale and isinstance(creds, cred.Digest) else None
        return challenges(self.config, self.nonces.new if self.nonces else (lambda: ""), handshake,
                          stale_digest=stale, digest_nonce=nonce)


def _key(name: str, extras: str | None) -> str:
    return f"{name} {extras}" if extras else name


def _line(line: str, extras: str | None) -> str:
    return f"{line} {extras}" if extras else line


AUTH_ACL_TYPES = frozenset({"proxy_auth", "proxy_auth_regex"})


def inherited(connect: Outcome | None) -> Outcome:
    """What a request inside a bumped connection is authenticated as (Squid 5.7's
    AuthenticateAcl for an SslBumped request): the CONNECT's user when the CONNECT was
    authenticated, with no helper asked again and its own Proxy-Authorization ignored;
    else nobody, and authentication ACLs do not match (never a 407 inside TLS)."""
    if connect is not None and connect.kind == DONE:
        return connect
    return Outcome(ENCAPSULATED, message="the CONNECT of this bumped connection was not authenticated")


def denial(auth_required: bool, last_acl_is_auth: bool, deny_page: str | None,
           ssl_bumped: bool = False) -> tuple[int, str]:
    """(status, error page) of a denied request (Squid's clientAccessCheckDone):
    a challenge (407, ERR_CACHE_ACCESS_DENIED) when credentials are needed or the
    ACL that decided is an authentication ACL, else 403 ERR_ACCESS_DENIED;
    a deny_info page replaces the page, never the status."""
    if auth_required or last_acl_is_auth:
        return (403 if ssl_bumped else 407), deny_page or "ERR_CACHE_ACCESS_DENIED"
    return 403, deny_page or "ERR_ACCESS_DENIED"


__all__ = ["ASK", "DONE", "ENCAPSULATED", "HANDSHAKE", "MALFORMED", "NONE", "REFUSED", "UNCHECKED", "VALID",
           "Authenticator", "ConnectionAuth", "Outcome", "denial", "inherited"]
