"""URL rewriter and store-ID helper answers, as Squid 5.7 reads them
(src/redirect.cc, src/client_side_request.cc).

``OK rewrite-url=URL`` rewrites the request, ``OK status=30x url=URL`` (or
``OK url=URL``, 302) redirects the client, ``ERR`` (or ``OK`` alone) leaves the
request as it was.  Old helpers that answer a bare URL or ``30x:URL`` are read
as Squid reads them.  A request line is the URL followed by
``url_rewrite_extras`` (default ``%>a/%>A %un %>rm myip=%la myport=%lp``).
"""

from __future__ import annotations

from dataclasses import dataclass

from squidpy.helpers.protocol import OK, UNKNOWN, Reply

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_EXTRAS = "%>a/%>A %un %>rm myip=%la myport=%lp"

UNCHANGED = "unchanged"
REWRITE = "rewrite"
REDIRECT = "redirect"


@dataclass(frozen=True)
class Rewrite:
    kind: str
    url: str | None = None
    status: int | None = None
    problem: str | None = None      # for cache_log: a reply Squid rejects


def legacy_reply(reply: Reply) -> Reply:
    """An old-style answer (no OK/ERR word) turned into the keys Squid maps it to."""
    if reply.result != UNKNOWN or not reply.other:
        return reply
    first = reply.other.split(" ", 1)[0]
    notes = list(reply.notes)
    if first.startswith("!") and "!" in first[1:]:
        group, _, first = first[1:].partition("!")
        notes.append(("urlgroup", group))
    head, colon, rest = first.partition(":")
    if head.isdigit() and int(head) in REDIRECT_STATUSES and colon:
        notes += [("status", head), ("url", rest)]
    elif first:
        notes.append(("rewrite-url", first))
    return Reply(OK, notes)


def url_rewrite_decision(reply: Reply) -> Rewrite:
    reply = legacy_reply(reply)
    if reply.result != OK:
        return Rewrite(UNCHANGED)
    status_note, url = reply.get("status"), reply.get("url")
    if url:
        status = 302
        if status_note is not None:
            status = int(status_note) if status_note.strip().isdigit() else 0
        if status not in REDIRECT_STATUSES:
            return Rewrite(UNCHANGED, problem=f"ERROR: URL-rewrite produces invalid {status_note} redirect "
                                              f"Location: {url}")
        return Rewrite(REDIRECT, url, status)
    new = reply.get("rewrite-url")
    if new:
        return Rewrite(REWRITE, new)
    return Rewrite(UNCHANGED)


def store_id_decision(reply: Reply) -> str | None:
    """The store ID a store_id_program gave (``OK store-id=...``), or None to keep the URL."""
    if reply.result != OK:
        return None
    return reply.get("store-id") or None
