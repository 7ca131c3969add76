"""The directive registry: one record per squid.conf directive.

Like Squid's ``cf.data.pre``, each :class:`Directive` carries its name, its
syntax, how to parse it, its default written as configuration text, and one
paragraph of documentation.  The loader, the defaults, the generated
reference page (``docs/reference.md``) and the Squid compatibility page
(``docs/squid-compat.md``) all read this one table.

Every directive of Squid 5.7 is in it, with one status:

* ``implemented``: Squid's syntax and meaning;
* ``ignored``: accepted with a one-line warning, because it has no meaning in
  squidpy and ignoring it cannot change who gets in, what is logged or what is
  stored (``coredump_dir``, ``memory_pools``);
* ``refused``: "not implemented by squidpy yet", because going without it would
  change security or behaviour (``auth_param``, ``cache_peer``).  ``accepts``
  lists values that ask for what squidpy does anyway (``icp_port 0``), which
  are accepted with a note;
* ``obsolete``: removed from Squid, which accepts the line with upgrade advice
  (and refuses a few, as Squid does).

Squid's alternative names (``no_cache`` for ``cache``) are in :data:`ALIASES`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.config.loader import ParseContext

REPLACE = "replace"   # a later line replaces an earlier one
APPEND = "append"     # lines accumulate into a list
CUSTOM = "custom"     # the parser stores what it reads itself (acl, http_access ...)

IMPLEMENTED = "implemented"
IGNORED = "ignored"
REFUSED = "refused"
OBSOLETE = "obsolete"

COMPAT_DOC = "docs/squid-compat.md"

Parser = Callable[[list[str], "ParseContext"], object]
"""A directive's parser: (the line's words, the ParseContext) -> the directive's value,
whose type squidpy/config/settings.py declares (None for a CUSTOM directive, which
stores what it reads itself)."""

Report = Callable[[str, str], None]
"""warn_at or error_at of the checks that need the whole file: (FILE:LINE, message)."""


@dataclass(frozen=True)
class Directive:
    name: str
    syntax: str
    parse: Parser | None
    default: str | None
    doc: str
    section: str
    kind: str = REPLACE
    empty: Callable[[], object] | None = None   # initial value when kind is CUSTOM (None: no value of its own)
    status: str = IMPLEMENTED
    squid: bool = True                       # False: a squidpy extension
    accepts: tuple[str, ...] = ()            # refused directive: values squidpy already behaves as
    refuse: bool = False                     # obsolete directive that Squid refuses too
    reads_line: bool = False                 # the parser reads ctx.words() itself

    @property
    def has_value(self) -> bool:
        """Does the directive have a value of its own on a Config?  Not an ignored, refused
        or obsolete one, nor a CUSTOM one without ``empty``, whose parser stores what it
        reads into another directive's value (``acl``, ``cache_peer_access``)."""
        return self.status == IMPLEMENTED and (self.kind != CUSTOM or self.empty is not None)

    def initial(self) -> object:
        if self.empty is not None:
            return self.empty()
        return [] if self.kind == APPEND else None


DIRECTIVES: dict[str, Directive] = {}
ALIASES: dict[str, str] = {}


def _register(d: Directive) -> Directive:
    if d.name in DIRECTIVES or d.name in ALIASES:
        raise RuntimeError(f"directive {d.name} registered twice")
    DIRECTIVES[d.name] = d
    return d


def directive(name: str, syntax: str, parse: Parser, default: str | None, section: str,
              doc: str, kind: str = REPLACE, empty: Callable[[], object] | None = None, squid: bool = True,
              reads_line: bool = False) -> Directive:
    """Register an implemented directive; ``doc`` is the paragraph shown in the reference."""
    return _register(Directive(name, syntax, parse, default, " ".join(doc.split()), section, kind, empty,
                               squid=squid, reads_line=reads_line))


def alias(name: str, canonical: str) -> None:
    """Another name Squid accepts for a directive (``no_cache`` for ``cache``)."""
    if name in DIRECTIVES or name in ALIASES:
        raise RuntimeError(f"directive {name} registered twice")
    ALIASES[name] = canonical


def unsupported(status: str, names: str, note: str, accepts: tuple[str, ...] = (),
                refuse: bool = False) -> None:
    """Register Squid directives squidpy does not implement: ``ignored``,
    ``refused`` or ``obsolete``, with the reason (or Squid's upgrade advice)."""
    for name in names.split():
        _register(Directive(name, "", None, None, " ".join(note.split()), "", status=status,
                            accepts=accepts, refuse=refuse))


def lookup(name: str) -> Directive | None:
    """The directive a configuration line names, by its name or an alias."""
    return DIRECTIVES.get(name) or DIRECTIVES.get(ALIASES.get(name, ""))


def refused_message(name: str) -> str:
    return f"Squid directive {name} is not implemented by squidpy yet (see {COMPAT_DOC})"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""
