"""Render docs/reference.md from the directive registry.

``python -m squidpy.config.reference > docs/reference.md`` regenerates it; a
test fails when the committed page and the registry disagree.
"""

from __future__ import annotations

import squidpy.config.directives  # noqa: F401  (fills the registry)
from squidpy.config.registry import APPEND, DIRECTIVES

HEADER = """# Configuration reference

squidpy reads Squid's squid.conf syntax: one directive per line, `#` starts a
comment, a line ending in `\\` continues on the next, `include PATH` (globs
allowed, relative to the including file) reads another file, and
`${macro}` is replaced by its value. Macros: `${service_name}` (squidpy),
`${process_number}`, `${hostname}`, `${state_dir}` ($XDG_STATE_HOME/squidpy,
by default ~/.local/state/squidpy) and `${cache_root}` ($XDG_CACHE_HOME/squidpy).

Times take Squid's units (`30 seconds`, `2 minutes`, `1 hour`, `500 ms`);
sizes take `bytes`, `KB`, `MB`, `GB` (powers of 1024). Check a file with
`squidpy parse -f FILE`: every problem is reported as `FILE:LINE: message`.

This page is generated from the directive registry
(`squidpy/config/directives.py`); do not edit it by hand.
"""


def render() -> str:
    out = [HEADER]
    sections: dict[str, list] = {}
    for d in DIRECTIVES.values():
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
