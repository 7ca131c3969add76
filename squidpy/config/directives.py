"""Every squid.conf directive squidpy understands, registered in one place.

Read top to bottom this is also the reference: ``squidpy/config/reference.py``
renders it into ``docs/reference.md``.  Defaults are written as configuration
text and parsed by the same code as the admin's lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squidpy.acl.access import AccessList, AccessRule, acl_key
from squidpy.acl.types import ACL_TYPES, NOT_IMPLEMENTED, RENAMED, AclType
from squidpy.config.reader import QUOTED, ConfigError, Words, read_word_file
from squidpy.config.registry import APPEND, COMPAT_DOC, CUSTOM, Report, did_you_mean, directive
from squidpy.config.settings import PacDirect
from squidpy.config.values import (
    ListenAddress,
    parse_http_port,
    parse_int,
    parse_ip,
    parse_onoff,
    parse_port_number,
    parse_size,
    take_size,
    take_time,
)
from squidpy.http.rules import HeaderRules
from squidpy.http.upgrade import UpgradeRules
from squidpy.log.destination import Destination, parse_destination
from squidpy.log.logformat import PREDEFINED_FORMATS, compile_format

if TYPE_CHECKING:
    from squidpy.acl.outgoing import OutgoingAddress
    from squidpy.cache.refresh import RefreshPattern
    from squidpy.config.loader import Config, ParseContext
    from squidpy.mgr.request import CacheMgrPasswd


def _time(default_unit: str) -> Callable[[list[str], ParseContext], float]:
    def parse(args: list[str], ctx: ParseContext) -> float:
        value, rest = take_time(args, default_unit, ctx.warn)
        ctx.ignore_extra(rest)
        return value
    return parse


def _size(default_unit: str = "bytes", none: int | None = None) -> Callable[[list[str], ParseContext], int]:
    """A size; a bare number is in ``default_unit`` (bytes for every Squid size
    directive but a few); ``none``/``-1`` mean ``none`` (refused when None)."""
    def parse(args: list[str], ctx: ParseContext) -> int:
        value, rest = take_size(args, default_unit, ctx.warn)
        ctx.ignore_extra(rest)
        if value == -1:
            if none is None:
                raise ValueError("'none' (or -1) is not a value squidpy takes here")
            return none
        return value
    return parse


def _int(minimum: int = 0, maximum: int | None = None,
         warn_extra: bool = True) -> Callable[[list[str], ParseContext], int]:
    """A number; ``warn_extra=False``: words after it are ignored without a warning."""
    def parse(args: list[str], ctx: ParseContext) -> int:
        if warn_extra:
            ctx.ignore_extra(args[1:])
        return parse_int(args, minimum, maximum)
    return parse


def _onoff(args: list[str], ctx: ParseContext) -> bool:
    if args and args[0] in ("enable", "disable"):
        ctx.warn(f"'{args[0]}' is deprecated: write '{'on' if args[0] == 'enable' else 'off'}'")
    ctx.ignore_extra(args[1:])
    return parse_onoff(args)


def _word(args: list[str], ctx: ParseContext) -> str:
    if not args:
        raise ValueError("expected one value")
    ctx.ignore_extra(args[1:])
    return args[0]


def _choice(*choices: str) -> Callable[[list[str], ParseContext], str]:
    def parse(args: list[str], ctx: ParseContext) -> str:
        if not args or args[0] not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        ctx.ignore_extra(args[1:])
        return args[0]
    return parse


def _path(args: list[str], ctx: ParseContext) -> str:
    return ctx.path(_word(args, ctx))


def _directory(args: list[str], ctx: ParseContext) -> str:
    return ctx.directory(_word(args, ctx))


def _rest_of_line(args: list[str], ctx: ParseContext) -> str:
    return ctx.rest.strip()


def _path_or_none(args: list[str], ctx: ParseContext) -> str | None:
    value = _word(args, ctx)
    return None if value == "none" else ctx.path(value)


# ---------------------------------------------------------------- network

def _http_port(args: list[str], ctx: ParseContext) -> ListenAddress:
    return parse_http_port(args, ctx.warn, ctx.path, where=ctx.where)


directive(
    "http_port", "[ADDRESS:]PORT [intercept|tproxy] [name=NAME] [require-proxy-header] "
    "[ssl-bump tls-cert=CA.pem [tls-key=FILE] [TLS options]]",
    _http_port,
    "3128", "Network", kind=APPEND,
    doc="""Where squidpy listens for browsers. A bare port listens on every IPv4
    and IPv6 address; write 127.0.0.1:3128 or [::1]:3128 to listen on one.
    Several lines open several ports. name=NAME gives the port a name for the
    myportname ACL. require-proxy-header: every connection must start with a
    PROXY protocol header (version 1 or 2, from a load balancer such as
    HAProxy) whose client address then stands for the connection's in ACLs,
    logs and limits; see proxy_protocol_access. Port 0 (a squidpy extension)
    picks a free port and logs it in cache_log. ssl-bump makes the port able to
    bump CONNECTs (see ssl_bump): tls-cert= names the CA that signs the
    certificates squidpy mints (with its key in the same file, or in tls-key=),
    generate-host-certificates=off uses that certificate as it is,
    dynamic_cert_mem_cache_size= bounds the memory minted certificates take (4
    MB), and Squid's other TLS options (tls-min-version=, tls-options=,
    tls-cipher=, tls-dh= ...) apply to the client side. intercept (or its old
    name transparent) makes a port for traffic a gateway redirects to it
    (nftables/iptables REDIRECT or DNAT): the original destination is read from
    the connection (SO_ORIGINAL_DST), origin-form requests become
    http://HOST/path from their Host header, and the Host header is verified
    against that destination (host_verify_strict). tproxy is the same for Linux
    TPROXY: the port listens with IP_TRANSPARENT and connections to origins
    carry the client's address (spoof_client_ip). An interception port is for
    redirected traffic only: keep a plain port for browsers, the cache manager
    and the proxy's own pages. See docs/intercept.md.""",
)

directive(
    "visible_hostname", "HOSTNAME", _word, "${hostname}", "Network",
    doc="""The name squidpy calls itself in Via headers, error pages and
    X-Cache headers. It must be unique among chained proxies: a request whose
    Via already carries it is a forwarding loop and is refused.""",
)

directive(
    "workers", "N", _int(1, 64), "1", "Network",
    doc="""How many squidpy processes serve the http_ports. With more than one,
    a master process starts N kids that share each port (SO_REUSEPORT), the
    cache_dir and the log files, passes signals on to them, and restarts a
    kid that dies. Changing it needs a restart.""",
)

directive(
    "configuration_includes_quoted_values", "on|off", _onoff, "off", "Network",
    doc="""With on, the lines that follow may hold "quoted values" (with \\
    escapes) and parameters("FILE") (the words of FILE in place), and bare
    words may only hold letters, digits and .,()-=_/:+ (so '!acl' must be
    quoted); a word in quotes is then a value, not a file of values, and
    regular expressions cannot be read. Turn it off again after the lines
    that need it. As in Squid.""",
)


def _user_or_none(args: list[str], ctx: ParseContext) -> str | None:
    value = _word(args, ctx)
    return None if value == "none" else value


directive(
    "cache_effective_user", "USER|none", _user_or_none, "none", "Network",
    doc="""The user squidpy becomes when it is started as root, once its
    http_ports are bound (as Squid does; it keeps only the right to bind ports
    below 1024, for a reconfigure). While still root it creates the
    directories it needs (logs, pid file, cache_dir) owned by that user and
    hands its log files to it; directories that already exist must be
    writable by the user. none (squidpy's default; Squid's is the user it was
    built with): stay who started it. Ignored when not started as root, as
    under systemd with User=. Changing it needs a restart.""",
)

directive(
    "cache_effective_group", "GROUP|none", _user_or_none, "none", "Network",
    doc="""The group squidpy becomes with cache_effective_user (none: that
    user's primary group). Changing it needs a restart.""",
)



def _outgoing_address(args: list[str], ctx: ParseContext) -> OutgoingAddress:
    from squidpy.acl.outgoing import OutgoingAddress
    if not args:
        raise ValueError("expected: tcp_outgoing_address ADDRESS [[!]ACL ...]")
    word = args[0]
    if word == "any_addr":
        address, version = None, 6
    elif word in ("no_addr", "full_mask"):
        raise ValueError(f"'{word}' is an address no connection can be made from")
    else:
        try:
            address = parse_ip(word)
        except ValueError:
            raise ValueError(f"'{word}' is not an IP address (squidpy does not resolve host names here)") from None
        version = 6 if ":" in address else 4
    rule = None
    if args[1:]:
        holder = AccessList("tcp_outgoing_address")
        rule = holder.add_rule(["allow", *args[1:]], ctx.config.acls, ctx.where, ctx.text, warn=ctx.warn)
    return OutgoingAddress(address, version, rule, ctx.where)


directive(
    "tcp_outgoing_address", "ADDRESS [[!]ACL ...]", _outgoing_address, None, "Network", kind=APPEND,
    doc="""The local address connections to origins, to cache_peer peers and to
    an intercepted request's original destination are made from. Lines are
    tried in order for each address connected to: a line applies only to
    addresses of its own IP version (an IPv4 ADDRESS to IPv4 origins), and the
    first whose ACLs all match decides (no ACL: always); no line: the system
    chooses. dst ACLs here test the address being connected to (a peer's, or the
    origin's, whose name is looked up first if need be); a tproxy request that
    connects from the client's address (spoof_client_ip) ignores it; other ACLs that need a lookup
    do not match, as in Squid. Idle connections are reused only for requests
    that would be sent from the same address. any_addr: the system chooses.
    The address must be one of this machine's, or connecting fails
    (ERR_CONNECT_FAIL).""",
)
directive("client_persistent_connections", "on|off", _onoff, "on", "Network",
          doc="""With off, every reply to a client says Connection: close and the
          connection is closed after it.""")
directive("server_persistent_connections", "on|off", _onoff, "on", "Network",
          doc="""With off, every request to an origin says Connection: close and the
          connection is closed after the reply, never reused.""")
directive("persistent_connection_after_error", "on|off", _onoff, "on", "Network",
          doc="""With off, a client's connection is closed after any reply with a
          status of 400 or more (the origin's or squidpy's own).""")
directive("half_closed_clients", "on|off", _onoff, "off", "Network",
          doc="""What a client that closes its sending side (EOF) while its request
          body is still being read gets. off (Squid's default): the connection is
          closed at once and the request given up. on: squidpy goes on reading
          until the request's read_timeout, as it would for a client that merely
          stalls. Either way, requests read completely before the EOF are
          answered, then the connection is closed.""")
def _hostname_aliases(args: list[str], ctx: ParseContext) -> list[str]:
    if not args:
        raise ValueError("expected one or more host names")
    return [a.lower().rstrip(".") for a in args]


directive(
    "hostname_aliases", "NAME ...", _hostname_aliases, None, "Network", kind=APPEND,
    doc="""Other names of this proxy: a request for http://NAME:PORT/squid-internal-...
    (PORT: the first http_port) is for the proxy itself, like one naming
    visible_hostname, and is answered here instead of being forwarded.""",
)

# ---------------------------------------------------------------- access control


def _acl_options(words: Words, cls: type[AclType]) -> tuple[list[str], list[str]]:
    """Squid's ACL options: the words before the values that start with '-' or '+'
    (``-n``, ``-m=;``, ``--`` ends them).  Returns (options, flags the values
    carry: a regular expression's leading -i/+i)."""
    options: list[str] = []
    carried: list[str] = []
    while (word := words.peek(cls.regex_values)) is not None and word[:1] in ("-", "+"):
        words.next(cls.regex_values)
        if word == "--":
            break
        if len(word) < 2:
            raise ValueError(f"truncated ACL option: {word}")
        name, eq, value = word.partition("=")
        if name[:2] == "--" or len(name) == 2:
            names = [name]
        else:                                   # -xyz: three one-letter options
            names = [name[0] + letter for letter in name[1:]]
        for i, option in enumerate(names):
            full = option + (eq + value if i == len(names) - 1 else "")
            if cls.regex_values and option in ("-i", "+i") and not eq:
                carried.append(option)
            elif option in cls.flags_allowed:
                options.append(full)
            else:
                raise ValueError(f"unsupported ACL option: {full}")
    return options, carried


def _acl_values(words: Words, cls: type[AclType], ctx: ParseContext, name: str) -> list[tuple[str, str]]:
    """The values of an acl line with where each came from (Squid's strtokFile):
    a word in quotes names a file of values, unless quoted values are on."""
    quoted_values = bool(ctx.config.configuration_includes_quoted_values)
    if quoted_values and cls.regex_values:
        raise ValueError("regular expressions cannot be read while configuration_includes_quoted_values "
                         "is on (as in Squid); turn it off around this line")
    values: list[tuple[str, str]] = []
    while (word := words.next(quoted_pair=cls.regex_values)) is not None:
        if not quoted_values and word[:1] in ("\"", "'"):
            file_name = re.split("[\"']", word[1:], maxsplit=1)[0]
            try:
                for lineno, value in read_word_file(ctx.path(file_name)):
                    values.append((ctx.file_where(file_name, lineno), value))
            except OSError as e:
                raise ValueError(f"cannot read the values of ACL '{name}' from \"{file_name}\": "
                                 f"{e.strerror}") from None
            rest = words.all(cls.regex_values)
            if rest:
                ctx.warn(f"ACL '{name}': '{' '.join(rest)}' after the file of values is ignored, "
                         "as Squid ignores it (put those values on a line of their own)")
            break
        else:
            values.append((getattr(word, "where", ctx.where), word))
    return values


def _acl(args: list[str], ctx: ParseContext) -> None:
    words = ctx.words()
    name, type_name = words.next(), words.next()
    if name is None or type_name is None:
        raise ValueError("expected: acl NAME TYPE [OPTIONS] VALUE ...")
    if type_name in RENAMED:
        type_name, advice = RENAMED[type_name]
        ctx.warn(f"UPGRADE: {advice}")
    elif type_name == "proto" and name == "manager":
        ctx.warn("UPGRADE: ACL 'manager' is now a built-in ACL; this line is ignored (remove it)")
        return
    acls = ctx.config.acls
    cls = ACL_TYPES.get(type_name)
    if cls is None:
        acls.define_unusable(name, type_name, ctx.where)
        if type_name in NOT_IMPLEMENTED:
            raise ValueError(f"Squid ACL type {type_name} is not implemented by squidpy yet "
                             f"({NOT_IMPLEMENTED[type_name]}; see {COMPAT_DOC})")
        hint = did_you_mean(type_name, [*ACL_TYPES, *NOT_IMPLEMENTED])
        raise ValueError(f"unknown ACL type '{type_name}'{hint}")
    options, carried = _acl_options(words, cls)
    from squidpy.config import helper_directives
    helper_directives.check_auth_acl_order(type_name, words.peek(cls.regex_values), ctx.config)
    acl = acls.define(name, type_name, [], ctx.where)
    values = [(ctx.where, flag) for flag in carried] + _acl_values(words, cls, ctx, name)
    acl.matcher.begin_line(frozenset(options))
    ctx.config.acl_lines.setdefault(acl_key(name), []).append(ctx.where)
    if not [v for _, v in values if v not in carried]:
        ctx.warn(f"ACL '{name}' has no values on this line")
    for where, value in values:
        try:
            acl.matcher.add(value, where)
        except ValueError as e:
            ctx.error_at(where, f"ACL '{name}': {e}")
    for at, message, warning in acl.matcher.end_line():
        (ctx.warn_at if warning else ctx.error_at)(at or ctx.where, f"ACL '{name}': {message}")


directive(
    "acl", "NAME TYPE [-i] [-n] VALUE ... | \"FILE\"", _acl, None, "Access control", kind=CUSTOM,
    reads_line=True,
    doc="""Defines a named test on a request. Lines with the same NAME add
    values (any one value matching makes the ACL match); NAME is compared
    without regard to case. A value written in double quotes names a file with
    one value per line ('#' starts a comment). Predefined: all, localhost,
    to_localhost, to_linklocal, manager, CONNECT, and the ssl_error shortcuts
    ssl::certHasExpired, ssl::certNotYetValid, ssl::certDomainMismatch,
    ssl::certUntrusted, ssl::certSelfSigned. See docs/acl.md for every TYPE.""",
)


def _access_list(list_name: str, allow_reply: bool = False) -> Callable[[list[str], ParseContext], None]:
    def parse(args: list[str], ctx: ParseContext) -> None:
        getattr(ctx.config, list_name).add_rule(
            args, ctx.config.acls, ctx.where, ctx.text, allow_reply=allow_reply, warn=ctx.warn)
    return parse


directive(
    "http_access", "allow|deny [!]ACL ...", _access_list("http_access"), None,
    "Access control", kind=CUSTOM, empty=lambda: AccessList("http_access", empty_allows=False),
    doc="""Allows or denies a request. The ACLs of one line must all match
    (! negates one); lines are tried in order and the first line that matches
    decides. When no line matches, the answer is the opposite of the last
    line's; with no http_access line at all every request is denied. End
    the list with 'http_access deny all' to make this explicit.""",
)

directive(
    "http_reply_access", "allow|deny [!]ACL ...", _access_list("http_reply_access", allow_reply=True),
    None, "Access control", kind=CUSTOM,
    empty=lambda: AccessList("http_reply_access", empty_allows=True),
    doc="""Like http_access, checked once the origin's reply headers are in,
    so reply ACL types (http_status, rep_mime_type, rep_header) may be used.
    A denied reply is replaced by an access-denied page. Without any line,
    every reply is allowed.""",
)

directive(
    "proxy_protocol_access", "allow|deny [!]ACL ...", _access_list("proxy_protocol_access"),
    None, "Access control", kind=CUSTOM, empty=lambda: AccessList("proxy_protocol_access", empty_allows=False),
    doc="""Which senders may put a PROXY protocol header before their connection on
    a require-proxy-header port: checked once per connection, on the sender's
    own address (src, localport ... fast ACLs). A denied sender, and every
    sender when there is no proxy_protocol_access line, has its connection
    closed at once, as in Squid. Only list load balancers you run: whoever may
    send the header may claim any client address.""",
)

directive(
    "miss_access", "allow|deny [!]ACL ...", _access_list("miss_access"), None, "Access control", kind=CUSTOM,
    empty=lambda: AccessList("miss_access", empty_allows=True),
    doc="""Which clients may have replies fetched from the network (misses,
    revalidations, CONNECT); the others get only what the cache holds, and a
    denied fetch is answered 403 ERR_FORWARDING_DENIED (or as deny_info says).
    Like http_access; it always tests the connecting client's address, never
    the indirect one (follow_x_forwarded_for), and an ACL that needs a lookup
    does not deny here. Without any line every client may. As in Squid.""",
)


# ---------------------------------------------------------------- interception

directive(
    "host_verify_strict", "on|off", _onoff, "off", "Interception",
    doc="""Whether a request whose Host header fails verification is refused
    (409, ERR_CONFLICT_HOST, and a SECURITY ALERT in cache_log). Intercepted
    requests are always verified: the Host must resolve to the address the
    client connected to, with the same port. When verification fails and this
    is off, the request still goes to that original address but its reply is
    neither stored nor answered from the cache (CVE-2009-0801); a CONNECT is
    always refused. When on, forward-proxy requests are checked too: the
    Host header must name the URL's host and port.""",
)

directive(
    "client_dst_passthru", "on|off", _onoff, "on", "Interception",
    doc="""Intercepted requests go to the address the client connected to
    (ORIGINAL_DST in the access log), and dst ACLs match that address. Off:
    requests whose Host header passed verification are forwarded by looking
    up their host name like any other (HIER_DIRECT); requests that failed it
    still go to the original address.""",
)

directive(
    "spoof_client_ip", "allow|deny [!]ACL ...", _access_list("spoof_client_ip"), None, "Interception",
    kind=CUSTOM, empty=lambda: AccessList("spoof_client_ip", empty_allows=True),
    doc="""Which requests received on a tproxy port connect to the origin with
    the client's own address as their source (the origin then sees the
    client, and the gateway must route its answers back to squidpy: see
    docs/intercept.md). Without any line every tproxy request does. Only
    ACLs that need no lookup can decide.""",
)


def _upgrade_protocols(args: list[str], ctx: ParseContext) -> None:
    ctx.config.http_upgrade_request_protocols.add_rule(args, ctx.config.acls, ctx.where, ctx.text)


directive(
    "http_upgrade_request_protocols", "PROTOCOL allow|deny [!]ACL ...", _upgrade_protocols, None,
    "Access control", kind=CUSTOM, empty=UpgradeRules,
    doc="""Which protocols a client may switch to with an Upgrade request header
    (WebSocket, h2c ...). Without any line no Upgrade is forwarded: the field is
    removed and the request goes on as plain HTTP, as in Squid. PROTOCOL is a
    name, optionally with /VERSION (compared case-sensitively), or OTHER for
    every protocol no line names. For each offered protocol the lines naming it
    are tried in order (OTHER lines only when none names it); the first whose
    ACLs all match decides, and an offer no line allows is dropped. Allow only
    what you trust: after the origin's 101 Switching Protocols the connection is
    an opaque tunnel that no ACL, limit or log line sees into. Only ACLs that
    need no lookup can decide. An offer on a request with a body is never
    forwarded. Example: http_upgrade_request_protocols websocket allow
    localnet.""",
)


@dataclass
class DenyInfo:
    """What a denial decided by one ACL answers (``deny_info``)."""

    kind: str           # "page", "redirect" or "reset"
    value: str          # page name, or URL with % codes
    status: int | None
    where: str

    def redirect_status(self, method: str, version: str) -> int:
        """A redirect's status: as written, else 302, or 307 for an HTTP/1.1 request
        other than GET and HEAD (which must keep its method), as Squid answers."""
        if self.status is not None:
            return self.status
        return 307 if method not in ("GET", "HEAD") and version >= "1.1" else 302


_STATUS_PREFIX = re.compile(r"^([1-5]\d\d):(.+)$")
_PAGE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _deny_info(args: list[str], ctx: ParseContext) -> None:
    if len(args) < 2:
        raise ValueError("expected: deny_info ERR_PAGE|URL|NNN:URL|TCP_RESET ACL ...")
    target, names = args[0], args[1:]
    status = None
    m = _STATUS_PREFIX.match(target)
    if m:
        status, target = int(m.group(1)), m.group(2)
    if target == "TCP_RESET":
        info = DenyInfo("reset", target, None, ctx.where)
    elif "://" in target:
        if status is not None and not 300 <= status < 400:
            raise ValueError(f"a redirect needs a 3xx status, not {status}")
        info = DenyInfo("redirect", target, status, ctx.where)
    elif _PAGE_NAME.match(target) and not target.startswith("."):
        if status is not None and not 400 <= status < 600:
            raise ValueError(f"an error page needs a 4xx or 5xx status, not {status}")
        info = DenyInfo("page", target, status, ctx.where)
    else:
        raise ValueError(f"'{target}' is neither an error page name, a URL nor TCP_RESET")
    for name in names:
        acl = ctx.config.acls.get(name)
        if acl is None:
            raise ValueError(f"ACL '{name}' is used before it is defined")
        if acl.name != name:
            ctx.warn(f"deny_info names ACL '{name}', defined as '{acl.name}': Squid compares deny_info "
                     f"names case-sensitively, so this deny_info never applies (write '{acl.name}')")
        ctx.config.deny_info[name] = info


directive(
    "deny_info", "ERR_PAGE|URL|NNN:URL|NNN:ERR_PAGE|TCP_RESET ACL ...", _deny_info, None, "Access control",
    kind=CUSTOM, empty=dict,
    doc="""What to answer when a request is denied by one of these ACLs (the last
    ACL of the denying http_access line, or after an implicit deny the last ACL
    evaluated): an error page by name (from error_directory or the built-in
    set), a redirect to URL (302, or NNN:URL) whose % codes are filled as on
    error pages (%u the URL, %i the client address ...), or TCP_RESET to reset
    the connection.""",
)

# ---------------------------------------------------------------- logging


@dataclass
class AccessLogSpec:
    """One ``access_log`` line: where, in which format, for which requests."""

    destination: Destination
    format_name: str
    filter: AccessRule | None
    where: str
    rotate: int | None = None          # rotate=N: overrides logfile_rotate for this file
    buffer_size: int | None = None     # buffer-size=SIZE: write out past this many bytes
    on_error: str = "die"              # on-error=die|drop: what a destination that fails does


def _logformat(args: list[str], ctx: ParseContext) -> None:
    name, _, spec = ctx.rest.partition(" ")
    spec = spec.strip()
    if not name or not spec:
        raise ValueError("expected: logformat NAME FORMAT")
    if name in PREDEFINED_FORMATS:
        ctx.warn(f"logformat {name} is already defined; this line is ignored, as Squid ignores it")
        return
    ctx.config.logformat[name] = compile_format(spec)


directive(
    "logformat", "NAME FORMAT", _logformat, None, "Logging", kind=CUSTOM, empty=dict, reads_line=True,
    doc="""Names an access log format made of Squid's % codes, with Squid's
    encodings, widths and arguments (docs/logs.md lists them all).
    Predefined: squid (Squid's native format), common, combined, referrer,
    useragent. Whatever the format, values from requests are escaped so that
    no client can forge or split a log line.""",
)


def _access_log(args: list[str], ctx: ParseContext) -> AccessLogSpec:
    if not args:
        raise ValueError("expected: access_log DESTINATION [logformat=NAME] [option=VALUE ...] [ACL ...]")
    destination = parse_destination(args[0], ctx.path)
    rest = list(args[1:])
    fmt = None
    rotate = buffer_size = None
    on_error = "die"
    while rest and "=" in rest[0]:
        key, _, value = rest.pop(0).partition("=")
        if key == "logformat":
            fmt = value
        elif key == "rotate":
            rotate = parse_int([value], 0, 1000)
        elif key == "buffer-size":
            buffer_size = parse_size([value], "KB")
        elif key == "on-error":
            if value not in ("drop", "die"):
                raise ValueError("on-error must be drop or die")
            on_error = value
        else:
            raise ValueError(f"unknown access_log option '{key}=' (logformat=, rotate=, buffer-size=, on-error=)")
    if fmt is None and rest and (rest[0] in PREDEFINED_FORMATS or rest[0] in ctx.config.logformat):
        fmt = rest.pop(0)          # the older syntax: access_log PLACE FORMAT [ACL ...]
    fmt = fmt or "squid"
    for word in rest:
        if word.partition("=")[0] in ("logformat", "rotate", "buffer-size", "on-error"):
            raise ValueError(f"'{word}' comes after the format or an ACL: write options right after "
                             "the destination (access_log PATH [option=VALUE ...] [FORMAT] [ACL ...])")
    if fmt not in PREDEFINED_FORMATS and fmt not in ctx.config.logformat:
        raise ValueError(f"unknown logformat '{fmt}' (define it with a logformat line first)")
    rule = None
    if rest:
        holder = AccessList("access_log")
        rule = holder.add_rule(["allow", *rest], ctx.config.acls, ctx.where, ctx.text, warn=ctx.warn)
    return AccessLogSpec(destination, fmt, rule, ctx.where, rotate, buffer_size, on_error)


directive(
    "access_log",
    "PATH|stdio:PATH|daemon:PATH|syslog:FACILITY.PRIORITY|udp://HOST:PORT|tcp://HOST:PORT|none "
    "[logformat=NAME] [rotate=N] [buffer-size=SIZE] [on-error=die|drop] [ACL ...]",
    _access_log, "${state_dir}/access.log squid", "Logging", kind=APPEND,
    doc="""Where each finished transaction is logged, in which logformat
    (default: squid, Squid's native format; the older form 'access_log PATH
    FORMAT [ACL ...]' works too), and optionally only for the requests
    matching all the ACLs given. Several lines log to several places; a
    request goes to every line whose ACLs match, in order, and a matching
    'access_log none' line stops it there (put 'access_log none ACL' first
    to keep some requests out of every log). Files (stdio:, daemon: or a
    bare path) are written at least once a second; syslog: sends to the
    local syslog socket (syslog_socket) with the facility and priority given
    (default local4.info); udp:// and tcp:// send each line to a collector,
    reconnecting by themselves. rotate=N overrides logfile_rotate for one
    file; buffer-size=SIZE (default 64 KB) writes out sooner. Writing never
    makes a request wait. on-error=die (the default, as in Squid): a file
    that cannot be opened or written, or a collector whose waiting lines
    overflow, stops squidpy with a FATAL line in cache_log, so no request
    goes unaudited; a start or reconfigure that cannot open it fails.
    on-error=drop: the lines are counted as lost and reported in cache_log,
    and squidpy serves on.""",
)

directive(
    "syslog_socket", "PATH", _path, "/dev/log", "Logging", squid=False,
    doc="""squidpy extension: the local syslog daemon's UNIX datagram socket,
    where 'access_log syslog:...' lines go.""",
)

directive(
    "cache_log", "PATH", _path, "${state_dir}/cache.log", "Logging",
    doc="""squidpy's diagnostics: start-up, reconfiguration, errors talking
    to origins, configuration warnings. Each line starts with the time.""",
)

directive(
    "pid_filename", "PATH|none", _path_or_none, "${state_dir}/squidpy.pid", "Logging",
    doc="""File holding the process id of the running squidpy; 'squidpy
    signal' reads it to deliver reconfigure, rotate and shutdown.""",
)

directive(
    "logfile_rotate", "N", _int(0, 1000), "10", "Logging",
    doc="""How many rotated copies of each log 'squidpy signal rotate' keeps:
    access.log becomes access.log.0 (the newest) and older copies shift up
    to access.log.N-1. With 0, rotate only reopens the files, for an
    external logrotate that renames them first (etc/logrotate.d/squidpy).""",
)

# ---------------------------------------------------------------- headers

directive(
    "via", "on|off", _onoff, "on", "Headers",
    doc="""Add 'Via: 1.1 visible_hostname (squidpy/VERSION)' to requests and
    replies, as RFC 9110 section 7.6.3 asks of proxies. Turning it off also
    turns off forwarding-loop detection.""",
)

directive(
    "forwarded_for", "on|off|transparent|delete|truncate",
    _choice("on", "off", "transparent", "delete", "truncate"), "on", "Headers",
    doc="""What to do with X-Forwarded-For on requests: on appends the
    client's address; off appends 'unknown'; transparent leaves the header
    as it came; delete removes it; truncate replaces it with the client's
    address alone.""",
)


def _header_access(direction: str) -> Callable[[list[str], ParseContext], None]:
    def parse(args: list[str], ctx: ParseContext) -> None:
        getattr(ctx.config, f"{direction}_header_access").add_access(
            args, ctx.config.acls, ctx.where, ctx.text, warn=ctx.warn)
    return parse


def _header_replace(direction: str) -> Callable[[list[str], ParseContext], None]:
    def parse(_args: list[str], ctx: ParseContext) -> None:
        name, value = (ctx.rest.strip().split(None, 1) + ["", ""])[:2]
        if ctx.config.configuration_includes_quoted_values and value[:1] in ("\"", "'"):
            value = ctx.words().all()[1]       # Squid's NextQuotedOrToEol: a quoted value is unquoted
        if not name or not value:
            raise ValueError(f"expected: {direction}_header_replace NAME VALUE")
        getattr(ctx.config, f"{direction}_header_access").set_replacement(name, value, warn=ctx.warn)
    return parse


def _header_add(direction: str) -> Callable[[list[str], ParseContext], None]:
    def parse(_args: list[str], ctx: ParseContext) -> None:
        words = ctx.words()
        name = words.next()
        words.quoted_values = True          # the value may be quoted whatever the setting (Squid's NextQuotedToken)
        value = words.next()
        quoted = words.kind == QUOTED
        words.quoted_values = bool(ctx.config.configuration_includes_quoted_values)
        if name is None or value is None:
            raise ValueError(f"expected: {direction}_header_add NAME VALUE [ACL ...]")
        getattr(ctx.config, f"{direction}_header_access").add_field(
            name, value, quoted, words.all(), ctx.config.acls, ctx.where, ctx.text, warn=ctx.warn)
    return parse


_UNTOUCHED = """Content-Length, Transfer-Encoding, Connection and Upgrade are written
    by squidpy from how the message is framed and whether the connection stays
    open, and no header rule changes them (a rule naming them is ignored with a
    warning; All and Other leave them alone), so no configuration line can make
    squidpy and the next hop read a body differently."""

directive(
    "request_header_access", "HEADER allow|deny [!]ACL ...", _header_access("request"), None, "Headers",
    kind=CUSTOM, empty=lambda: HeaderRules("request"),
    doc=f"""Removes request header fields before the request goes to the origin
    (it does not change what the cache looks up). HEADER is a field name (any
    case), Other (every field Squid does not know by name) or All (written
    so). Each field is judged by the lines naming it; else, for a field Squid
    does not know, by the Other lines; else by the All lines. Those lines are
    checked like http_access: the first line whose ACLs all match decides, and
    when none matches the answer is the opposite of the last line's, as in
    Squid. Allowed: the field goes as it is. Denied: it is replaced by
    request_header_replace's value for that name, or removed. The fields
    squidpy adds itself (Via, X-Forwarded-For, Host) are judged too, as in
    Squid. Example, Squid's 'paranoid' set: request_header_access Host allow
    all ... request_header_access All deny all. {_UNTOUCHED}""",
)
directive(
    "request_header_replace", "HEADER VALUE", _header_replace("request"), None, "Headers", kind=CUSTOM,
    reads_line=True,
    doc="""The value a request field denied by request_header_access HEADER lines
    is replaced with (the rest of the line, as written), instead of being
    removed. Only fields judged by that name's own lines are replaced (an All
    line's denial removes a field unless HEADER is All).""",
)
directive(
    "request_header_add", "HEADER VALUE [ACL ...]", _header_add("request"), None, "Headers", kind=CUSTOM,
    reads_line=True,
    doc="""Adds a field to requests going to the origin, when all the ACLs match
    (no ACL: always), after request_header_access has judged the others. A
    field already there is kept: the new one is added beside it. A VALUE in
    double quotes holds logformat % codes, filled for each request (e.g.
    request_header_add X-Client "%>a" localnet); without quotes it is sent as
    written; an empty result is sent as '-'. Only ACLs that need no lookup can
    match here, as in Squid.""",
)
directive(
    "reply_header_access", "HEADER allow|deny [!]ACL ...", _header_access("reply"), None, "Headers",
    kind=CUSTOM, empty=lambda: HeaderRules("reply"),
    doc=f"""The same as request_header_access for the replies sent to clients:
    forwarded, from the cache and squidpy's own (error pages, its own pages), and
    1xx replies. The fields squidpy adds (Via, X-Cache, Date, Server on its own
    pages) are judged too. Reply ACLs (http_status, rep_header, rep_mime_type)
    see the reply. Example: reply_header_access Server deny all. A successful
    CONNECT's reply is not rewritten. {_UNTOUCHED}""",
)
directive(
    "reply_header_replace", "HEADER VALUE", _header_replace("reply"), None, "Headers", kind=CUSTOM,
    reads_line=True,
    doc="""The same as request_header_replace, for fields reply_header_access
    denies.""",
)
directive(
    "reply_header_add", "HEADER VALUE [ACL ...]", _header_add("reply"), None, "Headers", kind=CUSTOM,
    reads_line=True,
    doc="""The same as request_header_add, for replies to clients (not the reply
    to a successful CONNECT).""",
)
directive(
    "httpd_suppress_version_string", "on|off", _onoff, "off", "Headers",
    doc="""With on, squidpy names itself 'squidpy' without its version in the
    Server field of its own replies, in Via, and on error pages (%s).""",
)


def _follow_xff(args: list[str], ctx: ParseContext) -> None:
    ctx.config.follow_x_forwarded_for.add_rule(args, ctx.config.acls, ctx.where, ctx.text, warn=ctx.warn)


directive(
    "follow_x_forwarded_for", "allow|deny [!]ACL ...", _follow_xff, None, "Access control", kind=CUSTOM,
    empty=lambda: AccessList("follow_x_forwarded_for", empty_allows=False),
    doc="""Which clients (proxies in front of this one) are trusted to say in
    X-Forwarded-For whom they got the request from. When a request carries
    X-Forwarded-For, its addresses are walked from the last: while the address
    being tested is allowed by these lines, the address before it (the one that
    host reported) becomes the indirect client address; the walk stops at a
    denial, at a value that is not an IP address, or at the first address. In
    these lines src (and srcdomain) test the address being tested. Without any
    line X-Forwarded-For is ignored. What the indirect address is used for:
    acl_uses_indirect_client and log_uses_indirect_client. Anyone trusted here
    can claim any address, so trust only your own proxies. Example:
    follow_x_forwarded_for allow localhost.""",
)
directive("acl_uses_indirect_client", "on|off", _onoff, "on", "Access control",
          doc="""With on, ACLs test the indirect client address (follow_x_forwarded_for)
          instead of the connecting one: src, srcdomain, maxconn (which then
          counts that address's own connections, normally none), in every
          access list but miss_access, as in Squid.""")
directive("log_uses_indirect_client", "on|off", _onoff, "on", "Logging",
          doc="""With on, access.log shows the indirect client address
          (follow_x_forwarded_for) instead of the connecting one (%>a).""")
directive("delay_pool_uses_indirect_client", "on|off", _onoff, "on", "Access control",
          doc="""Accepted for Squid's configurations; it only concerns delay pools,
          which squidpy refuses, so it changes nothing.""")


# ---------------------------------------------------------------- timeouts

directive("connect_timeout", "TIME", _time("second"), "1 minute", "Timeouts",
          doc="""How long to wait for a TCP connection to an origin (each address
          tried gets this long).""")
directive("read_timeout", "TIME", _time("second"), "15 minutes", "Timeouts",
          doc="""How long an origin connection or a tunnel may stay silent while
          a transaction waits on it before it is given up (ERR_READ_TIMEOUT).""")
directive("request_timeout", "TIME", _time("second"), "5 minutes", "Timeouts",
          doc="""How long a new client connection may take to send complete
          request headers.""")
directive("request_start_timeout", "TIME", _time("second"), "5 minutes", "Timeouts",
          doc="""How long a new client connection may stay silent before its first
          byte; then it is closed without an answer.""")
directive("client_lifetime", "TIME", _time("second"), "1 day", "Timeouts",
          doc="""The longest a client connection may be busy with one request (from
          its first byte to the end of the reply, a tunnel included); then the
          connection is closed and the request logged as given up. A guard
          against clients that vanish without closing.""")
directive("pconn_lifetime", "TIME", _time("second"), "0 seconds", "Timeouts",
          doc="""The longest a persistent connection (to a client or an origin) is
          kept from its opening: once a connection is older, it is closed when
          it becomes idle (within a second) instead of waiting for another
          request. 0: no limit.""")
directive("write_timeout", "TIME", _time("second"), "15 minutes", "Timeouts",
          doc="""How long squidpy may wait for a client (or an origin sent a request
          body) to take the data it has for it; then the transaction is given up
          and the connection closed.""")
directive("client_idle_pconn_timeout", "TIME", _time("second"), "2 minutes", "Timeouts",
          doc="""How long an idle persistent client connection is kept open
          waiting for the next request.""")
directive("server_idle_pconn_timeout", "TIME", _time("second"), "1 minute", "Timeouts",
          doc="""How long an idle connection to an origin is kept in the pool for
          reuse.""")
directive("shutdown_lifetime", "TIME", _time("second"), "30 seconds", "Timeouts",
          doc="""On shutdown, how long transactions in progress may go on before
          their connections are closed.""")

# ---------------------------------------------------------------- limits

directive("request_header_max_size", "SIZE", _size(none=2 ** 62), "64 KB", "Limits",
          doc="""Largest request head (request line and headers) accepted; a
          larger one is answered 431 (ERR_TOO_BIG).""")
directive("reply_header_max_size", "SIZE", _size(none=2 ** 62), "64 KB", "Limits",
          doc="""Largest reply head accepted from an origin; a larger one is
          answered 502 (ERR_TOO_BIG).""")
directive("request_body_max_size", "SIZE", _size(none=0), "0 KB", "Limits",
          doc="""Largest request body accepted (0: no limit). A larger declared
          body is answered 413 (ERR_TOO_BIG) before anything is forwarded.""")

@dataclass
class SizeRule:
    """One ``reply_body_max_size`` line: a size for the replies its ACLs match."""

    size: int
    filter: AccessRule | None


def _reply_body_max_size(args: list[str], ctx: ParseContext) -> SizeRule:
    if not args:
        raise ValueError("expected: reply_body_max_size SIZE [ACL ...]")
    size, rest = take_size(args, "bytes", ctx.warn)
    if size == -1:
        size = 0
    rule = None
    if rest:
        holder = AccessList("reply_body_max_size")
        rule = holder.add_rule(["allow", *rest], ctx.config.acls, ctx.where, ctx.text, allow_reply=True)
    return SizeRule(size, rule)


directive(
    "reply_body_max_size", "SIZE [ACL ...]", _reply_body_max_size, None, "Limits", kind=APPEND,
    doc="""Largest reply body passed to the clients the ACLs match (the first
    matching line decides; no line: no limit; 0 means no limit). A reply
    declaring a larger Content-Length is replaced by a 403 ERR_TOO_BIG page; a
    reply that grows past it while streaming is cut short.""",
)

directive("client_ip_max_connections", "N", _int(-1), "-1", "Limits",
          doc="""Most connections one client address may hold open at once (-1:
          no limit). Connections over the limit are closed at once, as Squid
          does, and reported in cache_log.""")

directive("max_client_connections", "N", _int(0), "0", "Limits", squid=False,
          doc="""Most client connections squidpy serves at once, from all clients
          together (0: derived from the file descriptor limit, half of it, since
          each client may need an origin connection too). Over the limit a new
          connection is answered 503 and closed. A squidpy extension.""")

directive("max_filedescriptors", "N", _int(0), "0", "Limits",
          doc="""Raise the process's open-file limit to N at start (0: to the hard
          limit the system allows). Running out of descriptors never stops
          squidpy: it pauses accepting until some are free again.""")

# ---------------------------------------------------------------- error pages

directive(
    "error_directory", "DIRECTORY", _directory, None, "Error pages",
    doc="""A directory of error page templates named as Squid names them
    (ERR_ACCESS_DENIED ...). Templates missing there are taken from
    squidpy's built-in set. Templates use Squid's % codes (docs/errors.md).
    As in Squid, it turns off the choice of language: every page comes from
    here (or the built-in set), without Vary or Content-Language.""",
)


def _language(args: list[str], ctx: ParseContext) -> str:
    tag = _word(args, ctx).lower()
    if not re.fullmatch(r"[a-z*-]+", tag.replace("_", "-")):
        raise ValueError(f"'{args[0]}' is not a language tag (en, de, pt-br ...)")
    from squidpy.errors import LANGPACK_DIR, ErrorPages
    pages = ErrorPages(None, "", "")
    if not pages.is_english(tag) and tag not in pages.languages:
        ctx.warn(f"error_default_language {tag}: no such language in {LANGPACK_DIR} (Debian's squid-langpack); "
                 "pages are sent in English instead")
    return tag


directive(
    "error_default_language", "LANGUAGE", _language, None, "Error pages",
    doc="""The language of error pages when none of the languages the browser
    asks for (Accept-Language) has a translation. Without error_directory,
    each of squidpy's pages that Squid also has is sent in the first language
    of Accept-Language that has it: English is squidpy's own set; other
    languages are the translations of Debian's squid-langpack
    (/usr/share/squid-langpack, read as installed, never copied into squidpy),
    used when that package is installed; '*' in Accept-Language means this
    default. Without it: English. The reply carries Vary: Accept-Language and
    Content-Language.""",
)
directive("error_log_languages", "on|off", _onoff, "on", "Error pages",
          doc="""Report in cache_log the languages clients asked for that have no
          translation ('Error Pages Missing Language: xx'). squidpy reports each
          language once (Squid: every time).""")
directive("email_err_data", "on|off", _onoff, "on", "Error pages",
          doc="""With on, %W on error pages is a subject and a body for the mailto:
          link to cache_mgr (write href="mailto:%w%W"), telling what happened:
          the page, the time, the client's address and the request (credentials
          and cookies left out).""")
directive("err_html_text", "TEXT", _rest_of_line, None, "Error pages", reads_line=True,
          doc="""HTML put on error pages where a template says %L (the rest of the
          line, as written, not escaped).""")

directive(
    "cache_mgr", "EMAIL", _word, "webmaster", "Error pages",
    doc="""The administrator's e-mail address, shown on error pages.""",
)

# ---------------------------------------------------------------- cache manager and metrics


def _cachemgr_passwd(args: list[str], ctx: ParseContext) -> CacheMgrPasswd:
    from squidpy.mgr.actions import ACTIONS, SQUID_ONLY
    from squidpy.mgr.request import CacheMgrPasswd
    if not args:
        raise ValueError("expected: cachemgr_passwd PASSWORD|none|disable ACTION ...")
    password, actions = args[0], tuple(args[1:])
    if not actions:             # Squid reads the line and applies it to nothing
        ctx.warn("cachemgr_passwd names no action: the line has no effect")
    for action in actions:
        if action != "all" and action not in ACTIONS and action not in SQUID_ONLY:
            ctx.warn(f"cachemgr_passwd: squidpy has no cache manager action '{action}' "
                     f"(it has: {', '.join(ACTIONS)})")
    return CacheMgrPasswd(password, actions, ctx.where)


directive(
    "cachemgr_passwd", "PASSWORD|none|disable ACTION ... | all", _cachemgr_passwd, None, "Cache manager",
    kind=APPEND,
    doc="""The password the cache manager asks before showing ACTION (an action
    of mgr:menu, or all for every one): squidclient -w PASSWORD mgr:ACTION,
    a Basic Authorization field (curl -u USER:PASSWORD
    http://PROXY:PORT/squid-internal-mgr/ACTION) or cache_object://HOST/ACTION@PASSWORD.
    none: no password needed; disable: the action is refused (404). The first
    line naming an action decides. config needs a line of its own (it is hidden
    until one names it); its page never shows passwords. A wrong or missing
    password is answered 401 and logged in cache_log. The http_access rules on
    the manager ACL apply first.""",
)


def _metrics_port(args: list[str], ctx: ParseContext) -> ListenAddress:
    return parse_http_port(args, ctx.warn, kind="metrics")


directive(
    "metrics_port", "[ADDRESS:]PORT [name=NAME]", _metrics_port, None, "Cache manager", kind=APPEND, squid=False,
    doc="""squidpy extension: a port of its own for Prometheus. It serves GET
    /metrics and nothing else (no request is forwarded from it); /metrics is
    also served on every http_port to requests for the proxy itself. Both are
    checked by http_access like the cache manager: the predefined manager ACL
    matches /metrics asked of the proxy, so 'http_access allow localhost
    manager' and 'http_access deny manager' guard it. Under workers every kid
    listens on it and the figures are those of all kids added up.""",
)


# ---------------------------------------------------------------- delay pools


def _pool_number(text: str, count: int | None, directive: str, count_directive: str) -> int:
    count = count or 0
    if not text.isdigit():
        raise ValueError(f"'{text}' is not a pool number")
    number = int(text)
    if not 1 <= number <= count:
        raise ValueError(f"pool {number} is not one of the {count} pools {count_directive} declares "
                         f"(write '{count_directive} N' before the {directive} lines)")
    return number


def _delay_class(args: list[str], ctx: ParseContext) -> None:
    from squidpy.delay import CLASS_MEMBERS
    if len(args) < 2:
        raise ValueError("expected: delay_class POOL CLASS")
    if len(args) > 2:
        ctx.warn(f"delay_class: '{' '.join(args[2:])}' after the class is ignored, as Squid ignores it")
    pool = _pool_number(args[0], ctx.config.delay_pools, "delay_class", "delay_pools")
    if not args[1].isdigit() or int(args[1]) not in CLASS_MEMBERS:
        raise ValueError(f"'{args[1]}' is not a delay pool class (1 to 5)")
    if pool in ctx.config.delay_class:
        raise ValueError(f"pool {pool} has a class already ({ctx.config.delay_class[pool][1]})")
    ctx.config.delay_class[pool] = (int(args[1]), ctx.where)


def _delay_parameters(args: list[str], ctx: ParseContext) -> None:
    from squidpy.delay import CLASS_MEMBERS, parse_rate
    if not args:
        raise ValueError("expected: delay_parameters POOL RATE ...")
    pool = _pool_number(args[0], ctx.config.delay_pools, "delay_parameters", "delay_pools")
    known = ctx.config.delay_class.get(pool)
    if known is None:
        raise ValueError(f"pool {pool} has no delay_class yet (write 'delay_class {pool} CLASS' first)")
    members = CLASS_MEMBERS[known[0]]
    rates = tuple(parse_rate(a) for a in args[1:])
    if len(rates) != len(members):
        raise ValueError(f"a class {known[0]} pool takes {len(members)} rate(s): {' '.join(members).lower()}")
    ctx.config.delay_parameters[pool] = (rates, ctx.where)


def _pool_access(count_directive: str, table: str, allow_reply: bool) -> Callable[[list[str], ParseContext], None]:
    def parse(args: list[str], ctx: ParseContext) -> None:
        if len(args) < 2:
            raise ValueError(f"expected: {table} POOL allow|deny [!]ACL ...")
        pool = _pool_number(args[0], getattr(ctx.config, count_directive), table, count_directive)
        access = getattr(ctx.config, table).setdefault(pool, AccessList(f"{table} {pool}", empty_allows=False))
        access.add_rule(args[1:], ctx.config.acls, ctx.where, ctx.text, allow_reply=allow_reply)
    return parse


def _client_delay_parameters(args: list[str], ctx: ParseContext) -> None:
    if len(args) != 3:
        raise ValueError("expected: client_delay_parameters POOL SPEED_LIMIT MAX_BUCKET_SIZE")
    pool = _pool_number(args[0], ctx.config.client_delay_pools, "client_delay_parameters", "client_delay_pools")
    rate, maximum = (parse_int([a], 0) for a in args[1:])
    ctx.config.client_delay_parameters[pool] = (rate, maximum, ctx.where)


directive(
    "delay_pools", "N", _int(0, 65535, warn_extra=False), "0", "Delay pools",
    doc="""How many delay pools (bandwidth limits on what is fetched from origin
    servers) there are; delay_class, delay_parameters and delay_access lines
    then configure pools 1 to N, and must come after this line. Delay pools
    slow down misses and CONNECT tunnels; hits are not delayed. Under workers
    each kid has its own pools, as in Squid.""",
)
directive(
    "delay_class", "POOL CLASS", _delay_class, None, "Delay pools", kind=CUSTOM, empty=dict,
    doc="""The class of a pool (one line per pool): 1, one aggregate bucket for
    everything; 2, an aggregate bucket and one per host (the last byte of the
    client's IPv4 address); 3, an aggregate bucket, one per network (the third
    byte) and one per host of each network; 4, class 3 and one per
    authenticated user; 5, one per tag an external ACL returned (tag=). Host
    and network buckets apply to IPv4 clients only, as in Squid.""",
)
directive(
    "delay_parameters", "POOL RATE ...", _delay_parameters, None, "Delay pools", kind=CUSTOM, empty=dict,
    doc="""The buckets of a pool, one RATE per bucket of its class, in order:
    class 1 aggregate; class 2 aggregate individual; class 3 aggregate network
    individual; class 4 aggregate network individual user; class 5 tag. A RATE
    is restore/maximum in bytes: restore bytes are added each second, up to
    maximum (so maximum is also the burst a fresh bucket may allow); none is no
    limit at that level. Example: delay_parameters 1 none 8000/8000 limits each
    host to 64 kbit/s. Squid adds each second's bytes at once; squidpy adds
    them as time passes, the same rate in smaller bursts.""",
)
directive(
    "delay_access", "POOL allow|deny [!]ACL ...", _pool_access("delay_pools", "delay_access", True), None,
    "Delay pools", kind=CUSTOM, empty=dict,
    doc="""Which requests a pool slows down: the pools are tried in order and the
    first whose delay_access lines allow the request is used (like http_access,
    but a pool without any line is never used). As in Squid it is checked when
    the request goes out and again when the reply's head arrives, so reply ACLs
    may be used (for CONNECT, when the tunnel opens); ACLs that would need a
    lookup do not match.""",
)
directive(
    "delay_initial_bucket_level", "PERCENT", _int(0, 100, warn_extra=False), "50", "Delay pools",
    doc="""How full a bucket starts, in percent of its maximum: when squidpy
    starts or is reconfigured (aggregate buckets) and when a host, network,
    user or tag is first seen.""",
)
directive(
    "client_delay_pools", "N", _int(0, 65535, warn_extra=False), "0", "Delay pools",
    doc="""How many client delay pools (bandwidth limits on what squidpy sends to
    clients, hits included) there are; client_delay_parameters and
    client_delay_access lines then configure pools 1 to N, after this line.""",
)
directive(
    "client_delay_parameters", "POOL SPEED_LIMIT MAX_BUCKET_SIZE", _client_delay_parameters, None,
    "Delay pools", kind=CUSTOM, empty=dict,
    doc="""A client pool's limit: SPEED_LIMIT bytes per second for each client
    address (its connections share one bucket), with bursts up to
    MAX_BUCKET_SIZE bytes.""",
)
directive(
    "client_delay_access", "POOL allow|deny [!]ACL ...", _pool_access("client_delay_pools", "client_delay_access", False),
    None, "Delay pools", kind=CUSTOM, empty=dict,
    doc="""Which client connections a client pool limits, decided when the
    connection is accepted: only what is known of the connection then (src,
    localip, localport, myportname ...) can match. The pools are tried in order;
    the first that allows the connection is used; a pool without lines is never
    used.""",
)
directive(
    "client_delay_initial_bucket_level", "PERCENT", _int(0, warn_extra=False), "50", "Delay pools",
    doc="""How full a client's bucket starts, in percent of MAX_BUCKET_SIZE; over
    100 gives a larger first burst, spent before the bucket refills (as in Squid).""",
)


# ---------------------------------------------------------------- proxy auto-configuration


def _pac_proxy(args: list[str], ctx: ParseContext) -> list[str]:
    from squidpy.pac import parse_proxy
    if not args:
        raise ValueError("expected one or more HOST:PORT")
    return [parse_proxy(word) for word in args]


def _pac_direct(args: list[str], ctx: ParseContext) -> list[PacDirect]:
    from squidpy.pac import parse_direct
    if not args:
        raise ValueError("expected domains (.example.lan) or networks (10.0.0.0/8)")
    return [parse_direct(word) for word in args]


directive(
    "pac_proxy", "HOST:PORT ...", _pac_proxy, None, "Proxy auto-configuration", squid=False,
    doc="""squidpy extension. The proxies the PAC file (/proxy.pac and /wpad.dat,
    served by squidpy to browsers that ask it directly) tells browsers to use,
    in order: a browser tries the next when one does not answer. Without it:
    the address the browser fetched the file from.""",
)
directive(
    "pac_direct", "DOMAIN|NETWORK ...", _pac_direct, None, "Proxy auto-configuration", kind=APPEND, squid=False,
    doc="""squidpy extension. Destinations browsers reach without the proxy, in
    the PAC file: .example.lan is example.lan and every name under it,
    intranet.example.com that host only, 10.0.0.0/8 (or one address) the
    destinations whose address is in the network: the browser resolves a
    name to check it, so list networks only when that lookup is cheap. IPv6
    networks apply to IPv6 addresses in URLs, in browsers that have
    isInNetEx. This machine (localhost, 127.0.0.0/8, ::1) always goes
    direct. Requests that go direct are not filtered or logged by squidpy.""",
)
directive(
    "pac_plain_hosts_direct", "on|off", _onoff, "on", "Proxy auto-configuration", squid=False,
    doc="""squidpy extension. Whether names without a dot (http://intranet/)
    go direct in the PAC file.""",
)
directive(
    "pac_fallback", "direct|none", _choice("direct", "none"), "direct", "Proxy auto-configuration", squid=False,
    doc="""squidpy extension. What the PAC file tells browsers to do when no
    proxy answers: direct goes to the site without the proxy (the browser
    keeps working, but bypasses http_access and the access log); none makes
    the request fail, so there is no way around the proxy (fail closed).
    Serve the PAC file from a host that stays up (a copy on a web server, or
    the WPAD host) when failing closed: a browser that cannot fetch it at
    all goes direct.""",
)


# ---------------------------------------------------------------- DNS


def _nameservers(args: list[str], ctx: ParseContext) -> list[tuple[str, int]]:
    if not args:
        raise ValueError("expected one or more IP addresses")
    servers = []
    for arg in args:
        port = 53
        if arg.startswith("[") and "]:" in arg:
            arg, _, port_text = arg.rpartition(":")
            port = parse_port_number(port_text)
        elif arg.count(":") == 1:
            arg, _, port_text = arg.partition(":")
            port = parse_port_number(port_text)
        servers.append((parse_ip(arg), port))
    return servers


directive(
    "dns_nameservers", "IP ...", _nameservers, None, "DNS",
    doc="""DNS servers to ask instead of those of /etc/resolv.conf. Names in
    /etc/hosts are always answered from there first. squidpy also accepts
    IP:PORT (and [IPv6]:PORT) for a server on another port than 53.""",
)
def _append_domain(args: list[str], ctx: ParseContext) -> str:
    domain = _word(args, ctx)
    if not domain.startswith("."):
        raise ValueError("append_domain must begin with a '.' (as Squid requires)")
    return domain.lower()


directive(
    "append_domain", "DOMAIN", _append_domain, None, "DNS",
    doc="""Appended to URL host names without a dot (http://intranet/ becomes
    http://intranet.example.lan/, which ACLs, the log and the origin's Host
    field then see) and to such names in hosts_file. It must begin with a dot.
    Names of the Internet without a dot stop working.""",
)


def _hosts_file(args: list[str], ctx: ParseContext) -> str | None:
    value = _word(args, ctx)
    return None if value == "none" else ctx.path(value)


directive(
    "hosts_file", "PATH|none", _hosts_file, "/etc/hosts", "DNS",
    doc="""The hosts file, read at start and on reconfigure, as Squid reads it:
    'ADDRESS NAME ...' lines, '#' comments; names without a dot get
    append_domain. A name found there is never asked of DNS; a name on several
    lines has all their addresses, in the order written (Squid: only the last
    line's). Reverse lookups (srcdomain, dstdomain on addresses) ask it first
    too: an address is named by its first line. none: no hosts file.""",
)
directive("dns_timeout", "TIME", _time("second"), "30 seconds", "DNS",
          doc="""How long to wait for DNS servers to answer a lookup before the
          request fails with ERR_DNS_FAIL.""")
directive("positive_dns_ttl", "TIME", _time("second"), "6 hours", "DNS",
          doc="""Upper bound on how long a DNS answer is reused (the record's own
          TTL is used when shorter).""")
directive("negative_dns_ttl", "TIME", _time("second"), "1 minute", "DNS",
          doc="""How long a failed DNS lookup is remembered before it is tried
          again.""")
directive("ipcache_size", "N", _int(0, warn_extra=False), "1024", "DNS",
          doc="""Most names whose DNS answers (addresses or failures) are
          remembered. Past the high-water mark the least recently used are
          forgotten down to the low-water mark, so endless distinct names cannot
          grow the proxy's memory.""")
directive("ipcache_low", "PERCENT", _int(0, 100, warn_extra=False), "90", "DNS",
          doc="""The low-water mark of the DNS cache, in percent of ipcache_size:
          trimming stops below it.""")
directive("ipcache_high", "PERCENT", _int(0, 100, warn_extra=False), "95", "DNS",
          doc="""The high-water mark of the DNS cache, in percent of ipcache_size:
          holding more entries than this starts trimming (Squid trims every 10
          seconds; squidpy as soon as the mark is passed).""")
directive("fqdncache_size", "N", _int(0, warn_extra=False), "1024", "DNS",
          doc="""Most addresses whose names (reverse DNS, for srcdomain and for
          dstdomain on address URLs) are remembered; trimmed like ipcache_size,
          with fixed marks of 90 and 95 percent.""")


# ---------------------------------------------------------------- cache


@dataclass
class CacheDir:
    path: str
    size_mb: int
    kind: str = "diskcache"


SQUID_STORES = ("ufs", "aufs", "diskd", "rock")


def _cache_dir(args: list[str], ctx: ParseContext) -> CacheDir:
    """Squid's ``cache_dir TYPE PATH MB ...``: every type is kept in one diskcache store
    at PATH, MB megabytes at most; ufs/aufs/diskd take Squid's L1 L2 too (unused here)."""
    if len(args) < 3:
        raise ValueError("expected: cache_dir TYPE DIRECTORY SIZE_MB [L1 L2] [options]")
    kind, path, size = args[0], args[1], args[2]
    if kind not in SQUID_STORES and kind != "diskcache":
        raise ValueError(f"cache_dir type '{kind}' is not one of ufs, aufs, diskd, rock (or diskcache)")
    size_mb = parse_int([size], 1)
    if kind in ("ufs", "aufs", "diskd"):
        if len(args) < 5:
            raise ValueError(f"expected: cache_dir {kind} DIRECTORY SIZE_MB L1 L2 [options]")
        parse_int([args[3]], 1)
        parse_int([args[4]], 1)
    if getattr(ctx.config, "cache_dir", None) is not None:
        raise ValueError("only one cache_dir is supported")
    if kind != "diskcache":
        ctx.warn(f"cache_dir {kind}: squidpy keeps its own diskcache store in {path} ({size_mb} MB); "
                 f"the on-disk format differs from Squid's {kind}, so a Squid cache there is not read")
    return CacheDir(ctx.path(path), size_mb, kind)


REPLACEMENT_POLICIES = ("lru", "heap GDSF", "heap LFUDA", "heap LRU")


def _replacement_policy(args: list[str], ctx: ParseContext) -> str:
    """Squid's removal policies: ``lru``, ``heap GDSF``, ``heap LFUDA``, ``heap LRU``."""
    text = " ".join(args)
    for policy in REPLACEMENT_POLICIES:
        if text.lower() == policy.lower():
            return policy
    raise ValueError(f"expected one of: {', '.join(REPLACEMENT_POLICIES)}")


def _refresh_pattern(args: list[str], ctx: ParseContext) -> RefreshPattern:
    from squidpy.cache.refresh import parse_refresh_pattern
    if ctx.config.configuration_includes_quoted_values:
        raise ValueError("regular expressions cannot be read while configuration_includes_quoted_values is on "
                         "(as in Squid); turn it off around this line")
    words = ctx.words()
    parts = [words.next(quoted_pair=True)]
    if parts[0] in ("-i", "+i"):
        parts.append(words.next(quoted_pair=True))
    return parse_refresh_pattern([p for p in parts if p is not None] + words.all(), ctx.warn)


directive(
    "cache_dir", "ufs|aufs|diskd|rock DIRECTORY SIZE_MB [L1 L2] [options]", _cache_dir, None, "Cache",
    doc="""Keep cached objects on disk in DIRECTORY (created if missing), at most
    SIZE_MB megabytes. Squid's types ufs, aufs, diskd (with their L1 L2) and rock
    are all kept in one diskcache store at that path and size, with a warning that
    the on-disk format differs from Squid's (``diskcache`` names it directly);
    Squid's per-type options are not used. Several squidpy processes (workers)
    share it, and it survives restarts. cache_replacement_policy decides what
    goes first when it is full. Without a cache_dir squidpy caches in memory
    only, as Squid does. One cache_dir at most.""",
)
directive("cache_replacement_policy", "lru|heap GDSF|heap LFUDA|heap LRU", _replacement_policy, "lru", "Cache",
          doc="""What leaves the cache_dir first when it is full. diskcache's own
          policies do it: lru and heap LRU are its least-recently-used (each disk
          hit records its time), heap LFUDA and heap GDSF its least-frequently-used
          (a count of hits: no dynamic aging, and for GDSF no preference for small
          objects, unlike Squid's heaps).""")
directive("memory_replacement_policy", "lru|heap GDSF|heap LFUDA|heap LRU", _replacement_policy, "lru", "Cache",
          doc="""What leaves the memory tier (cache_mem) first: lru and heap LRU the
          least recently used; heap LFUDA the least frequently used, with Squid's
          dynamic aging (an object's key is its hit count plus the key of the last
          one evicted); heap GDSF the same divided by the object's size, so small
          popular objects stay (Squid's Greedy-Dual Size Frequency).""")
directive("cache_mem", "SIZE", _size(), "256 MB", "Cache",
          doc="""Memory for the hot tier of small objects (see
          maximum_object_size_in_memory); the least recently used go first.""")
directive("maximum_object_size", "SIZE", _size(none=2 ** 62), "4 MB", "Cache",
          doc="""Larger replies are passed to the client but not stored.""")
directive("minimum_object_size", "SIZE", _size(none=0), "0 KB", "Cache",
          doc="""Smaller replies are passed to the client but not stored.""")
directive("maximum_object_size_in_memory", "SIZE", _size(), "512 KB", "Cache",
          doc="""Objects up to this size are also kept in memory and served from
          there (TCP_MEM_HIT) without touching the disk.""")
directive(
    "cache", "allow|deny [!]ACL ...", _access_list("cache"), None, "Cache", kind=CUSTOM,
    empty=lambda: AccessList("cache", empty_allows=True),
    doc="""Which requests may be answered from the cache and have their replies
    stored. Like http_access; without any line, everything cacheable is cached.""",
)
directive(
    "refresh_pattern", "[-i] REGEX MIN PERCENT MAX [OPTIONS]", _refresh_pattern, None, "Cache", kind=APPEND,
    reads_line=True,
    doc="""How long replies without explicit freshness (max-age, s-maxage, Expires)
    stay fresh, as Squid decides it: a reply older than MAX minutes is stale;
    with a Last-Modified, it is fresh for PERCENT of the time between
    Last-Modified and its Date (never more than MAX, and not raised to MIN);
    without one, for MIN minutes. The first pattern matching the URL applies; a
    URL no pattern matches gets Squid's built-in rule (0 20% 4320 max-stale=0),
    and so does every URL without any refresh_pattern line (the default
    configuration file has Squid's four lines). OPTIONS, as in Squid:
    override-expire (fresh while younger than MIN even after an explicit
    expiry), override-lastmod (fresh while younger than MIN even when the
    Last-Modified factor says stale), reload-into-ims (a client reload becomes
    a revalidation), ignore-reload (a client reload, and max-age=0, are
    ignored), ignore-no-store and ignore-private (stored despite the reply's
    no-store or private; a private reply is revalidated on every hit),
    refresh-ims (a client If-Modified-Since always asks the origin),
    store-stale (stored even when it would be stale within
    minimum_expiry_time and is empty), max-stale=N (seconds; overrides
    max_stale for these URLs).""",
)
directive("max_stale", "TIME", _time("second"), "1 week", "Cache",
          doc="""A stale reply whose revalidation fails (the origin unreachable or
          answering 5xx) is served instead of the error (TCP_REFRESH_FAIL_OLD), but
          never once it is stale by more than this (TCP_REFRESH_FAIL_ERR).
          refresh_pattern's max-stale=N overrides it.""")
directive("minimum_expiry_time", "TIME", _time("second"), "60 seconds", "Cache",
          doc="""A reply with status 200, 203, 300, 301, 308 or 410 that will be stale
          within this time and says Content-Length: 0 is not stored (it could not
          be revalidated usefully), unless refresh_pattern says store-stale.""")
directive("reload_into_ims", "on|off", _onoff, "off", "Cache",
          doc="""A client reload (Cache-Control or Pragma no-cache) of a stored reply
          becomes a revalidation with the stored validators (TCP_REFRESH_*)
          instead of a fetch of a new copy; refresh_pattern's reload-into-ims
          does it for some URLs only. Violates HTTP.""")
directive("refresh_all_ims", "on|off", _onoff, "off", "Cache",
          doc="""A client If-Modified-Since always makes squidpy revalidate the stored
          reply with the origin first, even when it is fresh (refresh-ims for
          every URL).""")
def _kb_or_negative(args: list[str], ctx: ParseContext) -> int:
    """A size in KB (Squid's kb_int64_t); a negative one means "no limit" (-1)."""
    if args and args[0].startswith("-"):
        parse_size([args[0][1:]] + args[1:], "KB")
        return -1
    return parse_size(args, "KB")


directive("quick_abort_min", "SIZE", _kb_or_negative, "16 KB", "Cache",
          doc="""When a client goes away during a reply that is being stored, the fetch
          goes on to the end (and is stored) if less than this is left to receive;
          -1 KB: always, while it is being stored. See quick_abort_pct.""")
directive("quick_abort_max", "SIZE", _size("KB"), "16 KB", "Cache",
          doc="""... and is abandoned if more than this is left (0 KB for both: never go on).""")
directive("quick_abort_pct", "PERCENT", _int(0, 100, warn_extra=False), "95", "Cache",
          doc="""... and otherwise goes on if more than this percentage has arrived.
          A reply whose length is unknown is abandoned; one that other clients wait
          for (collapsed_forwarding) always goes on. As Squid's quick_abort.""")
directive("cache_miss_revalidate", "on|off", _onoff, "on", "Cache",
          doc="""off: on a cache miss, a cacheable request without credentials goes to the
          origin without the client's If-Modified-Since and If-None-Match (the latter
          kept with If-Match: *, as Squid keeps it), so that a whole reply comes back
          to be stored; the client gets that whole reply.""")
directive("offline_mode", "on|off", _onoff, "off", "Cache",
          doc="""Serve every stored object without asking the origin, however
          stale (TCP_OFFLINE_HIT): for a network that is down.""")
def _range_offset_limit(args: list[str], ctx: ParseContext) -> SizeRule:
    if not args:
        raise ValueError("expected: range_offset_limit SIZE|none [[!]ACL ...]")
    size, rest = take_size(args, "bytes", ctx.warn)
    rule = None
    if rest:
        holder = AccessList("range_offset_limit")
        rule = holder.add_rule(["allow", *rest], ctx.config.acls, ctx.where, ctx.text, warn=ctx.warn)
    return SizeRule(size, rule)


directive(
    "range_offset_limit", "SIZE|none [[!]ACL ...]", _range_offset_limit, None, "Cache", kind=APPEND,
    doc="""How far into an object a Range request may start for squidpy to fetch the
    whole object instead (without the Range), store it if it may, and answer the
    range from it. The first line whose ACLs match decides; no line matches: 0,
    Squid's default, where the Range goes to the origin as asked and its 206 is not
    stored. none (or -1): always fetch the whole object, and a client that leaves
    does not stop the fetch (quick_abort does not apply). A request for the last
    bytes (bytes=-N) is forwarded as asked unless the limit is none. The ACLs are
    tested as Squid's fast checks (one that needs a lookup does not match).""",
)

directive("collapsed_forwarding", "on|off", _onoff, "on", "Cache",
          doc="""Concurrent misses for one URL wait for a single fetch from the
          origin and are then answered from the cache, instead of all going to
          the origin. (Off by default in Squid.)""")

# ---------------------------------------------------------------- peers

def _cache_peer(args: list[str], ctx: ParseContext) -> None:
    from squidpy.peers.peer import parse_cache_peer
    peer = parse_cache_peer(args, ctx.warn, ctx.path)
    peers = ctx.config.cache_peer
    for other in peers:
        if other.name.lower() == peer.name.lower():
            raise ValueError(f"cache_peer {peer.name} specified twice (first at {other.where}); "
                             "give one of them another name= to tell them apart")
    peer.where = ctx.where
    peer.index = len(peers) + 1
    peers.append(peer)


def _cache_peer_access(args: list[str], ctx: ParseContext) -> None:
    if len(args) < 2:
        raise ValueError("expected: cache_peer_access PEER-NAME allow|deny [!]ACL ...")
    name = args[0]
    for peer in ctx.config.cache_peer:
        if peer.name.lower() == name.lower():
            peer.access.add_rule(args[1:], ctx.config.acls, ctx.where, ctx.text)
            return
    raise ValueError(f"No cache_peer '{name}' (name a cache_peer line above: its name= or its host)")


directive(
    "cache_peer", "HOST parent|sibling HTTP-PORT ICP-PORT [OPTION ...]", _cache_peer, None, "Peers",
    kind=CUSTOM, empty=list,
    doc="""Another proxy to fetch through: a parent (asked for anything) or a
    sibling (asked only for what it has: ICP hits, 'Cache-Control:
    only-if-cached' unless allow-miss). ICP-PORT 0: the peer is not queried
    with ICP. Which parent a request goes to: sourcehash (client address),
    userhash (user name), carp (hash of the URL, or the parts carp-key=scheme,
    host,port,path,params names; the same choice Squid makes for the same
    peers, so squidpy and Squid can share one CARP array), round-robin or
    weighted-round-robin, else the first parent that is up, else the default
    one; weight=N biases carp, sourcehash, userhash and round-robin. name=NAME
    tells apart peers on one host (cache_peer_access and the CARP hash use it).
    proxy-only: replies from this peer are not stored. login=user:password
    (Basic, %-escapes allowed), login=*:password (the client's user name),
    login=PASS or PASSTHRU (the client's Proxy-Authorization goes on),
    login=PROXYPASS; login=NEGOTIATE is accepted but sends nothing (no
    Kerberos). connect-timeout=SECONDS (else peer_connect_timeout),
    connect-fail-limit=N failed connections before the peer counts as dead
    (10), max-conn=N, standby=N idle connections kept open to it. tls (and
    tls-cert=, tls-key=, tls-cafile=, tls-capath=, tls-crlfile=, tls-cipher=,
    tls-min-version=, tls-options=, tls-flags=DONT_VERIFY_PEER|DONT_VERIFY_DOMAIN,
    tls-domain=, tls-default-ca=off, tls-no-npn; the older ssl* spellings too;
    the words of tls_outgoing_options) encrypts the connection to the peer: its
    certificate must carry tls-domain= (else the peer's host, also sent as SNI)
    and come from the system's CAs or tls-cafile=, and a failed handshake is a
    failed connection to the peer (the next candidate is tried). no-query, no-digest, no-netdb-exchange,
    closest-only, background-ping and basetime= are Squid's. originserver is
    refused: squidpy is not a reverse proxy. An unknown option is ignored with a
    warning, as Squid ignores it.""",
)

directive(
    "cache_peer_access", "PEER-NAME allow|deny [!]ACL ...", _cache_peer_access, None, "Peers", kind=CUSTOM,
    doc="""Limits which requests may go to one peer (by its name= or host), with
    http_access's rules: first matching line decides, else the opposite of the
    last line. Only fast ACLs count: one that would need a DNS lookup does not
    match. Naming a peer that no cache_peer line defines is an error (Squid only
    logs it and then ignores the line, which would let every request through).""",
)

directive(
    "always_direct", "allow|deny [!]ACL ...", _access_list("always_direct"), None, "Peers", kind=CUSTOM,
    empty=lambda: AccessList("always_direct", empty_allows=False),
    doc="""Requests these rules allow always go straight to the origin, never
    through a peer. Note that 'always_direct deny X' alone allows every other
    request (the last line's opposite), as in Squid.""",
)

directive(
    "never_direct", "allow|deny [!]ACL ...", _access_list("never_direct"), None, "Peers", kind=CUSTOM,
    empty=lambda: AccessList("never_direct", empty_allows=False),
    doc="""Requests these rules allow never go straight to the origin: only
    through parents (every request, CONNECT and POST included, with 'never_direct
    allow all'). When no parent is usable they are answered 502 (ERR_READ_ERROR,
    logged HIER_NONE), as Squid 5.7 answers them. always_direct is asked first.""",
)

directive(
    "prefer_direct", "on|off", _onoff, "off", "Peers",
    doc="""Try the origin first and the parents after it (instead of parents
    first), for requests that may use both.""",
)

directive(
    "nonhierarchical_direct", "on|off", _onoff, "on", "Peers",
    doc="""Requests that cannot be cached (anything but GET, e.g. POST and
    CONNECT, and requests with Authorization) go straight to the origin. Off:
    they may use parents too. never_direct overrides it.""",
)

directive(
    "forward_max_tries", "N", _int(0, warn_extra=False), "25", "Peers",
    doc="""Most attempts to forward one request: each origin address or peer
    address tried counts, retries on a reused connection too.""",
)

def _connect_retries(args: list[str], ctx: ParseContext) -> int:
    value = parse_int(args)
    if value > 10:
        ctx.warn("WARNING: connect_retries cannot be larger than 10. Resetting to 10.")
        value = 10
    return value


directive(
    "connect_retries", "N", _connect_retries, "0", "Peers",
    doc="""How often a connection to one address (an origin's or a peer's) is opened
    in all when opening it fails at once (refused, unreachable), as Squid 5.7's
    ConnOpener counts: N tries, at least one, 50 ms apart, all within
    connect_timeout (peer_connect_timeout for a peer). 0 and 1: one try. A
    connect that times out is not repeated. These tries do not count towards
    forward_max_tries; then the next address or peer is tried. At most 10 (a
    larger value is taken as 10, with Squid's warning).""",
)

directive(
    "retry_on_error", "on|off", _onoff, "off", "Peers",
    doc="""Also try the next peer (or address) when one answers 403, 500, 501 or
    503; 502 and 504 answers are always retried on the next candidate while
    nothing was sent to the client and the request can be sent again.""",
)

directive(
    "dead_peer_timeout", "TIME", _time("second"), "10 seconds", "Peers",
    doc="""A peer queried with ICP that has not answered any query for this long
    counts as dead until it answers again.""",
)

directive(
    "peer_connect_timeout", "TIME", _time("second"), "30 seconds", "Peers",
    doc="""How long to wait for a TCP connection to a peer (a cache_peer's
    connect-timeout= overrides it).""",
)

# ---------------------------------------------------------------- ICP


def _icp_port(args: list[str], ctx: ParseContext) -> int:
    return parse_int(args, 0, 65535)


def _msec(args: list[str], ctx: ParseContext) -> int:
    return parse_int(args, 0)


directive(
    "icp_port", "PORT", _icp_port, "0", "ICP",
    doc="""The UDP port where squidpy answers ICP queries (RFC 2186) from its peers
    and from which it queries its own (3130 is ICP's usual port); 0: no ICP at
    all. Queries are answered ICP_HIT when the URL is fresh in the cache, else
    ICP_MISS, and ICP_DENIED when icp_access denies the sender.""",
)

def _udp_address(args: list[str], ctx: ParseContext) -> str:
    value = _word(args, ctx)
    return "" if value == "any_addr" else parse_ip(value)


directive(
    "udp_incoming_address", "ADDRESS|any_addr", _udp_address, "any_addr", "ICP",
    doc="""The address the icp_port listens on and queries peers from (any_addr: every
    address). Squid's DNS client uses it too; squidpy's does not.""",
)

directive(
    "icp_access", "allow|deny [!]ACL ...", _access_list("icp_access"), None, "ICP", kind=CUSTOM,
    empty=lambda: AccessList("icp_access", empty_allows=False),
    doc="""Who may send ICP queries (fast ACLs: src, ...). Without any line
    every query is denied, as in Squid.""",
)

directive(
    "icp_query_timeout", "MILLISECONDS", _msec, "0", "ICP",
    doc="""How long to wait for ICP replies; 0: twice the peers' average reply
    time, kept between minimum_icp_query_timeout and maximum_icp_query_timeout.""",
)

directive(
    "maximum_icp_query_timeout", "MILLISECONDS", _msec, "2000", "ICP",
    doc="""Upper bound of the computed ICP wait.""",
)

directive(
    "minimum_icp_query_timeout", "MILLISECONDS", _msec, "5", "ICP",
    doc="""Lower bound of the computed ICP wait.""",
)

directive(
    "background_ping_rate", "TIME", _time("second"), "10 seconds", "ICP",
    doc="""How often a background-ping peer is queried with ICP.""",
)

directive(
    "icp_hit_stale", "on|off", _onoff, "off", "ICP",
    doc="""Answer ICP_HIT for stale objects too (off: only fresh ones are hits).""",
)

directive(
    "log_icp_queries", "on|off", _onoff, "on", "ICP",
    doc="""Log each ICP query answered (UDP_HIT, UDP_MISS, UDP_DENIED ...) in the
    access log.""",
)


def finish_delay_config(config: Config, warn_at: Report, error_at: Report) -> None:
    """The delay pools as squidpy.delay builds them (config.delay_specs, config.client_delay_specs)."""
    from squidpy.delay import ClientPoolSpec, PoolSpec
    config.delay_specs = []
    for number in range(1, config.delay_pools + 1):
        klass = config.delay_class.get(number)
        rates = config.delay_parameters.get(number)
        if klass is None or rates is None:
            # Squid 5.7 accepts both: a pool without a class is no pool, one without
            # parameters has unlimited buckets; neither slows anything down
            missing = "delay_class" if klass is None else "delay_parameters"
            where = (rates or klass or (None, None))[1] or _where_of(config, "delay_pools")
            warn_at(where, f"delay pool {number} has no {missing} line: it limits nothing, as in Squid")
            continue
        access = config.delay_access.get(number)
        if access is None:
            warn_at(klass[1], f"delay pool {number} has no delay_access lines: no request will ever use it")
        config.delay_specs.append(PoolSpec(number, klass[0], rates[0], access, klass[1]))
    config.client_delay_specs = []
    for number in range(1, config.client_delay_pools + 1):
        params = config.client_delay_parameters.get(number)
        if params is None:
            warn_at(_where_of(config, "client_delay_pools"), f"client delay pool {number} has no "
                    "client_delay_parameters line: it limits nothing, as in Squid")
            continue
        access = config.client_delay_access.get(number)
        if access is None:
            warn_at(params[2], f"client delay pool {number} has no client_delay_access lines: "
                    "no connection will ever use it")
        config.client_delay_specs.append(ClientPoolSpec(number, params[0], params[1], access, params[2]))


def _where_of(config: Config, name: str) -> str:
    for where, directive_name, _ in config.lines:
        if directive_name == name:
            return where
    return f"<default {name}>:0"


def finish_config(config: Config, warn_at: Report, error_at: Report) -> None:
    """Checks that need the whole file: each ACL's values, once all are in; TLS files."""
    from squidpy.config import helper_directives, tls_directives
    from squidpy.errors import ErrorPages
    helper_directives.finish_helper_config(config, error_at)
    finish_delay_config(config, warn_at, error_at)
    pages = ErrorPages(config.error_directory, "", "")
    for info in config.deny_info.values():
        if info.kind == "page" and pages.template_exists(info.value) is False:
            error_at(info.where, f"deny_info: no error page named '{info.value}' in "
                                 f"{config.error_directory or 'the built-in set'}")
    for acl in config.acls.acls.values():
        lines = config.acl_lines.get(acl_key(acl.name))
        if lines is None and acl.where == "<predefined>":
            continue
        try:
            warnings = acl.matcher.finish()
        except ValueError as e:
            error_at(lines[-1] if lines else acl.where, f"ACL '{acl.name}': {e}")
            continue
        for where, message in warnings:
            warn_at(where or (lines[0] if lines else acl.where), f"ACL '{acl.name}': {message}")
    tls_directives.finish(config, warn_at, error_at)


__all__ = ["AccessLogSpec", "ConfigError", "finish_config"]
