"""Render docs/reference.md from the directive registry.

``python -m squidpy.config.reference > docs/reference.md`` regenerates it; a
test fails when the committed page and the registry disagree.
"""

from __future__ import annotations

import squidpy.config.loader  # noqa: F401  (fills the registry)
from squidpy.config.registry import APPEND, DIRECTIVES, IMPLEMENTED, Directive

HEADER = """# Configuration reference

squidpy reads squid.conf as Squid 5.7 reads it: one directive per line; a
line starting with `#` is a comment (also in the middle of a `\\`
continuation, where only that line is skipped), and a word starting with `#`
ends the line; a line ending in `\\` continues on the next, joined as written
(no blank is added); `if true|false|N = M` ... `else` ... `endif` select
lines; `include PATH ...` reads other files (globs allowed, relative to the
including file; a pattern matching no file is an error). `${service_name}`
(squidpy), `${process_name}` (squidpy), `${process_number}` and squidpy's
`${hostname}`, `${state_dir}` ($XDG_STATE_HOME/squidpy, by default
~/.local/state/squidpy) and `${cache_root}` ($XDG_CACHE_HOME/squidpy) are
replaced by their values. Files may be in any 8-bit encoding.

Times take Squid's units (`30 seconds`, `2 minutes`, `1 hour`, `500
milliseconds`); sizes take `bytes`, `KB`, `MB`, `GB` (powers of 1024), and a
size without a unit is in bytes unless the directive says otherwise. Words
after the value are ignored, as in Squid (with a warning). Regular expressions
are POSIX extended, as in Squid (`[[:digit:]]`, not `\\d`). Check a file with
`squidpy parse -f FILE`: every problem is reported as `FILE:LINE: message`.
How every Squid directive, ACL type and http_port option fares in squidpy is
in [squid-compat.md](squid-compat.md).

This page is generated from the directive registry
(`squidpy/config/directives.py`); do not edit it by hand.
"""


def render() -> str:
    out = [HEADER]
    sections: dict[str, list[Directive]] = {}
    for d in DIRECTIVES.values():
        if d.status == IMPLEMENTED:
            sections.setdefault(d.section, []).append(d)
    for section, items in sections.items():
        out.append(f"\n## {section}\n")
        for d in items:
            out.append(f"\n### {d.name}\n")
            out.append(f"\n    {d.name} {d.syntax}\n")
            if d.default is not None:
                defaults = "\n".join(f"    {d.name} {line}" for line in d.default.split("\n"))
                out.append(f"\nDefault:\n\n{defaults}\n")
            else:
                out.append("\nDefault: none\n")
            if d.kind == APPEND:
                out.append("\nMay be given several times; each line adds one.\n")
            out.append(f"\n{d.doc}\n")
    return "".join(out)


if __name__ == "__main__":
    print(render(), end="")
