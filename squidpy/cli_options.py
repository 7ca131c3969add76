"""What every squidpy command shares: the configuration option and loading it.

The rule, the same in every command: ``-f FILE`` (``--config FILE``) names the
configuration; a command group (``cache``, ``logs``) takes it before or after
the subcommand's name.  Without it the embedded default configuration is used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from squidpy.config import loader

_Command = TypeVar("_Command", bound=Callable[..., Any])

CONFIG_HELP = "configuration file (default: the embedded default, same as etc/squidpy.conf)"
CONFIG_KEY = "squidpy.config_path"


def _remember_config(ctx, param, value):
    """Every command takes the configuration as ``-f FILE`` (``--config FILE``); a group
    (``cache``, ``logs``) takes it before or after the subcommand's name."""
    if value is None:
        return None
    if value.startswith("-"):
        raise click.BadParameter(f"'{value}' is not a file name: -f names the configuration file "
                                 "(to follow a log: logs tail -F)", param_hint="-f")
    earlier = ctx.meta.get(CONFIG_KEY)
    if earlier is not None and earlier != value:
        raise click.UsageError(f"two configuration files given: {earlier} and {value}")
    ctx.meta[CONFIG_KEY] = value
    return value


def config_option(f: _Command) -> _Command:
    """``-f FILE`` / ``--config FILE``: the configuration, the same option in every command."""
    return click.option("-f", "--config", "config_path", type=click.Path(dir_okay=False), expose_value=False,
                        callback=_remember_config, help=CONFIG_HELP)(f)


def config_path() -> str | None:
    """The configuration named by -f anywhere on the command line (None: the embedded one)."""
    return click.get_current_context().meta.get(CONFIG_KEY)


def load_config() -> loader.Config:
    return _load(config_path())


def echo_problem(problem) -> None:
    """One configuration message, its configuration text in the file's own bytes."""
    stream = click.get_text_stream("stderr")
    stream.flush()
    stream.buffer.write(str(problem).encode("latin-1", "replace") + b"\n")
    stream.buffer.flush()


def _load(path: str | None):
    """Load a configuration or exit 1 printing every error as FILE:LINE: message."""
    try:
        return loader.load(path)
    except loader.ConfigErrors as e:
        for problem in [*e.warnings, *e.errors]:
            echo_problem(problem)
        click.echo(f"squidpy: {len(e.errors)} error(s) in the configuration", err=True)
        sys.exit(1)
