"""Reading access log lines back: Squid's native format and common/combined (pure).

``parse_line`` turns one line into a :class:`Record`, or returns None for a
line it cannot read (the caller counts those: a malformed line is never
fatal).  Lines from squidpy and from real Squid read the same way.
"""

from __future__ import annotations

import calendar
import re

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

# Squid's LogTags::isTcpHit(): the answers that came from the cache
HIT_RESULTS = frozenset({
    "TCP_HIT", "TCP_MEM_HIT", "TCP_IMS_HIT", "TCP_INM_HIT", "TCP_NEGATIVE_HIT", "TCP_OFFLINE_HIT",
    "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_FAIL_OLD", "TCP_STALE_HIT", "TCP_SHARED_REFRESH_UNMODIFIED",
})


class Record:
    """One logged transaction; fields a format does not carry are None."""

    __slots__ = ("time", "elapsed", "client", "result", "status", "size", "method", "url",
                 "user", "hierarchy", "peer", "mime", "referer", "agent", "line")

    def __init__(self, time: float, elapsed: int | None, client: str, result: str | None, status: int,
                 size: int, method: str, url: str, user: str, hierarchy: str | None, peer: str | None,
                 mime: str | None, referer: str | None = None, agent: str | None = None, line: str = ""):
        self.time = time
        self.elapsed = elapsed
        self.client = client
        self.result = result
        self.status = status
        self.size = size
        self.method = method
        self.url = url
        self.user = user
        self.hierarchy = hierarchy
        self.peer = peer
        self.mime = mime
        self.referer = referer
        self.agent = agent
        self.line = line

    @property
    def domain(self) -> str:
        return domain_of(self.url, self.method)

    @property
    def denied(self) -> bool:
        return is_denied(self.result)

    @property
    def hit(self) -> bool:
        return is_hit(self.result)

    def as_dict(self) -> dict[str, object]:
        d = {name: getattr(self, name) for name in self.__slots__ if name != "line"}
        d["domain"] = self.domain
        return d


def is_denied(result: str | None) -> bool:
    return result is not None and "DENIED" in result


def is_tunnel(r: "Record") -> bool:
    """A CONNECT that became a tunnel: answered 200 and not denied.  Denied CONNECTs
    (TCP_DENIED/403, or a bumped TCP_DENIED/200) and failed ones (503...) are not."""
    return r.method == "CONNECT" and r.status == 200 and not is_denied(r.result)


def is_hit(result: str | None) -> bool:
    if result is None:
        return False
    if result.endswith(("_ABORTED", "_TIMEDOUT")):
        result = result.rpartition("_")[0]
    return result in HIT_RESULTS


def domain_of(url: str, method: str | None = None) -> str:
    """The host a request went to: lower case, without port or brackets."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        if method != "CONNECT":
            return "-"            # error:invalid-request, or a bare path in someone else's log
        rest = url
    authority = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if authority.startswith("["):
        return authority[1:].partition("]")[0].lower()
    host = authority.rpartition(":")[0] if authority.count(":") == 1 else authority
    return host.lower() or "-"


def parse_squid(line: str) -> Record | None:
    """``%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`` (extra fields ignored)."""
    f = line.split()
    n = len(f)
    if n < 10:
        return None
    try:
        t = float(f[0])
        elapsed = int(f[1])
        result, slash, code = f[3].partition("/")
        status = int(code)
        size = int(f[4])
    except ValueError:
        return None
    if not slash or "." not in f[0]:
        return None
    if n == 10 or (f[8].count("/") and f[8][:1].isupper()):
        user, hier, mime = f[7], f[8], f[9]
    else:
        # a user name with spaces ([ encoding keeps them) or log_mime_hdrs fields after the type
        for i in range(8, n - 1):
            word = f[i]
            if "/" in word and word.partition("/")[0].replace("_", "").isupper():
                break
        else:
            return None
        user, hier, mime = " ".join(f[7:i]), f[i], f[i + 1]
    hierarchy, _, peer = hier.partition("/")
    return Record(t, elapsed, f[2], result, status, size, f[5], f[6], user, hierarchy, peer, mime, line=line)


_CLF = re.compile(
    r'(\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+)(?: HTTP/(\S+))?" (\d{3}) (\d+|-)'
    r'(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?(?: (\w+):(\w+))?\s*$')


def parse_clf_time(text: str) -> float | None:
    """``22/Nov/2026:17:44:06 +0100`` -> seconds since the epoch."""
    try:
        day, month, year = int(text[0:2]), MONTHS[text[3:6]], int(text[7:11])
        hour, minute, second = int(text[12:14]), int(text[15:17]), int(text[18:20])
        zone = text[21:26]
        offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1) if zone else 0
    except (ValueError, KeyError, IndexError):
        return None
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return calendar.timegm((year, month, day, hour, minute, second)) - offset


_last_clf_time: tuple[str, float] = ("", 0.0)     # the last time field read, and its value


def parse_common(line: str) -> Record | None:
    """Squid's (and Apache's) ``common`` and ``combined`` formats."""
    m = _CLF.match(line)
    if m is None:
        return None
    client, _ident, user, when, method, url, _version, status, size, referer, agent, result, hier = m.groups()
    global _last_clf_time
    if when == _last_clf_time[0]:
        t = _last_clf_time[1]
    else:
        parsed = parse_clf_time(when)
        if parsed is None:
            return None
        t = parsed
        _last_clf_time = (when, t)
    if referer is not None:
        referer, agent = _unquote(referer), _unquote(agent)
    return Record(t, None, client, result, int(status), 0 if size == "-" else int(size), method, url, user,
                  hier, None, None, referer, agent, line)


def _unquote(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\") if "\\" in text else text


PARSERS = {"squid": parse_squid, "common": parse_common, "combined": parse_common}


def parse_line(line: str) -> Record | None:
    """Any of the formats squidpy reads, tried in turn."""
    return parse_squid(line) or parse_common(line)
