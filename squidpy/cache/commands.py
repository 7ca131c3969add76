"""``squidpy cache stats|ls|purge``: the cache, seen from the command line.

Like ``squidclient mgr:info`` and ``squidclient -m PURGE``, the commands ask
the running squidpy over HTTP on its first http_port (the cache manager
pages and the PURGE method, both governed by http_access).  When squidpy is
not running, ``stats``, ``ls`` and ``purge`` read or change the cache_dir
directly.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from squidpy.cli_options import config_option, load_config

if TYPE_CHECKING:
    from squidpy.cache.store import DiskTier
    from squidpy.config.loader import Config
    from squidpy.mgr.stats import JsonObject


@dataclass
class Answer:
    status: int
    body: bytes
    method: str
    url: str              # the request, as an absolute URL
    client_ip: str        # the address this command spoke from
    internal: bool        # addressed to the proxy itself (origin-form)


def _address(config: Config) -> tuple[str, int]:
    listen = config.http_port[0]
    host = listen.host or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return host, listen.port


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ask(config: Config, method: str, target: str) -> Answer | None:
    """None when nothing listens (squidpy is not running)."""
    host, port = _address(config)
    if port == 0:
        return None         # 'http_port 0' is chosen at start: only the cache_dir is reachable
    import http.client      # here: it loads the ssl module, which 'squidpy run' never needs

    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, target, headers={"Host": _authority(host, port)})
        client_ip = conn.sock.getsockname()[0]
        response = conn.getresponse()
        url = target if "://" in target else f"http://{_authority(host, port)}{target}"
        return Answer(response.status, response.read(), method, url, client_ip, "://" not in target)
    except ConnectionRefusedError:
        return None
    except OSError as e:
        click.echo(f"squidpy cache: cannot reach {_authority(host, port)}: {e}", err=True)
        sys.exit(2)
    finally:
        conn.close()


def _offline_store(config: Config) -> DiskTier:
    if config.cache_dir is None:
        click.echo("squidpy cache: squidpy is not running and there is no cache_dir "
                   "(a memory-only cache lives and dies with the process)", err=True)
        sys.exit(1)
    from squidpy.cache.store import DiskTier
    return DiskTier(config.cache_dir.path, config.cache_dir.size_mb, config.cache_replacement_policy)


def _denied(config: Config, answer: Answer, what: str) -> None:
    """A 403: say which http_access line refused it, as 'squidpy check' would; a 407:
    the proxy wants credentials this command does not send."""
    if answer.status == 407:
        click.echo(f"squidpy cache: the proxy asks for credentials for {what} (407); let this machine in "
                   f"without them, before the authentication rules, e.g. 'http_access allow localhost manager'"
                   + (" and an ACL for the PURGE method" if answer.method == "PURGE" else ""), err=True)
        sys.exit(1)
    if answer.status == 403:
        click.echo(f"squidpy cache: the proxy refused {what} (403)", err=True)
        click.echo(explain_refusal(config, answer), err=True)
        sys.exit(1)


def explain_refusal(config: Config, answer: Answer) -> str:
    """The http_access decision for the request this command made, from the configuration file."""
    from squidpy.acl.check import evaluate, render
    from squidpy.acl.checklist import AuthRequired, Checklist, ExternalPending, Undecided
    from squidpy.acl.commands import lookup_facts
    from squidpy.http.url import BadTarget, internal_target, parse_target

    host, port = _address(config)
    try:
        target = parse_target(answer.method, answer.url)
    except BadTarget as e:
        return f"  ({e.detail})"
    if answer.internal:     # addressed to the proxy itself: it checks http://VISIBLE_HOSTNAME:PORT/path
        target = internal_target(target.path, config.visible_hostname, port)
    ch = Checklist(src=answer.client_ip, method=answer.method, url=target.url, scheme=target.scheme,
                   host=target.host, port=target.port, path=target.path,
                   request_headers=[(b"Host", _authority(host, port).encode())], local_ip=host,
                   local_port=port, port_name=config.http_port[0].name, ip_literal=target.ip_literal)
    ch.to_proxy = answer.internal
    try:
        report = evaluate(config.http_access, ch, lookup_facts(target, answer.client_ip), config.deny_info)
    except AuthRequired:
        return "  (an authentication ACL decides: this command sends no credentials)"
    except ExternalPending as p:
        return f"  (external_acl_type {p.type_name}'s helper decides: this command does not run helpers)"
    except Undecided:
        return "  (an external ACL helper could not decide)"
    if report.verdict.allowed:
        return (f"  {config.source} allows this request now: was it changed without "
                "'squidpy signal reconfigure'?")
    return render(report, ch)


@click.group()
@config_option
def cache() -> None:
    """Look at and purge the running squidpy's cache."""


@cache.command()
@config_option
@click.option("--json", "raw_json", is_flag=True, help="the figures as JSON, for scripts")
def stats(raw_json: bool) -> None:
    """Entries, bytes, and hit ratios by requests and by bytes."""
    config = load_config()
    answer = _ask(config, "GET", "/squid-internal-mgr/info?format=json")
    if answer is not None:
        _denied(config, answer, "the cache manager")
        try:
            info: JsonObject = json.loads(answer.body)
        except ValueError:
            click.echo(answer.body.decode("utf-8", "replace"), nl=False)
            return
        click.echo(as_json(info) if raw_json else format_stats(info))
        return
    disk = _offline_store(config)
    try:
        info = {"running": False, "cache_dir": disk.path, "disk_entries": sum(1 for _ in disk.entries()),
                "disk_bytes": disk.cache.volume(), "disk_limit_bytes": disk.cache.size_limit}
    finally:
        disk.close()
    click.echo(as_json(info) if raw_json else format_stats(info))


def as_json(info: JsonObject) -> str:
    return json.dumps(info, indent=1)


def _size(n: int) -> str:
    from squidpy.log.report import human_bytes
    return f"{human_bytes(n)} ({n:,} bytes)" if n >= 1024 else f"{n:,} bytes"


def _duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    text = time.strftime("%Hh %Mm %Ss", time.gmtime(rest))
    return f"{days}d {text}" if days else text


def format_stats(info: JsonObject) -> str:
    """The manager's figures for people: labelled, ratios as percentages, sizes with units."""
    rows = []
    if info.get("running") is False:
        rows.append(("squidpy", "not running: figures read from the cache_dir"))
    if "version" in info:
        rows.append(("squidpy", f"{info['version']}, process {info.get('pid', '?')}"
                     + (f" (kid{info['kid']})" if "kid" in info else "")))
    if "uptime_seconds" in info:
        rows.append(("up", _duration(info["uptime_seconds"])))
    if "client_connections" in info:
        rows.append(("client connections", f"{info['client_connections']:,}"))
    if "requests" in info:
        rows.append(("requests", f"{info['requests']:,}"))
        rows.append(("hits", f"{info['hits']:,} ({info['hit_ratio'] * 100:.1f}% of requests)"))
        rows.append(("bytes sent", _size(info["bytes"])))
        rows.append(("bytes from the cache", f"{_size(info['hit_bytes'])}, {info['byte_hit_ratio'] * 100:.1f}%"))
    if "memory_entries" in info:
        rows.append(("memory", f"{info['memory_entries']:,} objects, {_size(info['memory_bytes'])} "
                               f"of {_size(info['memory_limit_bytes'])}"))
    if "cache_dir" in info:
        entries = f"{info['disk_entries']:,} objects, " if "disk_entries" in info else ""
        rows.append(("cache_dir", f"{info['cache_dir']}: {entries}{_size(info['disk_bytes'])} "
                                  f"of {_size(info['disk_limit_bytes'])}"))
    shown = {"running", "version", "pid", "kid", "uptime_seconds", "client_connections", "requests", "hits",
             "hit_ratio", "bytes", "hit_bytes", "byte_hit_ratio", "memory_entries", "memory_bytes",
             "memory_limit_bytes", "cache_dir", "disk_entries", "disk_bytes", "disk_limit_bytes"}
    for key, value in info.items():
        if key not in shown:
            text = f"{value:,}" if isinstance(value, int) else f"{value:.3g}" if isinstance(value, float) else value
            rows.append((key.replace("_", " "), text))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


@cache.command(name="ls")
@click.argument("pattern", default="")
@config_option
def ls(pattern: str) -> None:
    """Stored objects (URL, status, size, tier) whose URL contains PATTERN (plain text)."""
    from squidpy.mgr.internal import url_contains
    config = load_config()
    answer = _ask(config, "GET", "/squid-internal-mgr/objects?" + urllib.parse.urlencode({"pattern": pattern}))
    if answer is not None:
        _denied(config, answer, "the cache manager")
        click.echo(answer.body.decode("utf-8", "replace"), nl=False)
        return
    disk = _offline_store(config)
    try:
        for _, meta in disk.entries():
            if url_contains(meta["url"], pattern):
                click.echo(f"{meta['url']} {meta['status']} {meta['body_size']} disk")
    finally:
        disk.close()


@cache.command()
@click.argument("urls", nargs=-1, required=True)
@config_option
def purge(urls: tuple[str, ...]) -> None:
    """Remove URLs from the cache (Squid's PURGE); exit 1 if one was not cached."""
    config = load_config()
    missing = 0
    for url in urls:
        answer = _ask(config, "PURGE", url)
        if answer is None:
            from squidpy.cache.store import Store
            disk = _offline_store(config)
            counts: list[int] = []
            try:
                Store(0, 0, disk).remove_url(url, counts.append)
            finally:
                disk.close()        # (waits for the writer thread)
            removed = sum(counts)
            status = 200 if removed else 404
        else:
            status = answer.status
            _denied(config, answer, "PURGE")
        click.echo(f"{url}: {'purged' if status == 200 else 'not cached'}")
        missing += status != 200
    sys.exit(1 if missing else 0)
