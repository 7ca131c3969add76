"""The ``squidpy check`` command: ask the rules about a request, offline."""

from __future__ import annotations

import socket
import sys
import time
from typing import TYPE_CHECKING

import click

from squidpy.acl.check import (Lookup, Report, challenges, evaluate, https_view, render, render_bumped_note,
                               render_tunnel_note, tunnel_target)
from squidpy.acl.checklist import AuthRequired, Checklist, ExternalPending, Pending
from squidpy.acl.indirect import IndirectClient
from squidpy.cli_options import config_option, load_config
from squidpy.http.url import (BadTarget, addressed_to_proxy, for_proxy, internal_target, own_names, parse_target,
                              with_domain)

if TYPE_CHECKING:
    from squidpy.config.loader import Config
    from squidpy.http.message import Fields
    from squidpy.http.url import Target


def lookup_facts(target: Target, client_ip: str, dst: tuple[str, ...] = (), ch: Checklist | None = None,
                 user: str | None = None, dst_name: str | None = None, client_name: str | None = None) -> Lookup:
    """Facts for ACLs that need them: --dst, --dst-name, --client-name if given,
    else this machine's resolver; ``user`` (--user) stands for credentials a
    helper accepted."""
    def lookup(fact: str) -> object:
        if fact == "auth":
            from squidpy.auth.decide import DONE, NONE, Outcome
            if ch is not None:
                ch.user = user
            return Outcome(DONE, "basic", user) if user else Outcome(NONE)
        if fact == "dst_name" and dst_name is not None:
            return dst_name
        if fact == "src_name" and client_name is not None and (ch is None or ch.src == client_ip):
            return client_name
        if fact == "dst":
            if dst:
                return list(dst)
            if target.ip_literal:
                return [target.host]
            try:
                return sorted({info[4][0] for info in socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)})
            except OSError:
                return []
        address = target.host if fact == "dst_name" else (ch.src if ch is not None else client_ip)
        try:
            return socket.gethostbyaddr(address)[0]
        except OSError:
            return ""
    return lookup


@click.command()
@click.argument("url")
@config_option
@click.option("--client", "client_ip", default="127.0.0.1", show_default=True, help="the client's address")
@click.option("--method", default="GET", show_default=True)
@click.option("--user-agent", help="User-Agent header")
@click.option("--referer", help="Referer header")
@click.option("--header", "headers", multiple=True, help="another request header, 'Name: value' (repeatable)")
@click.option("--dst", multiple=True, help="the origin's address, instead of resolving its name (repeatable)")
@click.option("--dst-name", help="the name of the URL's address, instead of a reverse lookup ('' for none)")
@click.option("--client-name", help="the client's name, instead of a reverse lookup ('' for none)")
@click.option("--local-ip", default="127.0.0.1", show_default=True, help="proxy address the client used")
@click.option("--local-port", default=3128, show_default=True, type=int, help="proxy port the client used")
@click.option("--port-name", default="", help="name= of that http_port (myportname)")
@click.option("--connections", default=1, show_default=True, type=int, help="connections the client has open (maxconn)")
@click.option("--at", "at_time", help="pretend it is this local time, 'YYYY-MM-DD HH:MM' (time ACLs)")
@click.option("--user", help="the authenticated user (proxy_auth ACLs); without it credentials are missing")
@click.option("-v", "--verbose", is_flag=True, help="show every line tried and each ACL's answer")
def check(url: str, client_ip: str, method: str, user_agent: str | None, referer: str | None,
          headers: tuple[str, ...], dst: tuple[str, ...], dst_name: str | None, client_name: str | None,
          local_ip: str, local_port: int, port_name: str, connections: int, at_time: str | None,
          user: str | None, verbose: bool) -> None:
    """Which http_access line allows or denies URL, and which ACLs decided it.

    For CONNECT, give URL as host:port with --method CONNECT; a bare path
    (/squid-internal-mgr/info, /proxy.pac) is a request to the proxy itself.
    An https:// URL is checked as browsers send it, CONNECT host:port, then
    through ssl_bump's steps: a bumped request is judged again on its whole
    URL; without SslBump the answer says whether the URL's own rules would
    have decided otherwise.
    Exit status: 0 allowed, 1 denied, 2 bad arguments or configuration.
    """
    config = load_config()
    method = method.upper()
    try:
        target = with_domain(parse_target(method, url), config.append_domain)
    except BadTarget as e:
        click.echo(f"squidpy check: {e.detail}", err=True)
        sys.exit(2)
    first = (config.http_port[0].port if config.http_port else 0) or local_port
    if target.kind == "origin":         # a request to the proxy itself, as the running proxy sees it
        target = internal_target(target.path, config.visible_hostname, first)
    elif addressed_to_proxy(target, own_names(config.visible_hostname, config.hostname_aliases), first,
                            local_ip, local_port, lambda host: list(dst) or None):
        target = for_proxy(target)      # a URL naming the proxy: answered there, never forwarded
    request_headers = []
    if user_agent:
        request_headers.append((b"User-Agent", user_agent.encode("latin-1")))
    if referer:
        request_headers.append((b"Referer", referer.encode("latin-1")))
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep:
            click.echo(f"squidpy check: --header '{h}' is not 'Name: value'", err=True)
            sys.exit(2)
        request_headers.append((name.strip().encode("latin-1"), value.strip().encode("latin-1")))
    now = None
    if at_time:
        try:
            now = time.mktime(time.strptime(at_time, "%Y-%m-%d %H:%M"))
        except ValueError:
            click.echo("squidpy check: --at takes 'YYYY-MM-DD HH:MM'", err=True)
            sys.exit(2)
    def checklist(method: str, target: Target) -> Checklist:
        ch = Checklist(src=client_ip, method=method, url=target.url, scheme=target.scheme, host=target.host,
                       port=target.port, path=target.path, request_headers=request_headers, local_ip=local_ip,
                       local_port=local_port, port_name=port_name, now=now, ip_literal=target.ip_literal)
        ch.client_connections = connections
        ch.to_proxy = target.kind == "internal"
        return ch

    def decide(method: str, target: Target, connect: Checklist | None = None) -> tuple[Checklist, Report]:
        """``connect``: the CONNECT's checklist, for a request inside the connection it
        bumped (its user is the CONNECT's, squidpy.auth.decide.inherited)."""
        ch = checklist(method, target)
        if connect is not None:
            from squidpy.auth.decide import inherited
            ch.auth = inherited(connect.auth)
            ch.user = ch.auth.user
        try:
            facts = lookup_facts(target, client_ip, dst, ch, user, dst_name, client_name)
            indirect = follow_x_forwarded_for(config, ch, request_headers, facts)
            if indirect is not None and method != "CONNECT":
                click.echo(f"indirect client {indirect} (follow_x_forwarded_for)")
            return ch, evaluate(config.http_access, ch, facts, config.deny_info)
        except AuthRequired:
            click.echo("407 ERR_CACHE_ACCESS_DENIED: proxy authentication is required (give --user NAME)")
            sys.exit(1)
        except ExternalPending as p:
            click.echo(f"the answer depends on external_acl_type {p.type_name}'s helper "
                       f"(request line '{p.line}'): squidpy check does not run helpers")
            sys.exit(2)

    tunnel = tunnel_target(method, target)
    if tunnel is None:
        ch, report = decide(method, target)
        click.echo(render(report, ch, verbose))
        sys.exit(0 if report.verdict.allowed else 1)
    tunnel_ch, tunnel_report = decide("CONNECT", tunnel)
    listen = next((p for p in config.http_port if p.port == local_port), None) or (
        config.http_port[0] if config.http_port else None)
    if not tunnel_report.verdict.allowed:
        from squidpy.tls.bump import bump_to_deny
        tls = listen.tls if listen is not None else None
        shown = tls is not None and not challenges(tunnel_report) and bump_to_deny(
            tls.ssl_bump, config.ssl_bump, tls.certs != [], config.bump_denied_connect, 403)
        click.echo(render(tunnel_report, tunnel_ch, verbose, page_in_tls=shown))
        sys.exit(1)
    click.echo(render(tunnel_report, tunnel_ch, verbose))
    view = https_view(config, listen, tunnel_ch,
                      lookup_facts(tunnel, client_ip, dst, tunnel_ch, user, dst_name, client_name))
    if view.bumped:
        ch, report = decide(method, target, tunnel_ch)
        click.echo(render_bumped_note(view, target.url))
        click.echo("\n".join("  " + line for line in render(report, ch, verbose, bumped=True).splitlines()))
        sys.exit(0 if report.verdict.allowed else 1)
    ch, report = decide(method, target)
    click.echo(render_tunnel_note(target.url, target.path, tunnel_report, report, view))
    sys.exit(0)


def follow_x_forwarded_for(config: Config, ch: Checklist, request_headers: Fields, lookup: Lookup) -> str | None:
    """The indirect client address the running proxy would find, or None when
    X-Forwarded-For is not followed; ACLs then test it if acl_uses_indirect_client."""
    values = [value for name, value in request_headers if name.lower() == b"x-forwarded-for"]
    if not values or not config.follow_x_forwarded_for.rules:
        return None
    direct = ch.src
    walk = IndirectClient(direct, values)
    for _ in range(64):
        try:
            walk.run(config.follow_x_forwarded_for, ch, ch.set_src)
            break
        except Pending as p:
            setattr(ch, p.fact, lookup(p.fact))
    ch.set_src(walk.address if config.acl_uses_indirect_client else direct)
    return walk.address
