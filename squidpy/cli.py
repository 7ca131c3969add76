"""The ``squidpy`` command: run, parse, signal (Squid's -N, -k parse, -k ACTION)."""

from __future__ import annotations

import os
import signal as signals
import sys

import click

from squidpy import __version__
from squidpy.cli_options import config_option, echo_problem, load_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="squidpy")
def main():
    """squidpy: a caching forward proxy in the style of Squid."""


@main.command()
@config_option
@click.option("-d", "--debug", is_flag=True, help="also print cache_log lines on stderr")
def run(debug):
    """Run the proxy in the foreground (Ctrl-C or SIGTERM stops it gracefully).

    It says on stderr which configuration it runs, where it listens and where
    its logs are; anything that stops it from starting (a port in use, a
    cache_dir it cannot write, a log it cannot open) is one line there and
    in cache_log, and the exit status is 1.  Under systemd (Type=notify) it
    reports READY, RELOADING, STOPPING and its request rate.
    """
    from squidpy.proxy import reactor as squidpy_reactor

    squidpy_reactor.import_twisted_without_tls()        # first: the kids inherit the master's modules
    config = load_config()
    if config.workers > 1:
        from squidpy.proxy.workers import Master
        sys.exit(Master(config, config.workers, debug).run())
    from squidpy.proxy.service import AlreadyRunning, ProxyService, StartupError

    reactor = squidpy_reactor.install()

    service = ProxyService(config, reactor, echo=debug)
    service.install_signal_handlers()
    try:
        service.start()
    except AlreadyRunning as e:
        click.echo(f"squidpy: {e}", err=True)
        sys.exit(1)
    except StartupError as e:
        click.echo(f"squidpy: cannot start: {e}", err=True)
        sys.exit(1)
    for line in service.startup_summary():
        click.echo(line, err=True)
    reactor.run(installSignalHandlers=False)
    sys.exit(service.exit_code)


@main.command()
@config_option
def parse():
    """Check a configuration like 'squid -k parse': exit 0 when it is valid."""
    config = load_config()
    for warning in config.warnings:
        echo_problem(warning)
    from squidpy.acl.check import https_blind_spots, https_deny_pages
    for where, note in sorted(https_blind_spots(config) + https_deny_pages(config), key=_line_order):
        click.echo(f"{where}: note: {note}", err=True)
    click.echo(f"{config.source}: OK")


def _line_order(note: tuple[str, str]) -> tuple[str, int]:
    where = note[0]
    name, _, line = where.rpartition(":")
    return (name, int(line)) if line.isdigit() else (where, 0)


SIGNALS = {
    "reconfigure": signals.SIGHUP,
    "rotate": signals.SIGUSR1,
    "shutdown": signals.SIGTERM,
    "interrupt": signals.SIGINT,
    "kill": signals.SIGKILL,
    "check": 0,
}


@main.command()
@click.argument("action", type=click.Choice(list(SIGNALS)))
@config_option
def signal(action):
    """Send ACTION to the running squidpy (like 'squid -k ACTION').

    reconfigure (SIGHUP) re-reads the configuration, rotate (SIGUSR1)
    rotates the logs, shutdown (SIGTERM) stops gracefully, check tells
    whether it is running.
    """
    config = load_config()
    from squidpy.proxy.pidfile import running_pid

    path = config.pid_filename
    if path is None:
        click.echo("squidpy: pid_filename is 'none': cannot find the running squidpy", err=True)
        sys.exit(1)
    pid, why = running_pid(path)
    if pid is None:
        click.echo(f"squidpy: no running squidpy found ({why})", err=True)
        sys.exit(1)
    try:
        os.kill(pid, SIGNALS[action])
    except ProcessLookupError:
        click.echo(f"squidpy: process {pid} from {path} is not running", err=True)
        sys.exit(1)
    except PermissionError:
        click.echo(f"squidpy: not allowed to signal process {pid}", err=True)
        sys.exit(1)
    click.echo(f"squidpy: sent {action} to process {pid}" if action != "check" else f"squidpy: running as process {pid}")



# Feature commands, each in its own module, registered here.
from squidpy.acl.commands import check  # noqa: E402
from squidpy.cache.commands import cache  # noqa: E402
from squidpy.log.commands import logs  # noqa: E402
from squidpy.tls.commands import ca  # noqa: E402

main.add_command(check)
main.add_command(cache)
main.add_command(logs)
main.add_command(ca)
