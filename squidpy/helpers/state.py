"""What exchanges read about helpers, from memory (pure).

:class:`HelperState` holds what one configuration's helpers need between
requests: the :class:`~squidpy.auth.decide.Authenticator` with its user cache
and Digest nonces, each ``external_acl_type``'s result cache, the compiled
``url_rewrite_extras``/``store_id_extras``, and a way to ask whether one more
request would overload a helper (``url_rewrite_bypass``, ``store_id_bypass``,
a full external ACL queue).  The running proxy builds one per configuration
(:mod:`squidpy.helpers.running` carries out the lookups); transcript tests
build one with a fixed clock.  It is ``None`` on the shared state when the
configuration uses no helper, so requests then pay nothing for it.

Helpers are named as exchanges ask them: the scheme (``basic``, ``digest``,
``negotiate``, ``ntlm``), ``external:NAME``, ``url_rewrite``, ``store_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from squidpy.auth.cache import UserCache
from squidpy.auth.decide import Authenticator
from squidpy.helpers.external import ExternalCache
from squidpy.log.logformat import compile_format

if TYPE_CHECKING:
    from squidpy.auth.schemes import SchemeConfig
    from squidpy.config.loader import Config
    from squidpy.log.entry import LogEntry

URL_REWRITE = "url_rewrite"
STORE_ID = "store_id"
EXTERNAL = "external:"
MAX_REQUEST_LINE = 8192       # Squid's MAX_REDIRECTOR_REQUEST_STRLEN: a longer rewriter line is refused


def external_helper(type_name: str) -> str:
    return EXTERNAL + type_name


def uses_helpers(config: Config) -> bool:
    """Whether requests under ``config`` may need a helper at all."""
    return bool(config.auth_param or config.external_acl_type or config.url_rewrite_program is not None
                or config.store_id_program is not None)


class HelperState:
    def __init__(self, config: Config, clock: Callable[[], float],
                 will_overload: Callable[[str], bool] | None = None, previous: "HelperState | None" = None):
        self.clock = clock
        self._will_overload = will_overload or (lambda helper: False)
        self.auth: Authenticator | None = None
        self.stateful: tuple[SchemeConfig, ...] = ()
        if config.auth_param:
            # the users already checked stay known across a reconfigure, as in Squid
            users = previous.auth.cache if previous is not None and previous.auth is not None else None
            if users is None:
                users = UserCache(clock)
            users.authenticate_ttl = config.authenticate_ttl
            users.ip_ttl = config.authenticate_ip_ttl
            users.garbage_interval = config.authenticate_cache_garbage_interval
            self.auth = Authenticator(config.auth_param, users, clock)
            self.stateful = tuple(s for s in config.auth_param.active() if s.stateful)
        # facts only some configurations need: the user's addresses (max_user_ip), the
        # browser's language (auth_param basic utf8 reads CP1251 for Cyrillic ones)
        self.counts_addresses = any(acl.type_name == "max_user_ip" for acl in config.acls.acls.values())
        basic = config.auth_param.get("basic")
        self.reads_language = basic is not None and basic.utf8
        self.key_extras = {scheme.scheme: compile_format(scheme.key_extras)
                           for scheme in config.auth_param.active() if scheme.key_extras}
        self.external = {name: ExternalCache(definition) for name, definition in config.external_acl_type.items()}
        self.rewriter = config.url_rewrite_program is not None
        self.store_ids = config.store_id_program is not None
        self.callouts = self.rewriter or self.store_ids        # asked after http_access allows
        self.rewrite_extras = compile_format(config.url_rewrite_extras) if self.rewriter else None
        self.store_id_extras = compile_format(config.store_id_extras) if self.store_ids else None
        self.refreshing: set[tuple[str, str]] = set()          # external lookups refreshed in the background

    def key_extras_of(self, entry: LogEntry) -> Callable[[str], str | None] | None:
        """``auth_param SCHEME key_extras``, formatted for the request ``entry`` logs."""
        if not self.key_extras:
            return None
        formats = self.key_extras
        return lambda scheme: formats[scheme].format(entry) if scheme in formats else None

    def will_overload(self, helper: str) -> bool:
        return self._will_overload(helper)

    def close_on_first_challenge(self) -> bool:
        """``auth_param negotiate|ntlm keep_alive off``: the 407 that offers the schemes
        closes the connection (for browsers that cannot resend a body on the same one)."""
        return any(not s.keep_alive for s in self.stateful)

    # ------------------------------------------------------------ external ACL background refresh
    def start_refresh(self, type_name: str, line: str) -> bool:
        """A grace-period refresh of ``line``: False when one is already under way."""
        key = (type_name, line)
        if key in self.refreshing:
            return False
        self.refreshing.add(key)
        return True

    def refreshed(self, type_name: str, line: str, result: str, notes: list[tuple[str, str]]) -> None:
        """The helper answered a background refresh: its answer replaces the cached one
        (a failed helper's answer is not kept, the old one stays until it expires)."""
        self.refreshing.discard((type_name, line))
        cache = self.external.get(type_name)
        if cache is not None:
            cache.store(line, result, notes, self.clock())
