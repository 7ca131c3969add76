"""``squidpy cache stats|ls|purge``: the cache, seen from the command line.

Like ``squidclient mgr:info`` and ``squidclient -m PURGE``, the commands ask
the running squidpy over HTTP on its first http_port (the cache manager
pages and the PURGE method, both governed by http_access).  When squidpy is
not running, ``stats``, ``ls`` and ``purge`` read or change the cache_dir
directly.
"""

from __future__ import annotations

import http.client
import sys
import urllib.parse

import click


def _address(config) -> tuple[str, int]:
    listen = config.http_port[0]
    host = listen.host or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return host, listen.port


def _ask(config, method: str, target: str) -> tuple[int, bytes] | None:
    """None when nothing listens (squidpy is not running)."""
    host, port = _address(config)
    if port == 0:
        return None         # 'http_port 0' is chosen at start: only the cache_dir is reachable
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, target, headers={"Host": f"{host}:{port}"})
        response = conn.getresponse()
        return response.status, response.read()
    except ConnectionRefusedError:
        return None
    except OSError as e:
        click.echo(f"squidpy cache: cannot reach {host}:{port}: {e}", err=True)
        sys.exit(2)
    finally:
        conn.close()


def _offline_store(config):
    if config.cache_dir is None:
        click.echo("squidpy cache: squidpy is not running and there is no cache_dir "
                   "(a memory-only cache lives and dies with the process)", err=True)
        sys.exit(1)
    from squidpy.cache.store import DiskTier
    return DiskTier(config.cache_dir.path, config.cache_dir.size_mb)


def _denied(status: int, what: str) -> None:
    if status == 403:
        click.echo(f"squidpy cache: the proxy refused {what} (403): see http_access and the "
                   "manager / PURGE ACLs in docs/cache.md", err=True)
        sys.exit(1)


@click.group()
@click.option("-f", "config_path", type=click.Path(dir_okay=False), help="configuration file")
@click.pass_context
def cache(ctx, config_path):
    """Look at and purge the running squidpy's cache."""
    from squidpy.cli import _load
    ctx.obj = _load(config_path)


@cache.command()
@click.pass_obj
def stats(config):
    """Entries, bytes, and hit ratios by requests and by bytes."""
    answer = _ask(config, "GET", "/squid-internal-mgr/info")
    if answer is not None:
        status, body = answer
        _denied(status, "the cache manager")
        click.echo(body.decode("utf-8", "replace"), nl=False)
        return
    disk = _offline_store(config)
    try:
        entries = sum(1 for _ in disk.entries())
        click.echo(f"squidpy is not running; cache_dir {disk.path}:\n"
                   f"disk_entries: {entries}\ndisk_bytes: {disk.cache.volume()}\n"
                   f"disk_limit_bytes: {disk.cache.size_limit}")
    finally:
        disk.close()


@cache.command(name="ls")
@click.argument("pattern", default="")
@click.pass_obj
def ls(config, pattern):
    """Stored objects (URL, status, size, tier) whose URL contains PATTERN (plain text)."""
    from squidpy.proxy.internal import url_contains
    answer = _ask(config, "GET", "/squid-internal-mgr/objects?" + urllib.parse.urlencode({"pattern": pattern}))
    if answer is not None:
        status, body = answer
        _denied(status, "the cache manager")
        click.echo(body.decode("utf-8", "replace"), nl=False)
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
@click.pass_obj
def purge(config, urls):
    """Remove URLs from the cache (Squid's PURGE); exit 1 if one was not cached."""
    missing = 0
    for url in urls:
        answer = _ask(config, "PURGE", url)
        if answer is None:
            from squidpy.cache.store import Store
            disk = _offline_store(config)
            try:
                removed = Store(0, 0, disk).remove_url(url)
            finally:
                disk.close()
            status = 200 if removed else 404
        else:
            status = answer[0]
            _denied(status, "PURGE")
        click.echo(f"{url}: {'purged' if status == 200 else 'not cached'}")
        missing += status != 200
    sys.exit(1 if missing else 0)
