"""The loop shared by squidpy's own helper programs: read request lines from
Squid (or squidpy) on stdin, answer each on stdout, in Squid's helper protocol.

With ``--concurrency`` (set it when the proxy's ``children ... concurrency=N``
is above 0) each line starts with a channel ID that the answer repeats.  Fields
arrive URL-escaped.  Answers never repeat a password.
"""

from __future__ import annotations

import sys
from typing import Callable, TextIO

from squidpy.helpers.protocol import escape
from squidpy.http.url import rfc1738_unescape as unescape


def answer(result: str, **keys: str) -> str:
    """``OK``/``ERR``/``BH`` with key=value pairs, values URL-escaped."""
    parts = [result] + [f"{k}={escape(v)}" for k, v in keys.items() if v is not None]
    return " ".join(parts)


def serve(handle: Callable[[list[str]], str], concurrency: bool, stdin: TextIO | None = None,
          stdout: TextIO | None = None) -> int:
    """Answer each line; ``handle`` gets the unescaped words and returns the answer."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for raw in stdin:
        line = raw.rstrip("\r\n")
        channel = ""
        if concurrency:
            channel, _, line = line.partition(" ")
            if not channel.isdigit():
                stdout.write("BH message=no%20channel%20ID\n")
                stdout.flush()
                continue
            channel += " "
        words = [unescape(w) for w in line.split(" ") if w != ""]
        try:
            reply = handle(words)
        except Exception as e:          # a helper must answer every line, whatever happens
            reply = answer("BH", message=f"internal error: {type(e).__name__}")
        stdout.write(channel + reply + "\n")
        stdout.flush()
    return 0
