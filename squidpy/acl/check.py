"""``squidpy check``: which http_access line decides a request, and why.

Pure: :func:`evaluate` takes a configuration, a checklist and a way to fetch
facts that need lookups (``dst``, ``dst_name``, ``src_name``), and returns
a :class:`Report` that :func:`render` turns into the text an admin reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from squidpy.acl.access import Acl, AccessList, Step, Verdict
from squidpy.acl.checklist import Checklist, Pending

if TYPE_CHECKING:
    from squidpy.config.directives import DenyInfo
    from squidpy.config.loader import Config
    from squidpy.config.values import ListenAddress
    from squidpy.http.url import Target
    from squidpy.tls.bump import Decision

Lookup = Callable[[str], object]
"""Supplies a fact an ACL waits for (dst, dst_name, src_name), by its name."""


@dataclass
class Report:
    verdict: Verdict
    steps: list[Step]
    lookups: dict[str, object] = field(default_factory=dict)
    deny_info: DenyInfo | None = None
    deny_acl: str | None = None


def evaluate(access: AccessList, ch: Checklist, lookup: Lookup,
             deny_info: Mapping[str, DenyInfo] | None = None) -> Report:
    """Run ``access`` on ``ch``; ``lookup(fact)`` supplies facts ACLs wait for."""
    lookups: dict[str, object] = {}
    while True:
        try:
            verdict, steps = access.explain(ch)
            break
        except Pending as p:
            if p.fact == "external":
                raise                  # a helper's answer: the caller decides what to do without it
            if p.fact in lookups:
                raise RuntimeError(f"lookup of {p.fact} did not settle") from None
            value = lookup(p.fact)
            lookups[p.fact] = value
            setattr(ch, p.fact, value)
    report = Report(verdict, steps, lookups)
    if not verdict.allowed and deny_info:
        name = verdict.last_acl
        if verdict.implicit:
            name = steps[-1].last_acl if steps else None
        report.deny_acl = name
        report.deny_info = deny_info.get(name) if name else None
    return report


def tunnel_target(method: str, target: Target) -> Target | None:
    """The CONNECT a browser sends instead of ``method target`` for an https:// URL, or None.

    For HTTPS the proxy sees ``CONNECT host:port`` first: that request is what http_access
    decides on, and unless SslBump decrypts the connection, nothing else is seen."""
    if method == "CONNECT" or target.scheme != "https":
        return None
    from squidpy.http.url import parse_target
    host = f"[{target.host}]" if ":" in target.host else target.host
    return parse_target("CONNECT", f"{host}:{target.port}")


@dataclass
class HttpsView:
    """What SslBump would do with a browser's CONNECT for an https:// URL, offline."""

    bumped: bool                         # the requests inside are decrypted and checked one by one
    steps: list[str]                     # each step's action and the line that chose it
    reason: str = ""                     # why they are not seen, when not


URL_ACL_TYPES = ("url_regex", "urlpath_regex")
BUMPING_ACTIONS = frozenset({"bump", "client-first", "server-first", "stare"})


def https_view(config: Config, listen: ListenAddress | None, ch: Checklist, lookup: Lookup) -> HttpsView:
    """Run ssl_bump's steps for the CONNECT in ``ch`` on the port ``listen``.  Step 2 takes
    the URL's host as the SNI a browser sends; step 3 cannot know the origin's certificate
    offline, so it is judged without it (ssl::server_name then uses the SNI)."""
    from squidpy.tls import bump
    tls = listen.tls if listen is not None else None
    if tls is None or not tls.ssl_bump:
        return HttpsView(False, [], "the http_port has no ssl-bump")
    rules = config.ssl_bump
    if not rules:
        return HttpsView(False, [], "no ssl_bump line: CONNECTs are spliced")
    steps: list[str] = []

    def decide(step: Callable[..., Decision], *args: str) -> Decision:
        while True:
            try:
                decision = step(rules, ch, *args)
                break
            except Pending as p:
                setattr(ch, p.fact, lookup(p.fact))
        rule = decision.rule
        steps.append(f"{decision.step}: {decision.action}" + (f" ({rule.where}: {rule.text})" if rule
                                                               else " (no line matched: the default)"))
        return decision

    first = decide(bump.step1)
    if first.next in (bump.BUMP_CLIENT_FIRST, bump.BUMP_SERVER_FIRST):
        return HttpsView(True, steps)
    if first.next != bump.READ_CLIENT_HELLO:
        return HttpsView(False, steps, "spliced at step 1" if first.next == bump.TUNNEL else "terminated")
    from squidpy.ip import ip_address
    try:
        ip_address(ch.host)
        ch.sni = None
    except ValueError:
        ch.sni = ch.host
    second = decide(bump.step2)
    if second.next == bump.BUMP_SERVER_FIRST:
        return HttpsView(True, steps)
    if second.next in (bump.PEEK_AT_SERVER, bump.STARE_AT_SERVER):
        third = decide(bump.step3, second.action)
        if third.next == bump.BUMP_NOW:
            return HttpsView(True, steps)
        return HttpsView(False, steps, "spliced at step 3" if third.next == bump.TUNNEL else "terminated")
    return HttpsView(False, steps, "spliced at step 2" if second.next == bump.TUNNEL else "terminated")


def https_blind_spots(config: Config) -> list[tuple[str, str]]:
    """(FILE:LINE, note) for http_access lines whose URL or path ACLs can never see HTTPS:
    no port bumps, or no ssl_bump line can bump anything."""
    ports = [p for p in config.http_port if p.tls is not None and p.tls.ssl_bump]
    if ports and any(rule.action in BUMPING_ACTIONS for rule in config.ssl_bump.rules):
        return []
    why = "no http_port bumps" if not ports else "no ssl_bump line bumps"
    notes = []
    for rule in config.http_access.rules:
        for _, acl in rule.acls:
            if acl.type_name in URL_ACL_TYPES and acl.where != "<predefined>":
                seen = "nothing" if acl.type_name == "urlpath_regex" else "only host:port"
                notes.append((rule.where, f"{acl.type_name} ACL '{acl.name}' sees {seen} of HTTPS requests "
                                          f"({why}: they are CONNECT tunnels, not decrypted)"))
    return notes


HOST_ACL_TYPES = ("dstdomain", "dstdom_regex", "dst", "ssl::server_name", "ssl::server_name_regex")


def https_deny_pages(config: Config) -> list[tuple[str, str]]:
    """(FILE:LINE, note) for http_access deny lines that block hosts while no port can show
    a refused CONNECT's page inside TLS (no ssl-bump port with a CA): HTTPS users of those
    hosts see their browser's own error, never the page."""
    from squidpy.tls.bump import bump_to_deny
    if any(p.tls is not None and bump_to_deny(p.tls.ssl_bump, config.ssl_bump, p.tls.certs != [],
                                              config.bump_denied_connect, 403) for p in config.http_port):
        return []
    notes = []
    for rule in config.http_access.rules:
        if rule.action != "deny":
            continue
        acl = next((a for _, a in rule.acls if a.type_name in HOST_ACL_TYPES and a.where != "<predefined>"), None)
        if acl is not None:
            notes.append((rule.where, f"HTTPS requests this line denies ({acl.type_name} ACL '{acl.name}') show "
                                      "the browser's own error (ERR_TUNNEL_CONNECTION_FAILED), not the deny page: "
                                      "no http_port has ssl-bump with a CA (tls-cert=) to show it inside TLS"))
    return notes


def render_bumped_note(view: HttpsView, url: str) -> str:
    lines = ["  HTTPS: SslBump decrypts this connection:"]
    lines += [f"    {step}" for step in view.steps]
    lines.append(f"  so the request inside is checked too, as {url}:")
    return "\n".join(lines)


def render_tunnel_note(url: str, path: str, tunnel: Report, full: Report, view: HttpsView | None = None) -> str:
    """What ``squidpy check https://...`` adds: why the URL's own rules do not count."""
    lines = ["  HTTPS: the browser asks for a tunnel (CONNECT); without SslBump only the host and port",
             f"  are visible, so URL and path rules do not apply here (the path {path or '/'} is never seen)."]
    if view is not None and (view.steps or view.reason):
        lines.append("  SslBump does not decrypt it: " + view.reason + (
            "; " + "; ".join(view.steps) if view.steps else ""))
    if full.verdict.allowed != tunnel.verdict.allowed:
        v = full.verdict
        why = f"by {v.rule.where}: {v.rule.text}" if v.rule is not None and not v.implicit else "by default"
        lines.append(f"  The full URL {url} would be {'ALLOWED' if v.allowed else 'DENIED'} {why};")
        lines.append("  only a client that sends the https:// URL itself (not a browser) is judged on it.")
    return "\n".join(lines)


def _acl_text(negated: bool, acl: Acl) -> str:
    return f"{'!' if negated else ''}{acl.name} ({acl.type_name})"


def _matched_text(negated: bool, acl: Acl) -> str:
    """One ACL of the deciding line, which matched as written: '!Safe_ports' matches
    because Safe_ports does not (the same answer -v shows as 'yes')."""
    if negated:
        return f"{_acl_text(True, acl)} matches ({acl.name} does not)"
    return f"{_acl_text(False, acl)} matches"


def challenges(report: Report) -> bool:
    """The denial was decided by an authentication ACL: the client is challenged (407),
    never shown a page inside TLS (Squid's clientAccessCheckDone)."""
    from squidpy.acl.auth_types import is_auth_acl
    step = report.steps[-1] if report.steps else None
    acl = step.tried[-1][1] if step is not None and step.tried else None
    return acl is not None and is_auth_acl(acl.matcher)


def _denial_text(report: Report, bumped: bool) -> str:
    """The page a denial gets; inside a bumped connection a challenge is a 403."""
    from squidpy.auth.decide import denial
    status, page = denial(False, challenges(report), None, bumped)
    note = " (no challenge is possible inside a bumped connection)" if bumped and status == 403 and \
        page == "ERR_CACHE_ACCESS_DENIED" else ""
    return f"  answered with the {page} page ({status}){note}"


def render(report: Report, ch: Checklist, verbose: bool = False, page_in_tls: bool = False,
           bumped: bool = False) -> str:
    """``bumped``: the request is one inside a connection SslBump decrypted."""
    v = report.verdict
    lines = [f"{'ALLOW' if v.allowed else 'DENY'}  {ch.method} {ch.url} from {ch.src}"]
    if v.rule is None:
        lines.append("  no http_access line at all: every request is denied")
    elif not v.implicit:
        lines.append(f"  decided by {v.rule.where}: {v.rule.text}")
        step = report.steps[-1]
        matched = ", ".join(_matched_text(n, a) for n, a, _ in step.tried)
        lines.append(f"  because {matched}" if matched else "  (a line without ACLs matches everything)")
    else:
        last = v.rule
        lines.append("  no http_access line matched; the default is the opposite of the last line,")
        lines.append(f"  {last.where}: {last.text}")
    if report.deny_info is not None:
        info = report.deny_info
        lines.append(f"  answered as deny_info for ACL '{report.deny_acl}' says ({info.where}): "
                     f"{info.kind} {info.value}" + (f" with status {info.status}" if info.status else ""))
    elif not v.allowed:
        lines.append(_denial_text(report, bumped))
    if not v.allowed and ch.method == "CONNECT":
        lines.append("  (the port bumps the refused CONNECT to show it inside TLS, as the browser's page)"
                     if page_in_tls else "  (a browser shows its own error for a refused CONNECT, not this page)")
    for fact, value in report.lookups.items():
        lines.append(f"  looked up {fact}: {value if value else '(nothing found)'}")
    if verbose:
        lines.append("  lines tried:")
        for step in report.steps:
            results = "; ".join(
                f"{_acl_text(n, a)}: {'yes' if m != n else 'no'}" for n, a, m in step.tried) or "(no ACLs)"
            lines.append(f"    {step.rule.where}: {step.rule.text}  ->  {results}")
    return "\n".join(lines)
