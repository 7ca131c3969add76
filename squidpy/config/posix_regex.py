"""Squid's regular expressions: POSIX extended syntax as GNU regcomp reads it.

Squid compiles ``url_regex``, ``refresh_pattern`` and the other regular
expressions with ``regcomp(REG_EXTENDED | REG_NOSUB [| REG_ICASE])`` in the C
locale.  :func:`translate` parses a pattern the way glibc's parser does (the
same operators, the same context rules, the same errors with glibc's
messages) and writes an equivalent Python ``re`` pattern, so a configuration
matches exactly what it matches in Squid:

* ``[[:digit:]]`` and the other classes work; ``\\d`` is a literal ``d``,
  ``\\n`` a literal ``n``; a ``\\`` inside ``[...]`` is a backslash;
* ``\\w \\W \\s \\S \\b \\B \\< \\> \\``` ``\\'`` are GNU's (ASCII) operators;
  ``\\1``-``\\9`` are back-references;
* ``^`` and ``$`` are anchors anywhere and match only at the ends of the text;
  ``.`` matches a newline;
* ``*``, ``+``, ``?`` or ``{`` with nothing before them is an error; ``a**`` and
  ``a+?`` (which is ``(a+)?``, not a lazy ``a+``) are valid; an unmatched ``)``
  is a literal;
* with ``-i`` (REG_ICASE) glibc upper-cases the pattern and the text (ASCII
  letters only): :class:`PosixRegex` does the same, including glibc's quirks
  (an escaped lower-case letter then never matches, ``[_-z]`` is an error).

Text is one character per byte (Latin-1), as everywhere in squidpy's
configuration.  Where a Perl habit means something else here, :func:`translate`
returns a note the configuration loader shows as a warning.
"""

from __future__ import annotations

import re

RE_DUP_MAX = 0x7FFF

# glibc's regerror() messages
BADPAT = "Invalid regular expression"
ECOLLATE = "Invalid collation character"
ECTYPE = "Invalid character class name"
EESCAPE = "Trailing backslash"
ESUBREG = "Invalid back reference"
EBRACK = "Unmatched [, [^, [:, [., or [="
EPAREN = "Unmatched ( or \\("
EBRACE = "Unmatched \\{"
BADBR = "Invalid content of \\{\\}"
ERANGE = "Invalid range end"
BADRPT = "Invalid preceding regular expression"
ESIZE = "Regular expression too big"


class PosixRegexError(ValueError):
    """regcomp() refuses the pattern; the message is glibc's."""


_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_upper(text: str) -> str:
    """toupper() of the C locale: only a-z change."""
    return text.translate(_UPPER)


_Element = tuple[str, str]
"""A bracket expression's element: (char|coll|equiv|class, its text)."""


def _chars(*spans: str | tuple[int, int]) -> frozenset[int]:
    out: set[int] = set()
    for span in spans:
        if isinstance(span, str):
            out.update(ord(c) for c in span)
        else:
            out.update(range(span[0], span[1] + 1))
    return frozenset(out)


_UPPERS = _chars((0x41, 0x5A))
_LOWERS = _chars((0x61, 0x7A))
_DIGITS = _chars((0x30, 0x39))
_ALPHA = _UPPERS | _LOWERS
_ALNUM = _ALPHA | _DIGITS
_GRAPH = _chars((0x21, 0x7E))
CLASSES = {                              # the C locale's ctype classes
    "alpha": _ALPHA, "upper": _UPPERS, "lower": _LOWERS, "digit": _DIGITS,
    "xdigit": _DIGITS | _chars("abcdefABCDEF"), "space": _chars(" \t\n\v\f\r"),
    "print": _chars((0x20, 0x7E)), "punct": _GRAPH - _ALNUM, "graph": _GRAPH,
    "cntrl": _chars((0x00, 0x1F), (0x7F, 0x7F)), "blank": _chars(" \t"), "alnum": _ALNUM,
}
_WORD = _ALNUM | {ord("_")}
_ALL = frozenset(range(256))

# token types (glibc's names)
END, CHAR, BACKSLASH, ALT, STAR, PLUS, QUESTION, OPEN_DUP, CLOSE_DUP = range(9)
OPEN_SUB, CLOSE_SUB, OPEN_BRACKET, PERIOD, ANCHOR, BACKREF, CLASS_OP = range(9, 16)

_ANCHORS = {
    "^": r"\A", "$": r"\Z", "`": r"\A", "'": r"\Z",
    "<": r"(?<![0-9A-Za-z_])(?=[0-9A-Za-z_])",
    ">": r"(?<=[0-9A-Za-z_])(?![0-9A-Za-z_])",
    "b": r"(?:(?<=[0-9A-Za-z_])(?![0-9A-Za-z_])|(?<![0-9A-Za-z_])(?=[0-9A-Za-z_]))",
    "B": r"(?:(?<=[0-9A-Za-z_])(?=[0-9A-Za-z_])|(?<![0-9A-Za-z_])(?![0-9A-Za-z_]))",
}
_CLASS_OPS = {"w": _WORD, "W": _ALL - _WORD, "s": CLASSES["space"], "S": _ALL - CLASSES["space"]}

_PERL_ESCAPES = {
    "d": "'\\d' is a literal 'd' here; write [[:digit:]] or [0-9] for a digit",
    "D": "'\\D' is a literal 'D' here; write [^[:digit:]] for a non-digit",
    "n": "'\\n' is a literal 'n' here, not a newline",
    "t": "'\\t' is a literal 't' here, not a tab; write [[:blank:]]",
    "r": "'\\r' is a literal 'r' here, not a carriage return",
    "f": "'\\f' is a literal 'f' here", "v": "'\\v' is a literal 'v' here", "e": "'\\e' is a literal 'e' here",
    "a": "'\\a' is a literal 'a' here",
    "x": "'\\x' is a literal 'x' here: there are no hexadecimal escapes",
    "u": "'\\u' is a literal 'u' here: there are no Unicode escapes",
    "0": "'\\0' is a literal '0' here",
    "A": "'\\A' is a literal 'A' here; write ^ for the start",
    "Z": "'\\Z' is a literal 'Z' here; write $ for the end",
    "z": "'\\z' is a literal 'z' here; write $ for the end", "h": "'\\h' is a literal 'h' here",
    "p": "'\\p' is a literal 'p' here: there are no Unicode properties",
    "Q": "'\\Q' is a literal 'Q' here", "E": "'\\E' is a literal 'E' here", "K": "'\\K' is a literal 'K' here",
}


class _Parser:
    """glibc's recursive descent (parse_reg_exp, parse_branch, parse_expression ...)."""

    def __init__(self, pattern: str, icase: bool):
        self.raw = pattern
        self.text = ascii_upper(pattern) if icase else pattern   # what glibc's parser reads
        self.icase = icase
        self.pos = 0
        self.nsub = 0
        self.completed: set[int] = set()
        self.backrefs = False
        self.notes: list[str] = []
        self.kind = END
        self.value = ""
        self.length = 0

    # -------------------------------------------------------- tokens
    def peek(self) -> tuple[int, str, int]:
        text, i = self.text, self.pos
        if i >= len(text):
            return END, "", 0
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                return BACKSLASH, c, 1
            c2 = self.raw[i + 1]                # glibc reads the escaped byte in its own case
            if c2 in "123456789":
                return BACKREF, c2, 2
            if c2 in "<>bB`'":
                return ANCHOR, c2, 2
            if c2 in "wWsS":
                return CLASS_OP, c2, 2
            return CHAR, c2, 2
        kind = {"|": ALT, "*": STAR, "+": PLUS, "?": QUESTION, "{": OPEN_DUP, "}": CLOSE_DUP,
                "(": OPEN_SUB, ")": CLOSE_SUB, "[": OPEN_BRACKET, ".": PERIOD, "^": ANCHOR,
                "$": ANCHOR}.get(c, CHAR)
        return kind, c, 1

    def fetch(self) -> None:
        self.kind, self.value, self.length = self.peek()
        self.pos += self.length

    # -------------------------------------------------------- grammar
    def parse(self) -> str:
        self.fetch()
        return self.reg_exp(0) or ""

    def reg_exp(self, nest: int) -> str | None:
        tree = self.branch(nest)
        while self.kind == ALT:
            self.fetch()
            if self.kind not in (ALT, END) and (nest == 0 or self.kind != CLOSE_SUB):
                branch = self.branch(nest)
            else:
                branch = None
            tree = f"{tree or ''}|{branch or ''}"
        return tree

    def branch(self, nest: int) -> str | None:
        tree = self.expression(nest)
        while self.kind not in (ALT, END) and (nest == 0 or self.kind != CLOSE_SUB):
            exp = self.expression(nest)
            if exp is not None:
                tree = exp if tree is None else tree + exp
        return tree

    def expression(self, nest: int) -> str | None:
        kind, value = self.kind, self.value
        tree: str | None
        if kind in (CHAR, CLOSE_SUB, CLOSE_DUP):       # an unmatched ')' or a '}' is a character
            if kind == CHAR and self.length == 2:
                self._note_escape(value)
            tree = _literal(value)
        elif kind == OPEN_SUB:
            tree = self.sub_exp(nest + 1)
        elif kind == OPEN_BRACKET:
            tree = self.bracket()
        elif kind == BACKREF:
            index = int(value) - 1
            if index not in self.completed:
                raise PosixRegexError(ESUBREG)
            self.backrefs = True
            tree = f"(?:\\{index + 1})"
        elif kind in (OPEN_DUP, STAR, PLUS, QUESTION):
            if self.raw[self.pos - 2:self.pos] == "(?":
                self.notes.append("'(?' starts a Perl group; POSIX has only plain (...) groups")
            raise PosixRegexError(BADRPT)
        elif kind == ANCHOR:
            tree = _ANCHORS[value]
            self.fetch()
            return tree                                   # an anchor takes no repetition
        elif kind == PERIOD:
            tree = "[^\\x00]"
        elif kind == CLASS_OP:
            tree = _bracket_source(_CLASS_OPS[value])
        elif kind in (ALT, END):
            return None
        else:                                             # BACKSLASH
            raise PosixRegexError(EESCAPE)
        self.fetch()
        repeated = False
        while self.kind in (STAR, PLUS, QUESTION, OPEN_DUP):
            if repeated and self.kind == QUESTION:
                note = ("'*?', '+?' and '}?' are not lazy repetitions here: "
                        "the '?' makes the repeated part optional")
                if note not in self.notes:
                    self.notes.append(note)
            tree = self.dup(tree)
            repeated = True
        return tree

    def sub_exp(self, nest: int) -> str:
        index = self.nsub
        self.nsub += 1
        self.fetch()
        if self.kind == CLOSE_SUB:
            tree = None
        else:
            tree = self.reg_exp(nest)
            if self.kind != CLOSE_SUB:
                raise PosixRegexError(EPAREN)
        if index <= 8:
            self.completed.add(index)
        return f"(\x00{tree or ''})"                      # \x00: capturing, decided at the end

    def fetch_number(self) -> int:
        num = -1
        while True:
            self.fetch()
            c = self.value
            if self.kind == END:
                return -2
            if self.kind == CLOSE_DUP or c == ",":
                return num
            if self.kind != CHAR or not "0" <= c <= "9" or num == -2:
                num = -2
            else:
                num = int(c) if num == -1 else min(RE_DUP_MAX + 1, num * 10 + int(c))

    def dup(self, elem: str | None) -> str | None:
        kind = self.kind
        if kind == OPEN_DUP:
            start = self.fetch_number()
            if start == -1:
                if self.kind == CHAR and self.value == ",":
                    start = 0
                else:
                    raise PosixRegexError(BADBR)
            end = 0
            if start != -2:
                if self.kind == CLOSE_DUP:
                    end = start
                elif self.kind == CHAR and self.value == ",":
                    end = self.fetch_number()
                else:
                    end = -2
            if start == -2 or end == -2:
                raise PosixRegexError(EBRACE if self.kind == END else BADBR)
            if (end != -1 and start > end) or self.kind != CLOSE_DUP:
                raise PosixRegexError(BADBR)
            if RE_DUP_MAX < (start if end == -1 else end):
                raise PosixRegexError(ESIZE)
            op = f"{{{start},}}" if end == -1 else f"{{{start}}}" if start == end else f"{{{start},{end}}}"
        else:
            op = {STAR: "*", PLUS: "+", QUESTION: "?"}[kind]
        self.fetch()
        if elem is None or op in ("{0}", "{0,0}"):
            return None
        return f"(?:{elem}){op}"

    def bracket(self) -> str:
        members: set[int] = set()
        opened = self.pos
        kind, value, length = self._peek_bracket()
        if kind == END:
            raise PosixRegexError(BADPAT)
        negate = kind == "^"
        if negate:
            self.pos += length
            kind, value, length = self._peek_bracket()
            if kind == END:
                raise PosixRegexError(BADPAT)
        if kind == "]":
            kind = CHAR
        first = True
        while True:
            start = self._bracket_element(kind, value, length, first)
            first = False
            kind, value, length = self._peek_bracket()
            is_range = False
            if start[0] not in ("class", "equiv"):
                if kind == END:
                    raise PosixRegexError(EBRACK)
                if kind == "-":
                    self.pos += length
                    kind2, value2, length2 = self._peek_bracket()
                    if kind2 == END:
                        raise PosixRegexError(EBRACK)
                    if kind2 == "]":
                        self.pos -= length          # the last '-' is a character
                        kind = CHAR
                    else:
                        is_range = True
            if is_range:
                end = self._bracket_element(kind2, value2, length2, True)
                kind, value, length = self._peek_bracket()
                members |= _range(start, end)
            else:
                members |= self._member(start)
            if kind == END:
                raise PosixRegexError(EBRACK)
            if kind == "]":
                break
        self.pos += length
        if "\\" in self.raw[opened:self.pos]:
            self.notes.append("a '\\' inside [...] is a backslash here, not an escape")
        return _bracket_source(_ALL - members if negate else frozenset(members))

    def _peek_bracket(self) -> tuple[int | str, str, int]:
        """(END or CHAR or the syntax character, its text, its length)."""
        text, i = self.text, self.pos
        if i >= len(text):
            return END, "", 0
        c = text[i]
        if c == "[":
            c2 = text[i + 1] if i + 1 < len(text) else ""
            if c2 in (".", "=", ":") and c2:
                return "[" + c2, c2, 2
            return CHAR, c, 1
        if c in "-]^":
            return c, c, 1
        return CHAR, c, 1

    def _bracket_element(self, kind: int | str, value: str, length: int, accept_hyphen: bool) -> _Element:
        self.pos += length
        if kind in ("[.", "[=", "[:"):
            return self._bracket_symbol(kind)
        if kind == "-" and not accept_hyphen:
            if self._peek_bracket()[0] != "]":
                raise PosixRegexError(ERANGE)
        return ("char", value)

    def _bracket_symbol(self, kind: str) -> _Element:
        delim = kind[1]
        name = []
        if self.pos >= len(self.text):
            raise PosixRegexError(EBRACK)
        source = self.raw if kind == "[:" else self.text
        i = 0
        while True:
            if i >= 32:
                raise PosixRegexError(EBRACK)
            ch = source[self.pos]
            self.pos += 1
            if self.pos >= len(self.text):
                raise PosixRegexError(EBRACK)
            if ch == delim and self.text[self.pos] == "]":
                break
            name.append(ch)
            i += 1
        self.pos += 1
        word = "".join(name)
        return ({"[.": "coll", "[=": "equiv", "[:": "class"}[kind], word)

    def _member(self, elem: _Element) -> frozenset[int]:
        what, value = elem
        if what == "char":
            return frozenset({ord(value)})
        if what in ("coll", "equiv"):
            if len(value) != 1:
                raise PosixRegexError(ECOLLATE)
            return frozenset({ord(value)})
        name = value
        if self.icase and name in ("upper", "lower"):
            name = "alpha"
        if name not in CLASSES:
            raise PosixRegexError(ECTYPE)
        return CLASSES[name]

    def _note_escape(self, c: str) -> None:
        note = _PERL_ESCAPES.get(c)
        if note and note not in self.notes:
            self.notes.append(note)


def _range(start: _Element, end: _Element) -> frozenset[int]:
    if start[0] in ("class", "equiv") or end[0] in ("class", "equiv"):
        raise PosixRegexError(ERANGE)
    if (start[0] == "coll" and len(start[1]) != 1) or (end[0] == "coll" and len(end[1]) != 1):
        raise PosixRegexError(ECOLLATE)
    lo, hi = ord(start[1][0]), ord(end[1][0])
    if lo > hi:
        raise PosixRegexError(ERANGE)
    return frozenset(range(lo, hi + 1))


def _literal(c: str) -> str:
    return c if c.isascii() and c.isalnum() else f"\\x{ord(c):02x}"


def _bracket_source(members: frozenset[int]) -> str:
    if not members:
        return "(?!)"
    spans = []
    values = sorted(members)
    lo = prev = values[0]
    for v in values[1:]:
        if v != prev + 1:
            spans.append((lo, prev))
            lo = v
        prev = v
    spans.append((lo, prev))
    parts = [f"\\x{a:02x}" if a == b else f"\\x{a:02x}-\\x{b:02x}" for a, b in spans]
    return "[" + "".join(parts) + "]"


def translate(pattern: str, icase: bool = False) -> tuple[str, list[str]]:
    """``(python_source, notes)`` for a POSIX extended pattern; raises PosixRegexError.

    The text to match must be ASCII-upper-cased (:func:`ascii_upper`) when
    ``icase`` is set, as glibc does.
    """
    pattern = pattern.split("\x00", 1)[0]                # regcomp() reads a C string
    parser = _Parser(pattern, icase)
    source = parser.parse()
    source = source.replace("(\x00", "(" if parser.backrefs else "(?:")
    return source, parser.notes


class PosixRegex:
    """A compiled pattern that searches text as Squid's regexec() does."""

    __slots__ = ("pattern", "icase", "regex", "notes")

    def __init__(self, pattern: str, icase: bool = False):
        source, self.notes = translate(pattern, icase)
        self.pattern = pattern
        self.icase = icase
        try:
            self.regex = re.compile(source, re.DOTALL)
        except (re.error, RecursionError, OverflowError) as e:     # a limit of Python's engine
            raise PosixRegexError(f"{ESIZE} ({e})") from None

    def search(self, text: str) -> bool:
        if "\x00" in text:
            text = text.split("\x00", 1)[0]
        if self.icase:
            text = text.translate(_UPPER)
        return self.regex.search(text) is not None
