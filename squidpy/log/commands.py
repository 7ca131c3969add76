"""``squidpy logs tail`` and ``squidpy logs report``: reading access logs for auditing.

Both read squidpy's and Squid's logs alike (native ``squid`` format, also
``common`` and ``combined``), plain or gzip-rotated.  Without a FILE they
read the first file ``access_log`` of the configuration (``squidpy logs -f
CONFIG ...``, default: the embedded configuration).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import deque

import click

from squidpy.cli_options import config_option, load_config
from squidpy.log import files as logfiles
from squidpy.log.filters import Selection, parse_network, parse_status, parse_when
from squidpy.config.loader import looks_like_configuration
from squidpy.log.parse import PARSERS, Record, is_denied, is_hit, parse_line


@click.group("logs")
@config_option
def logs():
    """Read access logs: follow them (tail) and sum them up (report).

    Without a FILE they read the first access_log file of the configuration
    (-f CONFIG, before or after the subcommand's name)."""


def _default_log() -> str:
    config = load_config()
    for spec in config.access_log:
        if spec.destination.is_file and spec.destination.path is not None:
            return spec.destination.path
    raise click.UsageError("the configuration has no access_log file: name the FILE to read")


def _refuse_configuration(path: str) -> None:
    """A configuration given where a log is expected (``logs tail squidpy.conf``) is
    refused, not followed as a log that never matches."""
    if path == "-" or not os.path.isfile(path):
        return
    try:
        head = logfiles.first_lines(path, 200)
    except (OSError, EOFError):
        return
    if looks_like_configuration(head):
        raise click.UsageError(f"{path} is a squidpy configuration, not an access log: "
                               f"give it with -f {path} to read the log it names")


def _when(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_when(value, time.time())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


def _parser(fmt: str):
    return parse_line if fmt == "auto" else PARSERS[fmt]


FORMAT_CHOICE = click.Choice(["auto", "squid", "common", "combined"])

# ------------------------------------------------------------ tail


def render_record(r: Record) -> str:
    """A log line for people: the local date and time instead of epoch seconds."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time)) + f".{int(r.time * 1000) % 1000:03d}"
    elapsed = "-" if r.elapsed is None else str(r.elapsed)
    result = f"{r.result or '-'}/{r.status:03d}"
    peer = f"{r.hierarchy or '-'}/{r.peer or '-'}"
    return f"{stamp} {elapsed:>6} {r.client} {result} {r.size} {r.method} {r.url} {r.user or '-'} {peer} {r.mime or '-'}"


def colour_of(r: Record) -> str | None:
    if is_denied(r.result):
        return "red"
    if r.status >= 500 or r.status == 0:
        return "magenta"
    if r.status >= 400:
        return "yellow"
    if is_hit(r.result):
        return "green"
    return None


def record_json(r: Record) -> str:
    d = r.as_dict()
    d["iso_time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.time)) + \
        f".{int(r.time * 1000) % 1000:03d}" + time.strftime("%z", time.localtime(r.time))
    d["denied"] = is_denied(r.result)
    return json.dumps(d, separators=(",", ":"))


def _selection(denied, client, user, domain, status, method, result, since, until, grep) -> Selection:
    try:
        return Selection(
            denied=denied, clients=[parse_network(c) for c in client], users=list(user), domains=list(domain),
            statuses=[parse_status(s) for s in status], methods=list(method), results=list(result),
            since=_when(since, "--since"), until=_when(until, "--until"),
            grep=re.compile(grep) if grep else None)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    except re.error as e:
        raise click.BadParameter(f"--grep: {e}") from None


def _filter_options(f):
    for decorator in reversed([
        click.option("--denied", is_flag=True, help="only denied requests (TCP_DENIED...)"),
        click.option("--client", multiple=True, metavar="CIDR", help="client address or network (repeatable)"),
        click.option("--user", multiple=True, metavar="NAME", help="user name (repeatable)"),
        click.option("--domain", multiple=True, metavar="SUFFIX", help="domain and its subdomains (repeatable)"),
        click.option("--status", multiple=True, metavar="CODE", help="status code like 404, or class like 4xx"),
        click.option("--method", multiple=True, metavar="METHOD", help="request method (repeatable)"),
        click.option("--result", multiple=True, metavar="CODE",
                     help="Squid result code; TCP_MISS also matches TCP_MISS_ABORTED"),
        click.option("--since", metavar="TIME", help="from TIME: 2026-11-23, '2026-11-23 08:00', 08:00, yesterday, "
                                                     "monday, 2h, 7d"),
        click.option("--until", metavar="TIME", help="before TIME (same forms as --since)"),
        click.option("--grep", metavar="REGEX", help="lines matching a regular expression"),
    ]):
        f = decorator(f)
    return f


class _TailCommand(click.Command):
    """``tail -f`` is a habit: say what -f means here when it comes without a file."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.BadOptionUsage as e:
            if e.option_name == "-f":
                raise click.BadOptionUsage("-f", "-f names the configuration file; "
                                                 "-F (--follow) follows the log, like tail -F", ctx) from None
            raise


@logs.command(cls=_TailCommand)
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@config_option
@click.option("-F", "--follow", is_flag=True, help="keep reading new lines, across rotation (like tail -F)")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="how many of the last matching lines to show first")
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, for machines")
@click.option("--color/--no-color", "colour", default=None, help="colour (default: when writing to a terminal)")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="auto", show_default=True, help="log format")
def tail(file, follow, count, denied, client, user, domain, status, method, result, since, until, grep,
         as_json, colour, fmt):
    """Show the last lines of an access log, filtered, with readable times; -F follows it.

    FILE '-' reads standard input (zcat -f access.log* | squidpy logs tail - ...).

    Denied requests are red on a terminal, errors yellow (4xx) or magenta
    (5xx), cache hits green.  Filters combine: every filter given must match
    (a repeated filter matches any of its values).
    """
    path = file or _default_log()
    if file:
        _refuse_configuration(file)
    selection = _selection(denied, client, user, domain, status, method, result, since, until, grep)
    wanted = selection.predicate()
    parser = _parser(fmt)
    show_raw = selection.empty

    def keep(line: str) -> bool:
        r = parser(line)
        return wanted(r) if r is not None else show_raw

    def emit(line: str) -> None:
        r = parser(line)
        if r is None:
            if show_raw:
                click.echo(json.dumps({"malformed": line}) if as_json else click.style(line, dim=True), color=colour)
            return
        if not wanted(r):
            return
        if as_json:
            click.echo(record_json(r))
        else:
            text, fg = render_record(r), colour_of(r)
            click.echo(click.style(text, fg=fg, bold=fg == "red") if fg else text, color=colour)

    if path == "-":
        if follow:
            raise click.UsageError("-F follows a file, not standard input")
        stdin = click.get_binary_stream("stdin")
        last: deque = deque(maxlen=count)
        for raw in stdin:
            line = raw.decode("latin-1").rstrip("\r\n")
            if line and keep(line):
                last.append(line)
        for line in last:
            emit(line)
        return
    if not os.path.exists(path) and not follow:
        raise click.FileError(path, "no such file")
    try:
        if os.path.exists(path):
            for line in logfiles.last_lines(path, count, keep):
                emit(line)
        if follow:
            for line in logfiles.follow(path, from_end=os.path.exists(path)):
                emit(line)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        sys.stderr.close()


# ------------------------------------------------------------ report


@logs.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@config_option
@_filter_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="rows in each top list")
@click.option("--min-requests", type=click.IntRange(min=1), default=5, show_default=True,
              help="requests a domain needs to be ranked among the slowest")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, writable=True),
              help="also write a self-contained HTML page with charts to this file")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="auto", show_default=True, help="log format")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: on a terminal)")
def report(files, denied, client, user, domain, status, method, result, since, until, grep,
           top, min_requests, html_out, fmt, progress):
    """Sum up access logs: traffic, clients, users, domains, denials, cache, status.

    FILES may be plain or gzip-compressed, in any order: they are read
    oldest first and merged by time.  Without FILES: the configuration's
    access log and its rotated copies.  The filters of 'tail' narrow the
    report (who went to --domain facebook.com --since monday?).  Malformed
    lines are counted and shown, never fatal.
    """
    from squidpy.log.report import Report, render_text

    paths = list(files)
    for path in paths:
        _refuse_configuration(path)
    if not paths:
        paths = logfiles.rotated_siblings(_default_log())
        if not paths:
            raise click.UsageError("no access log found: name the FILES to read")
    selection = _selection(denied, client, user, domain, status, method, result, since, until, grep)
    wanted = selection.predicate()
    rep = Report()
    opened: list = []
    stream = logfiles.records(paths, _parser(fmt), rep.malformed.add, opened)
    if progress is None:
        progress = sys.stderr.isatty()
    total = sum(os.path.getsize(p) for p in paths)
    if progress and total:
        with click.progressbar(length=total, label="Reading", file=sys.stderr, show_eta=True) as bar:
            done = 0
            for n, r in enumerate(stream):
                if wanted(r):
                    rep.add(r)
                if n % 20000 == 0:
                    now = sum(f.position for f in opened)
                    bar.update(now - done)
                    done = now
            bar.update(total - done)
    elif selection.empty:
        add = rep.add
        for r in stream:
            add(r)
    else:
        for r in stream:
            if wanted(r):
                rep.add(r)
    click.echo(render_text(rep, top, min_requests), nl=False)
    if html_out:
        from squidpy.log.html import render_html
        with open(html_out, "w", encoding="utf-8") as out:
            out.write(render_html(rep, top, min_requests, sources=[os.path.basename(p) for p in paths]))
        click.echo(f"HTML report written to {html_out}", err=True)
