"""The directive registry: one record per squid.conf directive.

Like Squid's ``cf.data.pre``, each :class:`Directive` carries its name, its
syntax, how to parse it, its default written as configuration text, and one
paragraph of documentation.  The loader, the defaults and the generated
reference page (``docs/reference.md``) all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

REPLACE = "replace"   # a later line replaces an earlier one
APPEND = "append"     # lines accumulate into a list
CUSTOM = "custom"     # the parser stores what it reads itself (acl, http_access ...)


@dataclass(frozen=True)
class Directive:
    name: str
    syntax: str
    parse: Callable[[list[str], Any], Any]   # (args, ParseContext) -> value
    default: str | None
    doc: str
    section: str
    kind: str = REPLACE
    empty: Callable[[], Any] | None = None   # initial value when kind is CUSTOM/APPEND

    def initial(self) -> Any:
        if self.empty is not None:
            return self.empty()
        return [] if self.kind == APPEND else None


DIRECTIVES: dict[str, Directive] = {}


def directive(name: str, syntax: str, parse, default: str | None, section: str,
              doc: str, kind: str = REPLACE, empty=None) -> Directive:
    """Register a directive; ``doc`` is the paragraph shown in the reference."""
    if name in DIRECTIVES:
        raise RuntimeError(f"directive {name} registered twice")
    d = Directive(name, syntax, parse, default, " ".join(doc.split()), section, kind, empty)
    DIRECTIVES[name] = d
    return d
