"""Render the manual pages: squidpy(1) from the click commands, squidpy.conf(5) from the
directive registry (the same source as docs/reference.md).

``python -m squidpy.manpages [DIR]`` writes ``DIR/squidpy.1`` and ``DIR/squidpy.conf.5``
(default: ``man/``, which setup.cfg installs under share/man); a test fails when the
committed pages and the sources disagree.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from squidpy import __version__

if TYPE_CHECKING:
    from squidpy.config.registry import Directive

FOOTER = f"squidpy {__version__}"


def roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphen-minus escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


def _help(command: click.Command) -> list[str]:
    return _paragraphs(command.help or "")


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or param is command.get_help_option(ctx):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{roff(names)}\\fR", roff(help_text or "")]
    return out


def _usage(command: click.Command, ctx: click.Context) -> str:
    """What follows the command's name in a synopsis: [OPTIONS] and the arguments, as click says."""
    return " ".join(command.collect_usage_pieces(ctx))


def _commands(group: click.Group, ctx: click.Context, prefix: str) -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, "list_commands names only the group's own commands"
        sub = click.Context(command, info_name=name, parent=ctx)
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out += [f'.SS "{roff(path)} [\\-f \\fIFILE\\fR] \\fICOMMAND\\fR"']
            for paragraph in _help(command):
                out += [roff(paragraph), ".PP"]
            out += _options(command, sub)
            out += _commands(command, sub, path)
            continue
        out.append(f'.SS "{roff(path)} {roff(_usage(command, sub))}"')
        for paragraph in _help(command):
            out += [roff(paragraph), ".PP"]
        out += _options(command, sub)
    return out


def squidpy_1() -> str:
    """squidpy(1): every command, its arguments and options, from the click definitions."""
    from squidpy.cli import main

    ctx = click.Context(main, info_name="squidpy")
    lines = [
        f'.TH SQUIDPY 1 "" "{FOOTER}" "squidpy manual"',
        ".SH NAME",
        "squidpy \\- a caching forward proxy in the style of Squid",
        ".SH SYNOPSIS",
        ".B squidpy",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".SH DESCRIPTION",
        roff("squidpy is a caching forward proxy written in Python on Twisted. It reads Squid's "
             "squid.conf syntax (see squidpy.conf(5)), speaks Squid's ACL language, writes Squid's "
             "access.log format and answers to squidpy signal the way Squid answers to squid -k."),
        ".PP",
        roff("In every command, -f FILE (or --config FILE) names the configuration file; without it "
             "the embedded default configuration is used (the same text as etc/squidpy.conf). The "
             "command groups cache and logs take it before or after the subcommand's name."),
        ".SH COMMANDS",
    ]
    lines += _commands(main, ctx, "squidpy")
    lines += [
        ".SH EXIT STATUS",
        roff("0 on success; 1 when the configuration has errors, squidpy cannot start (a port in use, "
             "a cache_dir it cannot write, an access log it cannot open: one line on standard error "
             "and FATAL in cache_log), or a log under on-error=die failed while running; 2 for a "
             "command line it cannot understand."),
        ".SH FILES",
        ".TP", "\\fI/etc/squidpy/squidpy.conf\\fR", roff("the configuration of a system installation"),
        ".TP", "\\fI~/.local/state/squidpy/\\fR",
        roff("logs and pid file of the embedded default configuration ($XDG_STATE_HOME/squidpy)"),
        ".SH SEE ALSO",
        "\\fBsquidpy.conf\\fR(5), \\fBsquid\\fR(8), \\fBsystemd.service\\fR(5)",
    ]
    return "\n".join(lines) + "\n"


def squidpy_conf_5() -> str:
    """squidpy.conf(5): every directive, from the registry docs/reference.md is made of."""
    import squidpy.config.loader  # noqa: F401  (fills the registry)
    from squidpy.config.reference import HEADER
    from squidpy.config.registry import APPEND, DIRECTIVES, IMPLEMENTED

    intro = [p for p in _paragraphs(HEADER.split("\n", 2)[2]) if "do not edit it by hand" not in p]
    lines = [
        f'.TH SQUIDPY.CONF 5 "" "{FOOTER}" "squidpy manual"',
        ".SH NAME",
        "squidpy.conf \\- configuration file of squidpy",
        ".SH DESCRIPTION",
    ]
    for paragraph in intro:
        lines += [roff(paragraph.replace("`", "")), ".PP"]
    sections: dict[str, list[Directive]] = {}
    for d in DIRECTIVES.values():
        if d.status == IMPLEMENTED:
            sections.setdefault(d.section, []).append(d)
    for section, items in sections.items():
        lines.append(f'.SH "{roff(section.upper())}"')
        for d in items:
            lines += [f".SS {d.name}", ".nf", f"\\fB{roff(d.name)}\\fR {roff(d.syntax)}", ".fi"]
            if d.default is not None:
                lines += [".PP", "Default:", ".nf"]
                lines += [roff(f"{d.name} {line}") for line in d.default.split("\n")]
                lines.append(".fi")
            else:
                lines += [".PP", "Default: none"]
            if d.kind == APPEND:
                lines += [".PP", "May be given several times; each line adds one."]
            lines += [".PP", roff(d.doc)]
    lines += [".SH SEE ALSO", "\\fBsquidpy\\fR(1), \\fBsquid\\fR(8)"]
    return "\n".join(lines) + "\n"


PAGES = {"squidpy.1": squidpy_1, "squidpy.conf.5": squidpy_conf_5}


def write(directory: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, render in PAGES.items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(render())
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(sys.argv[1] if len(sys.argv) > 1 else "man"):
        print(path)
