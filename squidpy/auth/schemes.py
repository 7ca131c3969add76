"""``auth_param`` as Squid 5.7 reads it (src/auth/SchemeConfig.cc and each
scheme's Config.cc), and the ``Proxy-Authenticate`` challenges it yields.

Schemes are offered in the order their first ``auth_param`` line appears, as
Squid offers them; a scheme is active once it has a ``program``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from squidpy.config.values import parse_onoff, parse_time
from squidpy.helpers.protocol import ChildConfig

SCHEMES = ("basic", "digest", "negotiate", "ntlm")
STATEFUL = frozenset({"negotiate", "ntlm"})      # the handshake is bound to one connection
DEFAULT_BASIC_REALM = "Squid proxy-caching web server"

_COMMON = ("program", "children", "realm", "key_extras", "keep_alive", "utf8")
_PARAMS = {
    "basic": _COMMON + ("credentialsttl", "casesensitive"),
    "digest": _COMMON + ("nonce_garbage_interval", "nonce_max_duration", "nonce_max_count",
                         "nonce_strictness", "check_nonce_count", "post_workaround"),
    "negotiate": _COMMON,
    "ntlm": _COMMON,
}


@dataclass
class SchemeConfig:
    scheme: str
    program: list[str] | None = None
    children: ChildConfig = field(default_factory=lambda: ChildConfig.parse(["20"]))
    realm: str | None = None
    key_extras: str | None = None
    keep_alive: bool = True
    utf8: bool = False
    credentialsttl: float = 2 * 60 * 60
    casesensitive: bool = False
    nonce_garbage_interval: float = 5 * 60
    nonce_max_duration: float = 30 * 60
    nonce_max_count: int = 50
    nonce_strictness: bool = False
    check_nonce_count: bool = True
    post_workaround: bool = False
    where: str = ""

    @property
    def active(self) -> bool:
        return self.program is not None

    @property
    def stateful(self) -> bool:
        return self.scheme in STATEFUL

    def effective_realm(self) -> str:
        if self.realm is not None:
            return self.realm
        return DEFAULT_BASIC_REALM if self.scheme == "basic" else ""


class AuthConfig:
    """Every ``auth_param`` line, by scheme, in the order Squid offers them."""

    def __init__(self) -> None:
        self.schemes: dict[str, SchemeConfig] = {}

    def active(self) -> list[SchemeConfig]:
        return [s for s in self.schemes.values() if s.active]

    def get(self, scheme: str) -> SchemeConfig | None:
        s = self.schemes.get(scheme)
        return s if s is not None and s.active else None

    def __bool__(self) -> bool:
        return bool(self.active())

    def parse_line(self, args: list[str], rest: str, where: str, warn: Callable[[str], None]) -> None:
        """``auth_param SCHEME PARAMETER VALUE ...``; ``rest`` is the raw text after
        the directive name (realm keeps its spaces)."""
        if len(args) < 2:
            raise ValueError("expected: auth_param basic|digest|negotiate|ntlm PARAMETER VALUE ...")
        scheme, param, values = args[0].lower(), args[1], args[2:]
        if scheme not in SCHEMES:
            raise ValueError(f"unknown authentication scheme '{args[0]}' (basic, digest, negotiate, ntlm)")
        config = self.schemes.get(scheme)
        if config is None:
            config = self.schemes[scheme] = SchemeConfig(scheme, where=where)
        if param not in _PARAMS[scheme]:
            warn(f"unrecognised {scheme} auth scheme parameter '{param}'")
            return
        if param == "program":
            if not values:
                raise ValueError(f"auth_param {scheme} program: expected the helper's path")
            if not os.path.exists(values[0]):
                raise ValueError(f"authentication helper program {values[0]}: no such file")
            config.program = [str(v) for v in values]
            config.where = where
        elif param == "children":
            config.children = ChildConfig.parse([str(v) for v in values], warn)
            if scheme in STATEFUL and config.children.concurrency:
                raise ValueError(f"concurrency= is not supported for {scheme} helpers")
        elif param == "realm":
            realm = _rest_after(rest, 2).strip()
            if len(realm) >= 2 and realm[0] == realm[-1] == '"':
                realm = realm[1:-1]
            if not realm:
                raise ValueError(f"missing auth_param {scheme} realm")
            if '"' in realm or "\\" in realm:
                raise ValueError("a realm may not contain '\"' or '\\'")
            config.realm = realm
        elif param == "key_extras":
            if not values:
                raise ValueError("key_extras: expected a format")
            from squidpy.log.logformat import compile_format
            spec = _rest_after(rest, 2).strip()     # Squid reads one quoted token: the quotes are not the format's
            if len(spec) >= 2 and spec[0] == spec[-1] == '"':
                spec = spec[1:-1]
            compile_format(spec)                    # the logformat codes: an unknown one is an error here
            config.key_extras = spec
        elif param in ("keep_alive", "utf8", "casesensitive", "nonce_strictness", "check_nonce_count",
                       "post_workaround"):
            setattr(config, param, parse_onoff([str(v) for v in values]))
        elif param in ("credentialsttl", "nonce_garbage_interval", "nonce_max_duration"):
            setattr(config, param, parse_time([str(v) for v in values], "second"))
        elif param == "nonce_max_count":
            if len(values) != 1 or not str(values[0]).isdigit():
                raise ValueError("nonce_max_count: expected a number")
            config.nonce_max_count = int(values[0])

    def check(self) -> list[str]:
        """Errors that need every line: digest needs a realm."""
        errors = []
        digest = self.schemes.get("digest")
        if digest is not None and digest.active and not digest.realm:
            errors.append("auth_param digest realm is required (Squid has no default for it)")
        return errors


def _rest_after(rest: str, words: int) -> str:
    text = rest.strip()
    for _ in range(words):
        parts = text.split(None, 1)
        text = parts[1] if len(parts) > 1 else ""
    return text


# ---------------------------------------------------------------- challenges


def basic_challenge(config: SchemeConfig) -> str:
    realm = config.effective_realm()
    if config.utf8:
        return f'Basic realm="{realm}", charset="UTF-8"'
    return f'Basic realm="{realm}"'


def challenges(auth: AuthConfig, new_nonce: Callable[[], str], handshake: dict[str, str] | None = None,
               stale_digest: bool = False, digest_nonce: str | None = None) -> list[str]:
    """The ``Proxy-Authenticate`` values of a 407, one per active scheme, in order.
    ``new_nonce()`` makes a Digest nonce; ``handshake`` maps a connection-oriented
    scheme to the token its helper answered (``TT``), sent in that scheme's challenge."""
    from squidpy.auth.digest import challenge as digest_challenge
    values = []
    for config in auth.active():
        scheme = config.scheme
        if scheme == "basic":
            values.append(basic_challenge(config))
        elif scheme == "digest":
            nonce = digest_nonce if stale_digest and digest_nonce else new_nonce()
            values.append(digest_challenge(config.realm or "", nonce, stale_digest))
        else:
            word = "Negotiate" if scheme == "negotiate" else "NTLM"
            token = (handshake or {}).get(scheme)
            values.append(f"{word} {token}" if token else word)
    return values
