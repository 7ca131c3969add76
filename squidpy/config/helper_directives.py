"""Directives for helpers: authentication (auth_param, authenticate_*), external
ACLs (external_acl_type), URL rewriters (url_rewrite_*) and store IDs
(store_id_*), with Squid 5.7's syntax and defaults.  Registered in the one
directive registry (imported by squidpy/config/directives.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squidpy.acl.access import AccessList
from squidpy.auth.schemes import AuthConfig
import squidpy.config.directives  # noqa: F401  (the core directives register first)
from squidpy.config.registry import CUSTOM, Report, directive
from squidpy.config.values import parse_onoff, parse_time
from squidpy.helpers.external import parse_external_acl_type
from squidpy.helpers.protocol import ChildConfig
from squidpy.log.logformat import compile_format

if TYPE_CHECKING:
    from squidpy.config.loader import Config, ParseContext

SECTION_AUTH = "Authentication"
SECTION_EXTERNAL = "External ACL helpers"
SECTION_REWRITE = "URL rewriting and store IDs"


def _time(args: list[str], ctx: ParseContext) -> float:
    return parse_time([str(a) for a in args], "second")


def _onoff(args: list[str], ctx: ParseContext) -> bool:
    return parse_onoff([str(a) for a in args])


def _program(what: str) -> Callable[[list[str], ParseContext], list[str] | None]:
    def parse(args: list[str], ctx: ParseContext) -> list[str] | None:
        if not args or args[0] == "none":
            return None
        argv = [str(a) for a in args]
        if not os.path.exists(argv[0]):
            ctx.warn(f"{what} {argv[0]}: no such file (requests needing it will fail)")
        return argv
    return parse


def _children(args: list[str], ctx: ParseContext) -> ChildConfig:
    return ChildConfig.parse([str(a) for a in args], ctx.warn)


def _extras(args: list[str], ctx: ParseContext) -> str:
    spec = ctx.rest.strip()
    if len(spec) >= 2 and spec[0] == spec[-1] == '"':
        spec = spec[1:-1]
    if not spec:
        raise ValueError("expected a format")
    compile_format(spec)            # the same % codes as logformat; an unknown code is an error here
    return spec


def _access(name: str) -> Callable[[list[str], ParseContext], None]:
    def parse(args: list[str], ctx: ParseContext) -> None:
        getattr(ctx.config, name).add_rule(args, ctx.config.acls, ctx.where, ctx.text)
    return parse


# ---------------------------------------------------------------- authentication


def _auth_param(args: list[str], ctx: ParseContext) -> None:
    ctx.config.auth_param.parse_line([str(a) for a in args], ctx.rest, ctx.where, ctx.warn)


directive(
    "auth_param", "basic|digest|negotiate|ntlm PARAMETER VALUE ...", _auth_param, None, SECTION_AUTH,
    kind=CUSTOM, empty=AuthConfig,
    doc="""Proxy authentication through a helper program, as in Squid. Parameters:
    program PATH [ARGS] (a Squid helper such as /usr/lib/squid/basic_ncsa_auth,
    or squidpy's own squidpy-basic-htpasswd and squidpy-basic-ldap); children N
    [startup=N idle=N concurrency=N queue-size=N on-persistent-overload=ERR|die]
    (default 20); realm TEXT (Basic default: Squid proxy-caching web server;
    required for Digest); key_extras FORMAT; keep_alive on|off; utf8 on|off.
    Basic: credentialsttl TIME (2 hours: how long a checked password is trusted
    without asking the helper again), casesensitive on|off (off: user names are
    lower-cased). Digest: nonce_garbage_interval (5 minutes), nonce_max_duration
    (30 minutes), nonce_max_count (50), nonce_strictness (off),
    check_nonce_count (on), post_workaround (off). Schemes are offered to
    browsers in the order their first line appears. Credentials never reach a
    log, an error page or cache_log. See docs/auth.md.""",
)

directive(
    "authenticate_ttl", "TIME", _time, "1 hour", SECTION_AUTH,
    doc="""How long a user who sends no request is remembered (with the
    password check's result) before being forgotten.""",
)
directive(
    "authenticate_ip_ttl", "TIME", _time, "1 second", SECTION_AUTH,
    doc="""How long an address a user came from counts for max_user_ip.""",
)
directive(
    "authenticate_cache_garbage_interval", "TIME", _time, "1 hour", SECTION_AUTH,
    doc="""How often users idle for authenticate_ttl are removed from the
    authentication cache.""",
)

# ---------------------------------------------------------------- external ACLs


def _external_acl_type(args: list[str], ctx: ParseContext) -> None:
    definition = parse_external_acl_type([str(a) for a in args], ctx.where, ctx.warn)
    if definition.name in ctx.config.external_acl_type:
        raise ValueError(f"external_acl_type {definition.name} is defined twice")
    if not os.path.exists(definition.program[0]):
        ctx.warn(f"external ACL helper {definition.program[0]}: no such file (ACLs using it will fail)")
    ctx.config.external_acl_type[definition.name] = definition


directive(
    "external_acl_type",
    "NAME [ttl=N negative_ttl=N grace=N cache=N children-max=N children-startup=N children-idle=N "
    "concurrency=N queue-size=N protocol=2.5 ipv4|ipv6] FORMAT ... /path/to/helper [ARGS]",
    _external_acl_type, None, SECTION_EXTERNAL, kind=CUSTOM, empty=dict,
    doc="""Defines a helper that 'acl NAME external TYPE [ARGS]' asks. FORMAT is
    one or more % codes sent on each request line: %LOGIN (%ul, needs
    authentication), %un, %EXT_USER, %SRC (%>a), %SRCPORT, %MYADDR, %MYPORT,
    %URI, %DST, %PROTO, %PORT, %PATH, %METHOD, %>{Header} (%>ha{Header},
    %>ha{Header:member}), %<{Header}, %note{key}, %EXT_TAG, %ACL, %DATA (the
    ACL's arguments, appended at the end unless placed). Values are
    URL-escaped (protocol=2.5: shell-quoted). OK answers are cached for ttl
    seconds (3600), ERR for negative_ttl (default: ttl); in the last grace
    percent (1) of an entry's life it is used while refreshed. The helper's
    user=, tag=, message= (the error page's %o) and log= keys reach the
    transaction. children-max defaults to 5.""",
)

# ---------------------------------------------------------------- URL rewriting


@dataclass(frozen=True)
class HelperTimeout:
    seconds: float
    action: str                  # fail, bypass, retry, use_configured_response
    response: str | None = None


def _url_rewrite_timeout(args: list[str], ctx: ParseContext) -> HelperTimeout | None:
    raw = ctx.rest
    response = None
    if "response=" in raw:
        raw, _, response = raw.partition("response=")
        response = response.strip()
        if len(response) >= 2 and response[0] == response[-1] == '"':
            response = response[1:-1]
    words = raw.split()
    if not words or words[0] == "none":
        return None
    numbers = [w for w in words if "=" not in w]
    seconds = parse_time(numbers, "second")
    action = "fail"
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            continue
        if key == "on_timeout":
            if value not in ("fail", "bypass", "retry", "use_configured_response"):
                raise ValueError(f"unsupported on_timeout action: {value}")
            action = value
        else:
            raise ValueError(f"unknown url_rewrite_timeout option '{word}'")
    if action == "use_configured_response" and not response:
        raise ValueError("on_timeout=use_configured_response needs response=\"...\"")
    if response and action != "use_configured_response":
        raise ValueError("response= is only used with on_timeout=use_configured_response")
    return HelperTimeout(seconds, action, response)


directive(
    "url_rewrite_program", "PATH [ARGS]", _program("URL rewriter"), None, SECTION_REWRITE,
    doc="""A helper that may rewrite or redirect each request (squidGuard, a
    script). Each line it reads is the URL followed by url_rewrite_extras; it
    answers OK rewrite-url=URL, OK status=30x url=URL, or ERR (no change).""",
)
directive(
    "url_rewrite_children", "N [startup=N idle=N concurrency=N queue-size=N on-persistent-overload=ERR|die]",
    _children, "20 startup=0 idle=1 concurrency=0", SECTION_REWRITE,
    doc="""How many URL rewriter processes may run, and how requests are shared
    among them (as auth_param children).""",
)
directive(
    "url_rewrite_access", "allow|deny [!]ACL ...", _access("url_rewrite_access"), None, SECTION_REWRITE,
    kind=CUSTOM, empty=lambda: AccessList("url_rewrite_access", empty_allows=True),
    doc="""Which requests are sent to the URL rewriter (without any line: all).""",
)
directive(
    "url_rewrite_bypass", "on|off", _onoff, "off", SECTION_REWRITE,
    doc="""When every rewriter is busy and the queue is full, pass requests
    unchanged instead of queueing them (the queue is then 0 unless
    url_rewrite_children sets queue-size).""",
)
directive(
    "url_rewrite_extras", "\"FORMAT\"", _extras, '"%>a/%>A %un %>rm myip=%la myport=%lp"', SECTION_REWRITE,
    doc="""What follows the URL on each rewriter request line (logformat codes).""",
)
directive(
    "url_rewrite_timeout", "TIME [on_timeout=fail|bypass|retry|use_configured_response] [response=\"...\"]",
    _url_rewrite_timeout, None, SECTION_REWRITE,
    doc="""How long a request waits for the rewriter (default: forever), and
    what happens then: fail (ERR_GATEWAY_FAILURE), bypass (no change), retry,
    or use the configured response as the helper's answer.""",
)
directive(
    "url_rewrite_host_header", "on|off", _onoff, "on", SECTION_REWRITE,
    doc="""Whether a rewritten URL's host replaces the Host header.""",
)

# ---------------------------------------------------------------- store IDs

directive(
    "store_id_program", "PATH [ARGS]", _program("store ID helper"), None, SECTION_REWRITE,
    doc="""A helper that names the cache key of each request (OK store-id=KEY),
    so that mirrors of one object share one cached copy; ERR keeps the URL.""",
)
directive(
    "store_id_children", "N [startup=N idle=N concurrency=N queue-size=N on-persistent-overload=ERR|die]",
    _children, "20 startup=0 idle=1 concurrency=0", SECTION_REWRITE,
    doc="""How many store ID helper processes may run.""",
)
directive(
    "store_id_access", "allow|deny [!]ACL ...", _access("store_id_access"), None, SECTION_REWRITE,
    kind=CUSTOM, empty=lambda: AccessList("store_id_access", empty_allows=True),
    doc="""Which requests are sent to the store ID helper (without any line: all).""",
)
directive(
    "store_id_bypass", "on|off", _onoff, "on", SECTION_REWRITE,
    doc="""When every store ID helper is busy, keep the URL as the key instead
    of queueing.""",
)
directive(
    "store_id_extras", "\"FORMAT\"", _extras, '"%>a/%>A %un %>rm myip=%la myport=%lp"', SECTION_REWRITE,
    doc="""What follows the URL on each store ID request line.""",
)


def check_auth_acl_order(type_name: str, first_value: str | None, config: Config) -> None:
    """Squid reads an authentication ACL (proxy_auth, proxy_auth_regex, an external
    ACL whose type uses %LOGIN) only after an auth_param program line."""
    if config.auth_param:
        return
    needs_login = type_name in ("proxy_auth", "proxy_auth_regex")
    if type_name == "external" and first_value is not None:
        definition = config.external_acl_type.get(str(first_value))
        needs_login = definition is not None and definition.require_auth
    if needs_login:
        raise ValueError("Can't use proxy auth because no authentication schemes are fully configured "
                         "(an 'auth_param SCHEME program ...' line must come before this ACL, as in Squid)")


def finish_helper_config(config: Config, error_at: Report) -> None:
    """Checks needing the whole file: Digest's realm, external ACLs bound to their
    types, authentication ACLs only with a configured scheme."""
    for message in config.auth_param.check():
        digest = config.auth_param.schemes.get("digest")
        error_at(digest.where if digest else config.source + ":0", message)
    for acl in config.acls.acls.values():
        bind = getattr(acl.matcher, "bind", None)
        lines = config.acl_lines.get(acl.name) or [acl.where]
        if bind is not None:
            try:
                bind(config.external_acl_type, acl.name)
            except ValueError as e:
                error_at(lines[-1], f"ACL '{acl.name}': {e}")
                continue
        if getattr(acl.matcher, "needs", None) == "auth" or getattr(acl.matcher, "auth", False):
            if not config.auth_param:
                error_at(lines[0], f"ACL '{acl.name}': Cannot use proxy auth because no authentication "
                                   f"schemes are fully configured (auth_param ... program)")
