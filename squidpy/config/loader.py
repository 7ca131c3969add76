"""Load a squid.conf into a :class:`Config`, collecting every error at once.

``load(path)`` returns a Config or raises :class:`ConfigErrors` listing each
problem as ``FILE:LINE: message``; warnings ride along on ``config.warnings``.
Without a path the embedded default configuration is used (the same text as
``etc/squidpy.conf``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING

from squidpy.acl.access import AclTable
from squidpy.config import directives, helper_directives, tls_directives, unsupported  # noqa: F401  (fill the registry)
from squidpy.config.reader import ConfigError, ConfigLine, Words, expand_macros, read_bytes, read_config
from squidpy.config.registry import (
    ALIASES,
    APPEND,
    CUSTOM,
    DIRECTIVES,
    IGNORED,
    IMPLEMENTED,
    OBSOLETE,
    Directive,
    did_you_mean,
    lookup,
    refused_message,
)
from squidpy.config.settings import Settings

if TYPE_CHECKING:
    from squidpy.delay import ClientPoolSpec, PoolSpec

DEFAULT_CONFIG_NAME = "squidpy.conf"


class ConfigErrors(Exception):
    def __init__(self, errors: list[ConfigError], warnings: Iterable[ConfigError] = ()):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors
        self.warnings = list(warnings)


def state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "squidpy")


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "squidpy")


def default_macros() -> dict[str, str]:
    """``${name}`` values usable in any configuration line."""
    return {
        "service_name": "squidpy",
        "process_name": "squidpy",
        "process_number": "1",
        "hostname": socket.gethostname() or "localhost",
        "state_dir": state_dir(),
        "cache_root": cache_root(),
    }


def default_config_path() -> str:
    return str(resources.files("squidpy.config").joinpath(DEFAULT_CONFIG_NAME))


class Config(Settings):
    """Directive values as attributes named after the directives (their types are
    declared in squidpy/config/settings.py)."""

    delay_specs: list[PoolSpec]                  # delay_* lines made into pools (finish_config)
    client_delay_specs: list[ClientPoolSpec]     # client_delay_* lines made into pools

    def __init__(self, source: str):
        self.source = source                # the main file
        self.acls = AclTable()
        self.acl_lines: dict[str, list[str]] = {}
        self.tls_used: dict[str, str] = {}  # TLS directives and options met: name -> FILE:LINE
        self.warnings: list[ConfigError] = []
        self.lines: list[tuple[str, str, str]] = []         # (FILE:LINE, name, arguments) as read
        self.default_lines: list[tuple[str, str]] = []      # (name, arguments) of the defaults applied
        for d in DIRECTIVES.values():
            if d.has_value:
                setattr(self, d.name, d.initial())


class ParseContext:
    """What a directive parser may use: the config being built and the line."""

    def __init__(self, config: Config, line: ConfigLine, errors: list[ConfigError]):
        self.config = config
        self.line = line
        self._errors = errors

    def words(self) -> Words:
        """The line's words, read as Squid reads them at this point of the file."""
        return Words(self.line.rest, bool(self.config.configuration_includes_quoted_values), self.base_dir)

    def ignore_extra(self, extra: list[str]) -> None:
        """Words after what the directive takes: Squid ignores them, and so does squidpy."""
        if extra:
            self.warn(f"{self.line.name}: '{' '.join(extra)}' after the value is ignored, as Squid ignores it")

    @property
    def where(self) -> str:
        return self.line.where

    @property
    def text(self) -> str:
        return self.line.text

    @property
    def rest(self) -> str:
        return self.line.rest

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.line.filename))

    def path(self, value: str) -> str:
        """A file path; relative paths are taken from the config file's directory."""
        return value if os.path.isabs(value) else os.path.join(self.base_dir, value)

    def directory(self, value: str) -> str:
        path = self.path(value)
        if not os.path.isdir(path):
            raise ValueError(f"'{value}' is not a directory")
        return path

    def file_where(self, filename: str, lineno: int) -> str:
        return f"{self.path(filename)}:{lineno}"

    def warn(self, message: str) -> None:
        self.config.warnings.append(ConfigError(self.line.filename, self.line.lineno, message, warning=True))

    def error_at(self, where: str, message: str) -> None:
        filename, _, lineno = where.rpartition(":")
        self._errors.append(ConfigError(filename, int(lineno), message))

    def warn_at(self, where: str, message: str) -> None:
        filename, _, lineno = where.rpartition(":")
        self.config.warnings.append(ConfigError(filename, int(lineno), message, warning=True))


def load(path: str | None = None, text: str | None = None,
         macros: dict[str, str] | None = None) -> Config:
    """Parse a configuration file (or ``text`` named ``path``) with defaults applied."""
    if path is None:
        path = default_config_path()
    if text is None:
        try:
            text = read_bytes(path)
        except OSError as e:
            raise ConfigErrors([ConfigError(path, 0, f"cannot read the configuration: {e.strerror}")]) from None
    macros = default_macros() if macros is None else macros
    config = Config(path)
    errors: list[ConfigError] = []
    seen: set[str] = set()
    for line in read_config(text, path, macros, errors, warnings=config.warnings):
        config.lines.append((line.where, line.name, line.rest))
        _apply(config, line, errors, seen)
    for name, d in DIRECTIVES.items():
        if d.default is not None and name not in seen:
            for text in d.default.split("\n"):
                default_line = ConfigLine(f"<default {name}>", 0, name, expand_macros(text, macros))
                config.default_lines.append((name, default_line.rest))
                _apply(config, default_line, errors, seen)

    def warn_at(where: str, message: str) -> None:
        filename, _, lineno = where.rpartition(":")
        config.warnings.append(ConfigError(filename, int(lineno or 0), message, warning=True))

    def error_at(where: str, message: str) -> None:
        filename, _, lineno = where.rpartition(":")
        errors.append(ConfigError(filename, int(lineno or 0), message))

    directives.finish_config(config, warn_at, error_at)
    if errors:
        raise ConfigErrors(errors, config.warnings)
    return config


def looks_like_configuration(lines: list[str]) -> bool:
    """Is this the start of a squid.conf rather than a log?  Its first line that is not
    blank or a comment starts with a directive name (no log line does: they start with
    a time or an address)."""
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        word = text.split(None, 1)[0]
        return word in DIRECTIVES or word == "include"
    return False


def _apply(config: Config, line: ConfigLine, errors: list[ConfigError], seen: set[str]) -> None:
    d = lookup(line.name)
    if d is None:
        hint = did_you_mean(line.name, [*DIRECTIVES, *ALIASES])
        shown = "".join(c if " " <= c != "\x7f" else f"\\x{ord(c):02x}" for c in line.name)
        errors.append(ConfigError(line.filename, line.lineno, f"unknown directive '{shown}'{hint}"))
        return
    ctx = ParseContext(config, line, errors)
    if d.status != IMPLEMENTED:
        problem = _not_implemented(d, ctx)
        if problem:
            errors.append(ConfigError(line.filename, line.lineno, problem))
        return
    assert d.parse is not None, f"implemented directive {d.name} without a parser"
    try:
        value = d.parse([] if d.reads_line else ctx.words().all(), ctx)
    except ValueError as e:
        errors.append(ConfigError(line.filename, line.lineno, f"{line.name}: {e}"))
        return
    seen.add(d.name)
    if d.kind == APPEND:
        getattr(config, d.name).append(value)
    elif d.kind != CUSTOM:
        setattr(config, d.name, value)


def _not_implemented(d: Directive, ctx: ParseContext) -> str | None:
    """An ignored, refused or obsolete Squid directive: warn, or say why it is refused."""
    name = ctx.line.name
    try:
        value = " ".join(ctx.words().all())
    except ValueError as e:
        return f"{name}: {e}"
    if d.status == IGNORED:
        ctx.warn(f"{name} is ignored: {d.doc}")
    elif value in d.accepts:
        ctx.warn(f"{name} {value}: accepted, squidpy behaves this way without it")
    elif d.status == OBSOLETE and not d.refuse:
        ctx.warn(f"{name} is obsolete and ignored (as in Squid 5.7): {d.doc}")
    elif d.status == OBSOLETE:
        return f"{name} is obsolete: {d.doc}"
    else:
        return refused_message(name)
    return None
