"""Turn squid.conf text into directive lines.

This is the lexical layer only: comments, ``\\`` continuations, ``include``
(with globs), ``${macro}`` expansion and quoting.  What a directive means is
decided by :mod:`squidpy.config.directives`.

Squid's rules, kept here: a comment starts at a ``#`` that begins a word
(a ``#`` inside a word is data, as in a ``url_regex``); a line ending in
``\\`` continues on the next one; ``include`` paths may be globs.
squidpy resolves a relative ``include`` path against the directory of the
file that includes it, so a configuration tree can be moved as a whole.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

MAX_INCLUDE_DEPTH = 16


class Quoted(str):
    """A token written in double quotes: for ``acl`` values it names a file."""

    __slots__ = ()


@dataclass
class ConfigError(Exception):
    """One problem in a configuration file, reported as ``FILE:LINE: message``."""

    filename: str
    lineno: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "WARNING: " if self.warning else ""
        return f"{self.filename}:{self.lineno}: {kind}{self.message}"


@dataclass
class ConfigLine:
    """One directive, its argument text, and where it was written."""

    filename: str
    lineno: int
    name: str
    rest: str          # the text after the name, macros expanded

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.lineno}"

    @property
    def args(self) -> list[str]:
        """The arguments split on blanks (raises ValueError on a stray quote)."""
        return tokenize(self.rest)

    @property
    def text(self) -> str:
        return f"{self.name} {self.rest}".rstrip()


_MACRO = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def tokenize(text: str) -> list[str]:
    """Split a directive line on blanks; ``"..."`` is one :class:`Quoted` token."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise ValueError("missing closing quote")
            tokens.append(Quoted(text[i + 1:end]))
            i = end + 1
            continue
        if c == "#":
            break       # a token starting with '#' begins a trailing comment
        j = i
        while j < n and text[j] not in " \t":
            j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def expand_macros(text: str, macros: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        try:
            return macros[m.group(1)]
        except KeyError:
            raise ValueError(f"unknown macro ${{{m.group(1)}}}") from None

    return _MACRO.sub(sub, text) if "${" in text else text


def logical_lines(text: str):
    """Yield ``(lineno, line)`` with continuations joined and comments dropped."""
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not pending:
            start = lineno
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, " ".join(pending).strip()
        pending = []
    if pending:
        yield start, " ".join(pending).strip()


def read_config(
    text: str,
    filename: str,
    macros: dict[str, str],
    errors: list[ConfigError],
    depth: int = 0,
):
    """Yield every :class:`ConfigLine` of ``text``, following ``include``.

    Problems are appended to ``errors`` and the offending line skipped, so a
    single pass reports every error of a file.
    """
    for lineno, line in logical_lines(text):
        try:
            expanded = expand_macros(line, macros)
        except ValueError as e:
            errors.append(ConfigError(filename, lineno, str(e)))
            continue
        name, _, rest = expanded.partition(" ")
        if "\t" in name:
            name, _, more = name.partition("\t")
            rest = f"{more} {rest}"
        entry = ConfigLine(filename, lineno, name, rest.strip())
        if name == "include":
            try:
                args = entry.args
            except ValueError as e:
                errors.append(ConfigError(filename, lineno, str(e)))
                continue
            yield from _include(args, filename, lineno, macros, errors, depth)
            continue
        yield entry


def _include(args, filename, lineno, macros, errors, depth):
    if not args:
        errors.append(ConfigError(filename, lineno, "include needs a file name"))
        return
    if depth >= MAX_INCLUDE_DEPTH:
        errors.append(ConfigError(filename, lineno, f"include nested deeper than {MAX_INCLUDE_DEPTH} levels"))
        return
    base = os.path.dirname(os.path.abspath(filename))
    for pattern in args:
        path = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        if not matches and glob.has_magic(path):
            errors.append(ConfigError(filename, lineno, f"include {pattern}: no file matches", warning=True))
        for match in matches:
            try:
                with open(match, encoding="utf-8") as f:
                    included = f.read()
            except OSError as e:
                errors.append(ConfigError(filename, lineno, f"include {match}: {e.strerror}"))
                continue
            yield from read_config(included, match, macros, errors, depth + 1)


def read_value_file(path: str, base: str) -> list[tuple[int, str]]:
    """Values from a file named in quotes: one per line, ``#`` comment lines.

    Returns ``(lineno, value)`` pairs; raises ``OSError`` when unreadable.
    """
    full = path if os.path.isabs(path) else os.path.join(base, path)
    values: list[tuple[int, str]] = []
    with open(full, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            values.append((lineno, line))
    return values
