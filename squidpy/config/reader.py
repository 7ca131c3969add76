"""Turn squid.conf text into directive lines, and lines into words, as Squid 5.7 does.

This is the lexical layer only; what a directive means is decided by
:mod:`squidpy.config.directives`.  Squid's rules (its ``parseOneConfigFile``
and ``ConfigParser``), kept here:

* Files are bytes: each byte is one character (Latin-1), so an accented
  comment in any 8-bit encoding reads without error and a regular expression
  matches the same bytes Squid's does.
* Each physical line loses everything from its first CR and its leading blanks.
  A line that is then empty or starts with ``#`` is skipped, even in the middle
  of a ``\\`` continuation: ``acl a dstdomain .a.com \\`` / ``# .b.com \\`` /
  ``.c.com`` is ``acl a dstdomain .a.com .c.com``.
* A line ending in ``\\`` (nothing after it, not even a blank) continues on the
  next one, joined as written, without an added blank: ``.face\\`` + ``book.com``
  is ``.facebook.com``.  A continuation still open at the end of a file is
  dropped, as Squid drops it (with a warning here).
* ``${service_name}``, ``${process_name}`` and ``${process_number}`` (and
  squidpy's ``${hostname}``, ``${state_dir}``, ``${cache_root}``) are replaced
  in the joined line; another ``${...}`` stays as written.
* ``if true|false|N = M`` / ``else`` / ``endif`` select lines within one file.
* ``include PATH ...`` reads files (glob patterns, nested at most 16 deep); a
  pattern that matches no file is an error, as it is fatal in Squid.
* Words are separated by blanks; a word starting with ``#`` ends the line.
  With ``configuration_includes_quoted_values on``, ``"quoted values"`` (with
  ``\\`` escapes) and ``parameters("FILE")`` are recognised and bare words may
  hold only letters, digits and ``.,()-=_/:+``.

squidpy resolves a relative path (``include``, value files) against the
directory of the file that names it, so a configuration tree can be moved as a
whole; Squid takes it from its working directory (docs/squid-compat.md).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from squidpy.config.values import squid_integer

MAX_INCLUDE_DEPTH = 16
W_SPACE = " \t\n\r"                      # Squid's w_space: what separates words
C_SPACE = " \t\n\v\f\r"                  # isspace(): what is stripped around lines
_STRICT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,()-=_/:+")


def read_bytes(path: str) -> str:
    """A configuration or value file as text, one character per byte (raises OSError)."""
    with open(path, "rb") as f:
        return f.read().decode("latin-1")


class FileWord(str):
    """A word read from a ``parameters("FILE")`` file; ``where`` is its ``file:line``."""

    where: str

    def __new__(cls, text: str, where: str) -> FileWord:
        word = super().__new__(cls, text)
        word.where = where
        return word


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
    def text(self) -> str:
        return f"{self.name} {self.rest}".rstrip()


# ---------------------------------------------------------------- words

SIMPLE, QUOTED, FUNCTION = "simple", "quoted", "function"


def _unquote(text: str, i: int) -> tuple[str, int]:
    """The quoted word starting at ``text[i]``; returns it and where reading goes on."""
    quote = text[i]
    out = []
    j = i + 1
    n = len(text)
    while j < n and text[j] != quote:
        c = text[j]
        if c == "\\":
            j += 1
            c = text[j] if j < n else ""
            if c in ("r", "n", "t"):
                c = {"r": "\r", "n": "\n", "t": "\t"}[c]
            elif c.isascii() and c.isalnum():
                raise ValueError(f"unsupported escape sequence '\\{c}' in a quoted value")
        out.append(c)
        j += 1
    if j >= n:
        raise ValueError(f"missing closing quote in {text[i:]}")
    after = j + 1
    if after < n and text[after] not in W_SPACE + "()#":
        raise ValueError(f"expecting a blank after the quoted value {text[i:after]}")
    return "".join(out), after


def next_word(text: str, pos: int, quoted_values: bool, quoted_pair: bool = False,
              strict: bool | None = None) -> tuple[str | None, str, int]:
    """Squid's TokenParse: ``(word, kind, next_pos)``, or ``(None, SIMPLE, pos)`` at the end.

    ``quoted_pair`` is the mode of regular expressions: ``\\`` and the character
    after it stay in the word, so ``a\\ b`` is one word.  ``strict`` (Squid's
    StrictMode, by default what ``quoted_values`` is) limits the characters of
    unquoted words.
    """
    if strict is None:
        strict = quoted_values
    n = len(text)
    while pos < n and text[pos] in W_SPACE:
        pos += 1
    if pos >= n or text[pos] == "#":
        return None, SIMPLE, pos
    if quoted_values and text[pos] in "\"'":
        word, pos = _unquote(text, pos)
        return word, QUOTED, pos
    start = pos
    if quoted_pair:
        seps = W_SPACE + "\\"
    elif not quoted_values or text[pos] == "(":
        seps = W_SPACE
    else:
        seps = W_SPACE + "("
    while pos < n and text[pos] not in seps:
        pos += 1
    while quoted_pair and pos < n and text[pos] == "\\":
        if pos + 1 < n and text[pos + 1] not in "\r\n":
            pos += 2
            while pos < n and text[pos] not in seps:
                pos += 1
        else:
            raise ValueError(f"a '\\' ends the regular expression {text[start:]}")
    kind = SIMPLE
    if quoted_values and pos < n and text[pos] == "(":
        if "parameters".startswith(text[start:pos]):
            kind = FUNCTION
        else:
            raise ValueError(f"unknown configuration function {text[start:pos]}(")
    word = text[start:pos]
    if strict and kind == SIMPLE:
        for k, c in enumerate(word):
            number_percent = c == "%" and k == len(word) - 1 and word[:-1].isascii() and word[:-1].isdigit()
            if c not in _STRICT_CHARS and not number_percent:
                raise ValueError(f"character '{c}' is not allowed in the unquoted word {word} "
                                 "while configuration_includes_quoted_values is on (quote the value)")
    if pos < n and text[pos] != "#":
        pos += 1
    return word, kind, pos


class _ParamFile:
    """A ``parameters("FILE")`` file being read word by word."""

    def __init__(self, path: str):
        self.path = path
        self.lines = read_bytes(path).split("\n")
        self.lineno = 0
        self.text = ""
        self.pos = 0

    def word(self, quoted_values: bool) -> tuple[str | None, str]:
        while True:
            word, kind, self.pos = next_word(self.text, self.pos, quoted_values)
            if word is not None:
                if kind != FUNCTION:
                    word = FileWord(word, f"{self.path}:{self.lineno}")
                return word, kind
            if self.lineno >= len(self.lines):
                return None, SIMPLE
            self.text = self.lines[self.lineno]
            self.lineno += 1
            self.pos = 0


class Words:
    """The words of one directive line, read one at a time (Squid's NextToken).

    ``quoted_values`` is the state of ``configuration_includes_quoted_values``;
    ``base_dir`` resolves relative ``parameters()`` files.  Raises ValueError.
    """

    def __init__(self, text: str, quoted_values: bool = False, base_dir: str = "."):
        self.text = text
        self.pos = 0
        self.quoted_values = quoted_values
        self.strict = quoted_values         # Squid's StrictMode: on with configuration_includes_quoted_values
        self.base_dir = base_dir
        self.files: list[_ParamFile] = []
        self.kind = SIMPLE
        self.pushed: list[str] = []

    def push_back(self, word: str) -> None:
        self.pushed.append(word)

    def next(self, quoted_pair: bool = False) -> str | None:
        if self.pushed:
            return self.pushed.pop()
        while True:
            word = None
            while word is None and self.files:
                word, self.kind = self.files[-1].word(self.quoted_values)
                if word is None:
                    self.files.pop()
            if word is None:
                word, self.kind, self.pos = next_word(self.text, self.pos, self.quoted_values, quoted_pair,
                                                      self.strict)
            if word is not None and self.kind == FUNCTION:
                self._open_parameters(word)
                word = None
            if word is not None or not self.files:
                return word

    def _open_parameters(self, function: str) -> None:
        path = self.next()
        if path is None or self.kind != QUOTED:
            raise ValueError(f"{function}(: a quoted file name is missing")
        end = self.next()
        if end != ")" or self.kind != SIMPLE:
            raise ValueError(f"missing ')' after {function}(\"{path}\"")
        if len(self.files) >= MAX_INCLUDE_DEPTH:
            raise ValueError(f"parameters(\"{path}\") nested deeper than {MAX_INCLUDE_DEPTH} levels")
        full = path if os.path.isabs(path) else os.path.join(self.base_dir, path)
        try:
            self.files.append(_ParamFile(full))
        except OSError as e:
            raise ValueError(f"parameters(\"{path}\"): cannot read {full}: {e.strerror}") from None

    def peek(self, quoted_pair: bool = False) -> str | None:
        """The next word, left to be read again (in whatever mode the next read uses)."""
        if self.pushed:
            return self.pushed[-1]
        pos, kind, reading_files = self.pos, self.kind, bool(self.files)
        word = self.next(quoted_pair)
        if not reading_files and not self.files:
            self.pos, self.kind = pos, kind
        elif word is not None:
            self.push_back(word)
        return word

    def all(self, quoted_pair: bool = False) -> list[str]:
        words = []
        while (word := self.next(quoted_pair)) is not None:
            words.append(word)
        return words


def split_words(text: str, quoted_values: bool = False, base_dir: str = ".") -> list[str]:
    """Every word of ``text`` (raises ValueError on a malformed quoted value)."""
    return Words(text, quoted_values, base_dir).all()


def read_word_file(path: str) -> list[tuple[int, str]]:
    """Values from an ACL value file named in quotes (Squid's strtokFile).

    One value per line: the words up to a word starting with ``#`` (blanks
    between them kept); empty and comment lines skipped.  Returns
    ``(lineno, value)`` pairs; raises ``OSError`` when unreadable.
    """
    values: list[tuple[int, str]] = []
    for lineno, line in enumerate(read_bytes(path).split("\n"), 1):
        words = []
        for word in line.split():
            if word.startswith("#"):
                break
            words.append(word)
        if words:
            start = line.index(words[0])
            end = start
            for word in words:
                end = line.index(word, end) + len(word)
            values.append((lineno, line[start:end]))
    return values


# ---------------------------------------------------------------- lines

_MACRO = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_macros(text: str, macros: dict[str, str], unknown: list[str] | None = None) -> str:
    """Replace known ``${name}``; unknown ones stay as written (listed in ``unknown``)."""
    if "${" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        value = macros.get(m.group(1))
        if value is None:
            if unknown is not None:
                unknown.append(m.group(0))
            return m.group(0)
        return value

    return _MACRO.sub(sub, text)


def physical_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(lineno, line)`` as Squid keeps them: cut at the first CR, leading blanks gone."""
    for lineno, raw in enumerate(text.split("\n"), 1):
        cr = raw.find("\r")
        if cr >= 0:
            raw = raw[:cr]
        yield lineno, raw.lstrip(C_SPACE)


def logical_lines(text: str, dangling: list[int] | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(lineno, line)``: continuations joined, comments and blank lines gone.

    ``lineno`` is the first physical line.  A continuation left open at the end
    is dropped; its line number goes to ``dangling``.
    """
    pending = ""
    start = 0
    for lineno, line in physical_lines(text):
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = lineno
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        yield start, pending.rstrip(C_SPACE)
        pending = ""
    if pending and dangling is not None:
        dangling.append(start)


def _statement(line: str, word: str) -> str | None:
    """The text after ``word`` when the line is that statement (Squid's FindStatement)."""
    if line.startswith(word):
        after = line[len(word):]
        if not after:
            return ""
        if after[0] in C_SPACE:
            return after.lstrip(C_SPACE)
    return None


def eval_condition(expr: str) -> bool:
    """``if`` conditions: ``true``, ``false`` or ``N = M`` (integers); raises ValueError."""
    if expr == "true":
        return True
    if expr == "false":
        return False
    if "=" in expr:
        left, _, right = expr.partition("=")
        try:
            return squid_integer(left.strip(C_SPACE)) == squid_integer(right.strip(C_SPACE))
        except ValueError:
            raise ValueError(f"'{expr}' compares something that is not an integer number") from None
    raise ValueError(f"cannot evaluate the condition '{expr}' (true, false or N = M)")


def read_config(
    text: str,
    filename: str,
    macros: dict[str, str],
    errors: list[ConfigError],
    depth: int = 0,
    warnings: list[ConfigError] | None = None,
) -> Iterator[ConfigLine]:
    """Yield every :class:`ConfigLine` of ``text``, following ``include`` and ``if``.

    Problems are appended to ``errors`` (and notes to ``warnings``) and the
    offending line skipped, so a single pass reports every error of a file.
    """
    warnings = errors if warnings is None else warnings
    states: list[tuple[bool, int]] = []       # (taking lines, line of the 'if')
    dangling: list[int] = []
    for lineno, line in logical_lines(text, dangling):
        unknown: list[str] = []
        line = expand_macros(line, macros, unknown)
        expr = _statement(line, "if")
        if expr is not None:
            try:
                states.append((eval_condition(expr), lineno))
            except ValueError as e:
                errors.append(ConfigError(filename, lineno, str(e)))
                states.append((False, lineno))
            continue
        if _statement(line, "endif") is not None:
            if states:
                states.pop()
            else:
                errors.append(ConfigError(filename, lineno, "'endif' without 'if'"))
            continue
        if _statement(line, "else") is not None:
            if states:
                states[-1] = (not states[-1][0], states[-1][1])
            else:
                errors.append(ConfigError(filename, lineno, "'else' without 'if'"))
            continue
        if states and not states[-1][0]:      # Squid looks at the innermost 'if' only
            continue
        for macro in dict.fromkeys(unknown):
            warnings.append(ConfigError(filename, lineno, f"{macro} is not a known macro; it is kept as written",
                                        warning=True))
        if line.startswith("include") and len(line) >= 9 and line[7] in C_SPACE:
            yield from _include(line[8:], filename, lineno, macros, errors, depth, warnings)
            continue
        name = line
        rest = ""
        for i, c in enumerate(line):
            if c in W_SPACE:
                name, rest = line[:i], line[i + 1:]
                break
        yield ConfigLine(filename, lineno, name, rest.strip(W_SPACE))
    for _, if_line in states:
        errors.append(ConfigError(filename, if_line, "'if' without 'endif'"))
    for start in dangling:
        warnings.append(ConfigError(filename, start, "the file ends inside a '\\' continuation; "
                                    "that line is ignored, as Squid ignores it", warning=True))


def include_paths(text: str) -> list[str]:
    """The words of an ``include`` line (Squid's strwordtok: ``"..."`` may hold blanks)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in C_SPACE:
            i += 1
        if i >= n:
            break
        word: list[str] = []
        quoted = False
        while i < n:
            c = text[i]
            if c == "\\":
                if quoted:
                    i += 1
                c = text[i] if i < n else ""
                word.append({"n": "\n", "r": "\r"}.get(c, c) if quoted else c)
                i += 1
            elif c == '"':
                quoted = not quoted
                i += 1
            elif not quoted and c in C_SPACE:
                i += 1
                break
            else:
                word.append(c)
                i += 1
        words.append("".join(word))
    return words


def _include(text: str, filename: str, lineno: int, macros: dict[str, str], errors: list[ConfigError],
             depth: int, warnings: list[ConfigError] | None) -> Iterator[ConfigLine]:
    paths = include_paths(text)
    if depth >= MAX_INCLUDE_DEPTH:
        errors.append(ConfigError(filename, lineno, f"include nested deeper than {MAX_INCLUDE_DEPTH} levels"))
        return
    base = os.path.dirname(os.path.abspath(filename))
    matches: list[str] = []
    for pattern in paths:
        path = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        found = sorted(glob.glob(path)) if glob.has_magic(path) else ([path] if os.path.lexists(path) else [])
        if not found:
            errors.append(ConfigError(filename, lineno, f"include: no configuration file matches {pattern}"))
            return
        matches.extend(found)
    for match in matches:
        try:
            included = read_bytes(match)
        except OSError as e:
            errors.append(ConfigError(filename, lineno, f"include: cannot read {match}: {e.strerror}"))
            continue
        yield from read_config(included, match, macros, errors, depth + 1, warnings)
