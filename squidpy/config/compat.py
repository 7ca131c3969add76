"""Render docs/squid-compat.md: every Squid 5.7 directive, ACL type and http_port
option, and what squidpy does with it, from the registries.

``python -m squidpy.config.compat > docs/squid-compat.md`` regenerates it; a
test fails when the committed page and the registries disagree.  The
differences from Squid 5.7 that squidpy makes on purpose are listed here too,
each with an id: a differential test (tests/test_squid_differential.py) may
only tolerate a verdict that differs from Squid's when its id is documented.
"""

from __future__ import annotations

import squidpy.config.loader  # noqa: F401  (fills the registry)
from squidpy.acl.types import ACL_TYPES, NOT_IMPLEMENTED, RENAMED
from squidpy.config.registry import ALIASES, DIRECTIVES, IGNORED, IMPLEMENTED, OBSOLETE, REFUSED
from squidpy.config.values import HTTP_PORT_OPTIONS, HTTP_PORT_OTHERS

# Intended differences from Squid 5.7: id -> what and why
INTENDED: dict[str, str] = {
    "include-relative": "A relative path (`include`, a quoted ACL value file, `parameters()`) is taken "
                        "from the directory of the file that names it; Squid takes it from its working "
                        "directory (`/` under systemd), so configurations that work with Squid use absolute "
                        "paths and read the same files in squidpy.",
    "to-linklocal": "`to_linklocal` (169.254.0.0/16, fe80::/10) is predefined, as in Squid 6; Squid 5.7 "
                    "refuses the Squid 6 default squid.conf for lack of it.",
    "service-name": "`${service_name}` and `${process_name}` are `squidpy` and `${process_number}` is 1 in "
                    "every process (Squid in the foreground says `squid` and 0, and numbers its SMP kids).",
    "time-units": "A time without a unit is taken in the directive's unit with a warning (Squid 5.7 refuses "
                  "it), and squidpy also accepts `ms`, `sec`, `min`, `h`; sizes may be written `64KB` and "
                  "`64 K`. Squid refuses these spellings, so no configuration that Squid accepts reads "
                  "differently.",
    "bad-regex": "A regular expression regcomp() refuses is an error; Squid 5.7 logs it and drops that one "
                 "expression, which changes what the ACL matches (Squid 6 refuses it too).",
    "req-header-two-names": "One `req_header`/`rep_header` ACL naming two different headers is an error; "
                            "Squid 5.7 logs an error and drops the second line (Squid 6 refuses it).",
    "note-two-names": "One `note` ACL naming two annotations is an error; Squid 5.7 silently tests the "
                      "last name with every value (Squid 6 refuses it).",
    "domain-dupes": "A dstdomain name already covered by another (`a.example.com` before `.example.com`) is "
                    "a warning; Squid 5.7 refuses some orders of these lines (Squid 6 warns).",
    "acl-hostnames": "An ACL address (`src`, `dst`, `localip`) must be an address, network or range; "
                     "Squid 5.7 also resolves host names there when it starts.",
    "missing-value-file": "An ACL value file that cannot be read is an error; Squid 5.7 logs it and reads "
                          "the rest of the line.",
    "extra-acl-options": "`-i` on dstdomain or srcdomain and `-n` on srcdomain are accepted (domains compare "
                         "without case anyway); Squid refuses them.",
    "regex-newline": "In text that holds a newline, glibc lets `^` match after a newline that the "
                     "expression itself consumed (and `$` before one); squidpy's `^` and `$` match only at "
                     "the ends. HTTP request lines and header fields cannot hold a newline, so no ACL sees "
                     "such text.",
    "strip-query-terms": "access.log shows URLs with their query terms; Squid strips them by default "
                         "(strip_query_terms on, which squidpy refuses).",
    "cache-peer-access-unknown": "`cache_peer_access` naming no configured peer is an error; Squid 5.7 logs "
                                 "it and ignores the line, which would let every request use the peer.",
    "collapsed-through-peers": "Collapsed forwarding applies only to fetches from the origin: a request sent "
                               "through a peer does not make others wait for it (the peer collapses them), "
                               "since a CARP fleet may send a request back to the proxy it came from.",
    "netdb-direct": "squidpy makes no netdb (ICMP) measurements: with parents and direct allowed it keeps "
                    "to the peer selection order, where Debian's Squid 5.7 goes direct to hosts it has "
                    "already forwarded to (see docs/fleet.md).",
    "reply-acl-warning": "A reply ACL (http_status, rep_header, rep_mime_type) in http_access never matches, "
                         "as in Squid ('assuming mismatch'); squidpy says so when it reads the configuration, "
                         "Squid only at run time.",
}

STATUS_TEXT = {
    IMPLEMENTED: "implemented",
    IGNORED: "accepted, ignored (warning)",
    REFUSED: "refused: not implemented yet",
    OBSOLETE: "obsolete in Squid: accepted with its advice",
}

HEADER = """# squidpy and Squid 5.7: every directive, ACL type and http_port option

squidpy reads squid.conf as Squid 5.7 reads it (see [reference.md](reference.md) for the
rules) and knows every directive of Squid 5.7. Each one is, in squidpy, exactly one of:

- **implemented**: Squid's syntax and meaning (documented in [reference.md](reference.md));
- **accepted, ignored (warning)**: it has no meaning in squidpy, and ignoring it cannot change
  who gets in, what is logged or what is stored; `squidpy parse` shows a one-line warning;
- **refused: not implemented yet**: going without it would change security or behaviour, so
  squidpy refuses the configuration with "Squid directive X is not implemented by squidpy yet".
  A few are accepted with a note when their value asks for what squidpy does anyway (`icp_port
  0`, `hosts_file /etc/hosts`); those values are listed;
- **obsolete in Squid**: Squid 5.7 accepts the line with upgrade advice, and so does squidpy
  (a few Squid refuses, and so does squidpy).

`squidpy parse -f /etc/squid/squid.conf` answers as `squid -k parse` would, naming `FILE:LINE`
for every problem, and suggests the directive or ACL type meant when a name is mistyped.

This page is generated from the registries (`python -m squidpy.config.compat`); do not edit
it by hand.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _directives() -> list[str]:
    aliases: dict[str, list[str]] = {}
    for name, canonical in ALIASES.items():
        aliases.setdefault(canonical, []).append(name)
    rows = ["| directive | status | notes |", "|---|---|---|"]
    for d in sorted(DIRECTIVES.values(), key=lambda d: d.name):
        if not d.squid:
            continue
        status = STATUS_TEXT[d.status]
        if d.status == OBSOLETE and d.refuse:
            status = "obsolete in Squid: refused"
        notes = "" if d.status == IMPLEMENTED else d.doc
        if d.accepts:
            notes += f" (accepted: `{d.name} {'`, `'.join(d.accepts)}`)"
        if aliases.get(d.name):
            notes += " Also written " + ", ".join(f"`{a}`" for a in sorted(aliases[d.name])) + "."
        rows.append(f"| `{d.name}` | {status} | {_cell(notes.strip())} |")
    return rows


def _acl_types() -> list[str]:
    rows = ["| ACL type | status | notes |", "|---|---|---|"]
    names = {*ACL_TYPES, *NOT_IMPLEMENTED, *RENAMED}
    for name in sorted(names):
        if name in RENAMED:
            target, advice = RENAMED[name]
            rows.append(f"| `{name}` | old name of `{target}`: accepted with Squid's upgrade note | "
                        f"{_cell(advice)} |")
        elif name in ACL_TYPES:
            doc = (ACL_TYPES[name].__doc__ or "").strip().split("\n\n")[0]
            rows.append(f"| `{name}` | implemented | {_cell(' '.join(doc.split()))} |")
        else:
            rows.append(f"| `{name}` | refused: not implemented yet | needs {_cell(NOT_IMPLEMENTED[name])} |")
    return rows


def _port_options() -> list[str]:
    rows = ["| http_port option | status | notes |", "|---|---|---|"]
    for name, why in sorted(HTTP_PORT_OPTIONS.items()):
        rows.append(f"| `{name}` | implemented | {_cell(why)} |")
    for name, (status, why) in sorted(HTTP_PORT_OTHERS.items()):
        rows.append(f"| `{name}` | {STATUS_TEXT[status]} | {_cell(why)} |")
    return rows


def render() -> str:
    out = [HEADER]
    out.append("\n## Differences squidpy makes on purpose\n\n")
    out.append("Where a configuration reads or decides differently in squidpy and in Squid 5.7, it is one "
               "of these (the differential tests against a running Squid tolerate nothing else):\n\n")
    for key, text in INTENDED.items():
        out.append(f"- **{key}**: {text}\n")
    out.append("\n## Directives\n\n")
    out.append("\n".join(_directives()) + "\n")
    out.append("\n## ACL types\n\n")
    out.append("`acl manager proto cache_object` (Squid 2's manager ACL) is ignored with Squid's upgrade "
               "note; `manager` is built in.\n\n")
    out.append("\n".join(_acl_types()) + "\n")
    out.append("\n## http_port options\n\n")
    out.append("\n".join(_port_options()) + "\n")
    return "".join(out)


if __name__ == "__main__":
    print(render(), end="")
