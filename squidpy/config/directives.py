"""Every squid.conf directive squidpy understands, registered in one place.

Read top to bottom this is also the reference: ``squidpy/config/reference.py``
renders it into ``docs/reference.md``.  Defaults are written as configuration
text and parsed by the same code as the admin's lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squidpy.acl.access import AccessList, AccessRule
from squidpy.acl.types import ACL_TYPES
from squidpy.config.reader import ConfigError, Quoted, read_value_file
from squidpy.config.registry import APPEND, CUSTOM, directive
from squidpy.config.values import (
    parse_http_port,
    parse_int,
    parse_ip,
    parse_onoff,
    parse_port_number,
    parse_size,
    parse_time,
)
from squidpy.http.upgrade import UpgradeRules
from squidpy.log.destination import Destination, parse_destination
from squidpy.log.logformat import PREDEFINED_FORMATS, compile_format


def _time(default_unit: str):
    return lambda args, ctx: parse_time(args, default_unit)


def _size(default_unit: str):
    return lambda args, ctx: parse_size(args, default_unit)


def _onoff(args, ctx):
    return parse_onoff(args)


def _word(args, ctx):
    if len(args) != 1:
        raise ValueError("expected one value")
    return args[0]


def _choice(*choices: str):
    def parse(args, ctx):
        if len(args) != 1 or args[0] not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return args[0]
    return parse


def _path_or_none(args, ctx):
    value = _word(args, ctx)
    return None if value == "none" else ctx.path(value)


# ---------------------------------------------------------------- network

directive(
    "http_port", "[ADDRESS:]PORT [intercept|tproxy] [name=NAME]", lambda args, ctx: parse_http_port(args),
    "3128", "Network", kind=APPEND,
    doc="""Where squidpy listens for browsers. A bare port listens on every IPv4
    and IPv6 address; write 127.0.0.1:3128 or [::1]:3128 to listen on one.
    Several lines open several ports. name=NAME gives the port a name for the
    myportname ACL. Port 0 (a squidpy extension) picks a free port and logs
    it in cache_log. intercept (or its old name transparent) makes a port for
    traffic a gateway redirects to it (nftables/iptables REDIRECT or DNAT):
    the original destination is read from the connection (SO_ORIGINAL_DST),
    origin-form requests become http://HOST/path from their Host header, and
    the Host header is verified against that destination (host_verify_strict).
    tproxy is the same for Linux TPROXY: the port listens with IP_TRANSPARENT
    and connections to origins carry the client's address (spoof_client_ip).
    An interception port is for redirected traffic only: keep a plain port for
    browsers, the cache manager and the proxy's own pages. See
    docs/intercept.md.""",
)

directive(
    "visible_hostname", "HOSTNAME", _word, "${hostname}", "Network",
    doc="""The name squidpy calls itself in Via headers, error pages and
    X-Cache headers. It must be unique among chained proxies: a request whose
    Via already carries it is a forwarding loop and is refused.""",
)

directive(
    "workers", "N", lambda args, ctx: parse_int(args, 1, 64), "1", "Network",
    doc="""How many squidpy processes serve the http_ports. With more than one,
    a master process starts N kids that share each port (SO_REUSEPORT), the
    cache_dir and the log files, passes signals on to them, and restarts a
    kid that dies. Changing it needs a restart.""",
)


def _user_or_none(args, ctx):
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

# ---------------------------------------------------------------- access control


def _acl(args, ctx):
    if len(args) < 2:
        raise ValueError("expected: acl NAME TYPE [-i|-n] VALUE ...")
    name, type_name, rest = args[0], args[1], args[2:]
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"'{name}' is not a valid ACL name (letters, digits, '-', '_', '.')")
    flags = []
    allowed = ACL_TYPES[type_name].flags_allowed if type_name in ACL_TYPES else frozenset()
    while rest and not isinstance(rest[0], Quoted) and rest[0] in allowed:
        flags.append(rest.pop(0))
    if rest and rest[0] == "--":
        rest.pop(0)
    acl = ctx.config.acls.define(name, type_name, flags, ctx.where)
    acl.matcher.begin_line(frozenset(flags))
    ctx.config.acl_lines.setdefault(name, []).append(ctx.where)
    values = []
    for token in rest:
        if isinstance(token, Quoted):
            try:
                for lineno, value in read_value_file(token, ctx.base_dir):
                    values.append((ctx.file_where(token, lineno), value))
            except OSError as e:
                raise ValueError(f"cannot read the values of ACL '{name}' from \"{token}\": {e.strerror}") from None
        else:
            values.append((ctx.where, token))
    if not values:
        ctx.warn(f"ACL '{name}' has no values on this line")
    for where, value in values:
        try:
            acl.matcher.add(value, where)
        except ValueError as e:
            ctx.error_at(where, f"ACL '{name}': {e}")


directive(
    "acl", "NAME TYPE [-i] [-n] VALUE ... | \"FILE\"", _acl, None, "Access control", kind=CUSTOM,
    doc="""Defines a named test on a request. Lines with the same NAME add
    values (any one value matching makes the ACL match). A value written in
    double quotes names a file with one value per line. Predefined: all,
    localhost, to_localhost, to_linklocal, manager, CONNECT. See docs/acl.md
    for every TYPE.""",
)


def _access_list(list_name: str, allow_reply: bool = False):
    def parse(args, ctx):
        getattr(ctx.config, list_name).add_rule(
            args, ctx.config.acls, ctx.where, ctx.text, allow_reply=allow_reply)
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


def _upgrade_protocols(args, ctx):
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


_STATUS_PREFIX = re.compile(r"^([1-5]\d\d):(.+)$")
_PAGE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _deny_info(args, ctx):
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
        info = DenyInfo("redirect", target, status or 302, ctx.where)
    elif _PAGE_NAME.match(target) and not target.startswith("."):
        if status is not None and not 400 <= status < 600:
            raise ValueError(f"an error page needs a 4xx or 5xx status, not {status}")
        info = DenyInfo("page", target, status, ctx.where)
    else:
        raise ValueError(f"'{target}' is neither an error page name, a URL nor TCP_RESET")
    for name in names:
        if ctx.config.acls.get(name) is None:
            raise ValueError(f"ACL '{name}' is used before it is defined")
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


def _logformat(args, ctx):
    name, _, spec = ctx.rest.partition(" ")
    spec = spec.strip()
    if not name or not spec:
        raise ValueError("expected: logformat NAME FORMAT")
    if name in PREDEFINED_FORMATS:
        raise ValueError(f"logformat '{name}' is predefined and cannot be redefined")
    ctx.config.logformat[name] = compile_format(spec)


directive(
    "logformat", "NAME FORMAT", _logformat, None, "Logging", kind=CUSTOM, empty=dict,
    doc="""Names an access log format made of Squid's % codes, with Squid's
    encodings, widths and arguments (docs/logs.md lists them all).
    Predefined: squid (Squid's native format), common, combined, referrer,
    useragent. Whatever the format, values from requests are escaped so that
    no client can forge or split a log line.""",
)


def _access_log(args, ctx):
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
        rule = holder.add_rule(["allow", *rest], ctx.config.acls, ctx.where, ctx.text)
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
    "syslog_socket", "PATH", lambda args, ctx: ctx.path(_word(args, ctx)), "/dev/log", "Logging",
    doc="""squidpy extension: the local syslog daemon's UNIX datagram socket,
    where 'access_log syslog:...' lines go.""",
)

directive(
    "cache_log", "PATH", lambda args, ctx: ctx.path(_word(args, ctx)), "${state_dir}/cache.log", "Logging",
    doc="""squidpy's diagnostics: start-up, reconfiguration, errors talking
    to origins, configuration warnings. Each line starts with the time.""",
)

directive(
    "pid_filename", "PATH|none", _path_or_none, "${state_dir}/squidpy.pid", "Logging",
    doc="""File holding the process id of the running squidpy; 'squidpy
    signal' reads it to deliver reconfigure, rotate and shutdown.""",
)

directive(
    "logfile_rotate", "N", lambda args, ctx: parse_int(args, 0, 1000), "10", "Logging",
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

directive("request_header_max_size", "SIZE", _size("KB"), "64 KB", "Limits",
          doc="""Largest request head (request line and headers) accepted; a
          larger one is answered 431 (ERR_TOO_BIG).""")
directive("reply_header_max_size", "SIZE", _size("KB"), "64 KB", "Limits",
          doc="""Largest reply head accepted from an origin; a larger one is
          answered 502 (ERR_TOO_BIG).""")
directive("request_body_max_size", "SIZE", _size("KB"), "0 KB", "Limits",
          doc="""Largest request body accepted (0: no limit). A larger declared
          body is answered 413 (ERR_TOO_BIG) before anything is forwarded.""")

@dataclass
class SizeRule:
    """One ``reply_body_max_size`` line: a size for the replies its ACLs match."""

    size: int
    filter: AccessRule | None


def _reply_body_max_size(args, ctx):
    if not args:
        raise ValueError("expected: reply_body_max_size SIZE [ACL ...]")
    unit_given = len(args) > 1 and args[1].lower().rstrip("s") in ("byte", "kb", "mb", "gb", "b", "k", "m", "g")
    size = parse_size(args[:2] if unit_given else args[:1], "byte")
    rest = args[2:] if unit_given else args[1:]
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

directive("client_ip_max_connections", "N", lambda args, ctx: parse_int(args, -1), "-1", "Limits",
          doc="""Most connections one client address may hold open at once (-1:
          no limit). Connections over the limit are closed at once, as Squid
          does, and reported in cache_log.""")

directive("max_client_connections", "N", lambda args, ctx: parse_int(args, 0), "0", "Limits",
          doc="""Most client connections squidpy serves at once, from all clients
          together (0: derived from the file descriptor limit, half of it, since
          each client may need an origin connection too). Over the limit a new
          connection is answered 503 and closed. A squidpy extension.""")

directive("max_filedescriptors", "N", lambda args, ctx: parse_int(args, 0), "0", "Limits",
          doc="""Raise the process's open-file limit to N at start (0: to the hard
          limit the system allows). Running out of descriptors never stops
          squidpy: it pauses accepting until some are free again.""")

# ---------------------------------------------------------------- error pages

directive(
    "error_directory", "DIRECTORY", lambda args, ctx: ctx.directory(_word(args, ctx)), None, "Error pages",
    doc="""A directory of error page templates named as Squid names them
    (ERR_ACCESS_DENIED ...). Templates missing there are taken from
    squidpy's built-in set. Templates use Squid's % codes (docs/errors.md).""",
)

directive(
    "cache_mgr", "EMAIL", _word, "webmaster", "Error pages",
    doc="""The administrator's e-mail address, shown on error pages.""",
)

# ---------------------------------------------------------------- proxy auto-configuration


def _pac_proxy(args, ctx):
    from squidpy.pac import parse_proxy
    if not args:
        raise ValueError("expected one or more HOST:PORT")
    return [parse_proxy(word) for word in args]


def _pac_direct(args, ctx):
    from squidpy.pac import parse_direct
    if not args:
        raise ValueError("expected domains (.example.lan) or networks (10.0.0.0/8)")
    return [parse_direct(word) for word in args]


directive(
    "pac_proxy", "HOST:PORT ...", _pac_proxy, None, "Proxy auto-configuration",
    doc="""squidpy extension. The proxies the PAC file (/proxy.pac and /wpad.dat,
    served by squidpy to browsers that ask it directly) tells browsers to use,
    in order: a browser tries the next when one does not answer. Without it:
    the address the browser fetched the file from.""",
)
directive(
    "pac_direct", "DOMAIN|NETWORK ...", _pac_direct, None, "Proxy auto-configuration", kind=APPEND,
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
    "pac_plain_hosts_direct", "on|off", _onoff, "on", "Proxy auto-configuration",
    doc="""squidpy extension. Whether names without a dot (http://intranet/)
    go direct in the PAC file.""",
)
directive(
    "pac_fallback", "direct|none", _choice("direct", "none"), "direct", "Proxy auto-configuration",
    doc="""squidpy extension. What the PAC file tells browsers to do when no
    proxy answers: direct goes to the site without the proxy (the browser
    keeps working, but bypasses http_access and the access log); none makes
    the request fail, so there is no way around the proxy (fail closed).
    Serve the PAC file from a host that stays up (a copy on a web server, or
    the WPAD host) when failing closed: a browser that cannot fetch it at
    all goes direct.""",
)


# ---------------------------------------------------------------- DNS


def _nameservers(args, ctx):
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
directive("dns_timeout", "TIME", _time("second"), "30 seconds", "DNS",
          doc="""How long to wait for DNS servers to answer a lookup before the
          request fails with ERR_DNS_FAIL.""")
directive("positive_dns_ttl", "TIME", _time("second"), "6 hours", "DNS",
          doc="""Upper bound on how long a DNS answer is reused (the record's own
          TTL is used when shorter).""")
directive("negative_dns_ttl", "TIME", _time("second"), "1 minute", "DNS",
          doc="""How long a failed DNS lookup is remembered before it is tried
          again.""")
directive("ipcache_size", "N", lambda args, ctx: parse_int(args, 0), "1024", "DNS",
          doc="""Most names whose DNS answers (addresses or failures) are
          remembered. Past the high-water mark the least recently used are
          forgotten down to the low-water mark, so endless distinct names cannot
          grow the proxy's memory.""")
directive("ipcache_low", "PERCENT", lambda args, ctx: parse_int(args, 0, 100), "90", "DNS",
          doc="""The low-water mark of the DNS cache, in percent of ipcache_size:
          trimming stops below it.""")
directive("ipcache_high", "PERCENT", lambda args, ctx: parse_int(args, 0, 100), "95", "DNS",
          doc="""The high-water mark of the DNS cache, in percent of ipcache_size:
          holding more entries than this starts trimming (Squid trims every 10
          seconds; squidpy as soon as the mark is passed).""")
directive("fqdncache_size", "N", lambda args, ctx: parse_int(args, 0), "1024", "DNS",
          doc="""Most addresses whose names (reverse DNS, for srcdomain and for
          dstdomain on address URLs) are remembered; trimmed like ipcache_size,
          with fixed marks of 90 and 95 percent.""")


# ---------------------------------------------------------------- cache


@dataclass
class CacheDir:
    path: str
    size_mb: int


def _cache_dir(args, ctx):
    if len(args) < 3:
        raise ValueError("expected: cache_dir diskcache DIRECTORY SIZE_MB")
    kind, path, size = args[0], args[1], args[2]
    if kind != "diskcache":
        raise ValueError(f"cache_dir type '{kind}' is not supported: squidpy stores with 'diskcache'")
    size_mb = parse_int([size], 1)
    if getattr(ctx.config, "cache_dir", None) is not None:
        raise ValueError("only one cache_dir is supported")
    return CacheDir(ctx.path(path), size_mb)


def _refresh_pattern(args, ctx):
    from squidpy.cache.refresh import parse_refresh_pattern
    return parse_refresh_pattern(args)


directive(
    "cache_dir", "diskcache DIRECTORY SIZE_MB", _cache_dir, None, "Cache",
    doc="""Keep cached objects on disk in DIRECTORY (a diskcache store, created
    if missing), at most SIZE_MB megabytes; the least recently stored go first.
    Several squidpy processes (workers) share it, and it survives restarts.
    Without a cache_dir squidpy caches in memory only, as Squid does.""",
)
directive("cache_mem", "SIZE", _size("MB"), "256 MB", "Cache",
          doc="""Memory for the hot tier of small objects (see
          maximum_object_size_in_memory); the least recently used go first.""")
directive("maximum_object_size", "SIZE", _size("KB"), "4 MB", "Cache",
          doc="""Larger replies are passed to the client but not stored.""")
directive("minimum_object_size", "SIZE", _size("KB"), "0 KB", "Cache",
          doc="""Smaller replies are passed to the client but not stored.""")
directive("maximum_object_size_in_memory", "SIZE", _size("KB"), "512 KB", "Cache",
          doc="""Objects up to this size are also kept in memory and served from
          there (TCP_MEM_HIT) without touching the disk.""")
directive(
    "cache", "allow|deny [!]ACL ...", _access_list("cache"), None, "Cache", kind=CUSTOM,
    empty=lambda: AccessList("cache", empty_allows=True),
    doc="""Which requests may be answered from the cache and have their replies
    stored. Like http_access; without any line, everything cacheable is cached.""",
)
directive(
    "refresh_pattern", "[-i] REGEX MIN PERCENT MAX [override-expire|override-lastmod|ignore-no-store ...]",
    _refresh_pattern, "\n".join(("^ftp: 1440 20% 10080", r"-i (/cgi-bin/|\?) 0 0% 0", ". 0 20% 4320")),
    "Cache", kind=APPEND,
    doc="""Freshness for replies without max-age, s-maxage or Expires (RFC 9111
    heuristic freshness): PERCENT of the time since Last-Modified, at least MIN
    and at most MAX minutes (MIN when there is no Last-Modified). The first
    pattern matching the URL applies. override-expire uses this even when the
    reply has Expires; override-lastmod ignores Last-Modified; ignore-no-store
    stores despite a request's no-store.""",
)
directive("offline_mode", "on|off", _onoff, "off", "Cache",
          doc="""Serve every stored object without asking the origin, however
          stale (TCP_OFFLINE_HIT): for a network that is down.""")
directive("collapsed_forwarding", "on|off", _onoff, "on", "Cache",
          doc="""Concurrent misses for one URL wait for a single fetch from the
          origin and are then answered from the cache, instead of all going to
          the origin. (Off by default in Squid.)""")


from squidpy.config import helper_directives  # noqa: E402  (registers auth_param, external_acl_type ...)


def finish_config(config, warn_at, error_at) -> None:
    """Checks that need the whole file: each ACL's values, once all are in."""
    from squidpy.errors import ErrorPages
    helper_directives.finish_helper_config(config, error_at)
    pages = ErrorPages(config.error_directory, "", "")
    for info in config.deny_info.values():
        if info.kind == "page" and pages.template_exists(info.value) is False:
            error_at(info.where, f"deny_info: no error page named '{info.value}' in "
                                 f"{config.error_directory or 'the built-in set'}")
    for acl in config.acls.acls.values():
        lines = config.acl_lines.get(acl.name)
        if lines is None and acl.where == "<predefined>":
            continue
        try:
            warnings = acl.matcher.finish()
        except ValueError as e:
            error_at(lines[-1] if lines else acl.where, f"ACL '{acl.name}': {e}")
            continue
        for where, message in warnings:
            warn_at(where or (lines[0] if lines else acl.where), f"ACL '{acl.name}': {message}")


__all__ = ["AccessLogSpec", "ConfigError", "finish_config"]
