"""Squid's helper line protocol as plain functions (no I/O).

A helper reads one request per line on stdin and answers one line per request
on stdout: ``OK``, ``ERR`` or ``BH`` followed by ``key=value`` pairs (values
URL-escaped unless double-quoted), or the Negotiate/NTLM words ``TT``/``AF``/
``NA``.  With ``concurrency=N`` each line starts with a channel ID.  Facts from
Squid 5.7's ``src/helper/Reply.cc``, ``src/helper/ChildConfig.cc``,
``src/String.cc`` (strwordtok) and ``lib/rfc1738.c``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from squidpy.http.url import rfc1738_unescape as unescape

OK = "OK"
ERR = "ERR"
BH = "BH"
TT = "TT"                 # Negotiate/NTLM: a token to send back to the client
UNKNOWN = "Unknown"       # the helper died with the request, or said something else
TIMEDOUT = "TimedOut"

MAX_REPLY = 1 << 20       # Squid's reply buffer limit: a longer reply disconnects the helper


# ---------------------------------------------------------------- children N ...


@dataclass(frozen=True)
class ChildConfig:
    """``children N [startup=N] [idle=N] [concurrency=N] [queue-size=N]
    [on-persistent-overload=ERR|die]`` with Squid's defaults and caps."""

    n_max: int = 20
    startup: int = 0
    idle: int = 1
    concurrency: int = 0
    queue_size: int = 40
    on_persistent_overload: str = "die"
    reservation_timeout: int = 64     # stateful helpers (NTLM, Negotiate): seconds a reservation lasts
    queue_size_given: bool = False    # queue-size= written (else 2*N, or 0 under url_rewrite_bypass)

    @classmethod
    def parse(cls, args: list[str], warn: Callable[[str], None] = lambda message: None,
              default_queue_size: Callable[[int], int] | None = None) -> "ChildConfig":
        """Parse the words after ``children``; ``warn`` gets Squid's override notes.
        ``default_queue_size(n_max)`` replaces Squid's 2*N when queue-size is not given
        (url_rewrite_bypass makes it 0)."""
        if not args:
            raise ValueError("expected: N [startup=N] [idle=N] [concurrency=N] [queue-size=N] "
                             "[on-persistent-overload=ERR|die]")
        n_max = _unsigned(args[0], "the number of processes")
        if n_max < 1:
            raise ValueError("the maximum number of processes cannot be less than 1")
        startup, idle, concurrency, queue_size, overload, reservation = 0, 1, 0, None, "die", 64
        for token in args[1:]:
            key, eq, value = token.partition("=")
            if not eq:
                raise ValueError(f"undefined option: {token}")
            if key == "startup":
                startup = _unsigned(value, key)
            elif key == "idle":
                idle = _unsigned(value, key)
                if idle < 1:
                    warn("using idle=0 for helpers causes request failures: overriding to idle=1")
                    idle = 1
            elif key == "concurrency":
                concurrency = _unsigned(value, key)
            elif key == "queue-size":
                queue_size = _unsigned(value, key)
            elif key == "on-persistent-overload":
                if value not in ("ERR", "die"):
                    raise ValueError(f"unsupported on-persistent-overload action: {value} (ERR or die)")
                overload = value
            elif key == "reservation-timeout":
                reservation = _unsigned(value, key)
            else:
                raise ValueError(f"undefined option: {token}")
        if startup > n_max:
            warn(f"capping startup={startup} to the defined maximum ({n_max})")
            startup = n_max
        if idle > n_max:
            warn(f"capping idle={idle} to the defined maximum ({n_max})")
            idle = n_max
        given = queue_size is not None
        if queue_size is None:
            queue_size = default_queue_size(n_max) if default_queue_size else 2 * n_max
        return cls(n_max, startup, idle, concurrency, queue_size, overload, reservation, given)

    def bypassing(self) -> "ChildConfig":
        """url_rewrite_bypass / store_id_bypass on: without queue-size=, the queue is 0."""
        if self.queue_size_given:
            return self
        return dataclasses.replace(self, queue_size=0)

    def need_new(self, active: int, starting_up: bool = False) -> int:
        """How many more processes to start (Squid's needNew)."""
        if starting_up:
            return self.startup
        if active + self.idle < self.n_max:
            return self.idle
        return self.n_max - active


def _unsigned(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} must be a whole number, not '{text}'")
    return int(text)


# ---------------------------------------------------------------- URL escaping

_UNSAFE = frozenset('<>"#{}|\\^~[]`\'')
_RESERVED = frozenset(";/?:@=&")


def _text_bytes(text: str) -> bytes:
    """Request bytes are kept as Latin-1 text; an admin's own text may be wider (UTF-8)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def escape(text: str | bytes, reserved: bool = False) -> str:
    """``rfc1738_escape`` (``reserved``: ``rfc1738_escape_part``): what Squid does to
    user names, passwords and format values before they go to a helper, so that a
    space, a newline or a quote in a client's input can never split a request line."""
    data = text if isinstance(text, bytes) else _text_bytes(text)
    out = []
    for byte in data:
        ch = chr(byte)
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif (byte <= 0x20 or byte >= 0x7F or ch == "%" or ch in _UNSAFE
              or (reserved and ch in _RESERVED)):
            out.append(f"%{byte:02X}")
        else:
            out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------- replies


def wordtok(text: str, pos: int = 0) -> tuple[str | None, int]:
    """Squid's ``strwordtok``: the next whitespace-delimited word from ``pos``;
    double quotes group (and are dropped), a backslash escapes the next character
    (\\n and \\r become newlines).  Returns (word or None, position after it)."""
    n = len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    if pos >= n:
        return None, pos
    out = []
    quoted = False
    while pos < n:
        ch = text[pos]
        if ch == "\\":
            if quoted:
                pos += 1
            if pos >= n:
                break
            ch = text[pos]
            out.append({"n": "\n", "r": "\r"}.get(ch, ch))
            pos += 1
        elif ch == '"':
            quoted = not quoted
            pos += 1
        elif ch.isspace() and not quoted:
            pos += 1
            break
        else:
            out.append(ch)
            pos += 1
    return "".join(out), pos


@dataclass
class Reply:
    """One helper answer: the result word and its key=value notes in order."""

    result: str
    notes: list[tuple[str, str]] = field(default_factory=list)
    other: str = ""          # what followed that was not key=value

    def get(self, key: str) -> str | None:
        for k, v in self.notes:
            if k == key:
                return v
        return None

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.notes if k == key]

    @property
    def message(self) -> str | None:
        return self.get("message")

    def __repr__(self) -> str:     # never print a password or token a note might carry
        return f"Reply({self.result}, keys={[k for k, _ in self.notes]})"


def parse_reply(line: str) -> Reply:
    """A reply line (without its channel ID and newline), as Squid's
    ``Helper::Reply::finalize`` reads it."""
    if not line:
        return Reply(ERR)
    result, rest, saw_na = UNKNOWN, line, False
    notes: list[tuple[str, str]] = []
    if len(line) >= 2:
        if line.startswith("OK") and (len(line) == 2 or line[2] == " "):
            result, rest = OK, line[2:]
        elif line.startswith("ERR") and (len(line) == 3 or line[3] == " "):
            result, rest = ERR, line[3:]
        elif line.startswith("BH") and (len(line) == 2 or line[2] == " "):
            result, rest = BH, line[2:]
        elif line.startswith("TT "):
            result, rest = TT, line[3:]
            token, pos = wordtok(rest)
            rest = rest[pos:]
            if token is None:
                result = BH
                notes.append(("message", "Missing 'token' data"))
            else:
                notes.append(("token", token))
        elif line.startswith("AF "):
            result, rest = OK, line[3:]
            w1, pos = wordtok(rest)
            w2, pos2 = wordtok(rest, pos)
            if w1 is not None and w2 is not None:
                notes += [("token", w1), ("user", w2)]
                rest = rest[pos2:]
            elif w1 is not None:
                notes.append(("user", w1))
                rest = rest[pos:]
        elif line.startswith("NA "):
            result, rest, saw_na = ERR, line[3:], True
    rest = rest.lstrip()
    if not saw_na:
        rest = _parse_keys(rest, notes)
    if rest and (saw_na or result == BH):
        notes.append(("message", rest))
        rest = ""
    return Reply(result, notes, rest)


def _key_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in "-_")


def _parse_keys(rest: str, notes: list[tuple[str, str]]) -> str:
    while rest:
        i = 0
        while i < len(rest) and _key_char(rest[i]):
            i += 1
        if i >= len(rest) or rest[i] != "=":
            return rest                 # not a key: the rest is free text
        if i + 1 < len(rest) and rest[i + 1].isspace():
            return rest
        key = rest[:i]
        value_start = i + 1
        url_decode = not rest[value_start:value_start + 1] == '"'
        value, pos = wordtok(rest, value_start)
        if value is not None and url_decode and pos - value_start > 2:
            value = unescape(value)
        notes.append((key, value or ""))
        rest = rest[pos:].lstrip()
    return rest


def format_request(line: str, channel: int | None) -> bytes:
    """One request line as the helper reads it; ``channel`` when concurrency > 0."""
    text = line if channel is None else f"{channel} {line}"
    return _text_bytes(text) + b"\n"


class LineSplitter:
    """Reply bytes from one helper into lines (``\\r\\n`` or ``\\n``), bounded: a line
    longer than :data:`MAX_REPLY` is an overflow (Squid disconnects the helper)."""

    def __init__(self, limit: int = MAX_REPLY):
        self.buffer = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[str] | None:
        """Complete lines, or None on overflow."""
        self.buffer += data
        lines = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            lines.append(raw.decode("utf-8", "surrogateescape"))
        if len(self.buffer) > self.limit:
            return None
        return lines


def split_channel(line: str) -> tuple[int | None, str]:
    """``ID rest`` -> (ID, rest); (None, line) when the line does not start with one."""
    word, _, rest = line.partition(" ")
    if word.isdigit():
        return int(word), rest.lstrip()
    if line.isdigit():
        return int(line), ""
    return None, line
