"""Differential tests against a live Squid 5.7: the same configuration, origin and requests
through Squid and squidpy, for what issue 12 implemented beyond access verdicts: header rules
(what the origin receives, what the client receives), the indirect client
(follow_x_forwarded_for), miss_access, and the language of error pages.

Each test compares what both proxies did, field by field for the fields the configuration
names; a field squidpy writes differently on its own account (its name in Via, its English
pages) is left out of the comparison, and those differences are the ones
docs/squid-compat.md lists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from squidpy.errors import LANGPACK_DIR
from tests.conftest import read_response
from tests.proxyproc import ProxyProcess
from tests.squidproc import SquidProcess

VISIBLE = "visible_hostname squid-under-test\n"


@pytest.fixture
def both(tmp_path, squid_stops):
    """``both(config)`` -> (squid, squidpy) started with the same configuration text
    (the Squids finish stopping in the background: conftest.squid_stops)."""
    started = []
    squid_root = Path(tempfile.mkdtemp(prefix="squid-conf-diff-"))
    os.chmod(squid_root, 0o755)

    def start(config: str):
        squid = SquidProcess(squid_root / f"squid{len(started)}", config)
        started.append(squid)
        ours = ProxyProcess(tmp_path / f"squidpy{len(started)}", VISIBLE + config)
        started.append(ours)
        return squid, ours

    yield start
    squid_stops(*started[0::2], then=lambda: shutil.rmtree(squid_root, ignore_errors=True))
    for ours in started[1::2]:
        ours.stop()


def ask(port: int, target: str, headers: dict | None = None, method: str = "GET", source: str = "127.0.0.1"):
    with socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0)) as s:
        lines = [f"{method} {target} HTTP/1.1", "Host: x", "Connection: close",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return read_response(s.makefile("rb"), "HEAD" if method in ("HEAD", "CONNECT") else method)


def seen_by_origin(answer) -> dict[str, str]:
    status, _, body = answer
    assert status == 200, (status, body[:300])
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def project(headers: dict[str, str], names: list[str]) -> dict[str, str | None]:
    return {name: headers.get(name) for name in names}


# ------------------------------------------------------------ header rules

HEADER_RULES = """
acl lan src 127.0.0.0/8
acl nobody src 192.0.2.0/24
http_access allow lan
http_access deny all
request_header_access Cookie deny all
request_header_access User-Agent deny all
request_header_replace User-Agent Nutscrape/1.0 (CP/M; 8-bit)
request_header_access X-Custom-A allow all
request_header_access Other deny all
request_header_access Referer allow nobody
request_header_replace X-Keep escaped
request_header_access Accept deny nobody
request_header_add X-Client "%>a" lan
request_header_add X-Literal literal-value
request_header_add X-Empty "%un"
request_header_add X-Custom-B added-after-judging
reply_header_access Server deny all
reply_header_replace Server hidden
reply_header_access X-Origin-Secret deny all
reply_header_access X-Shown allow nobody
reply_header_add X-Added "tag %{X-Tag}>h"
reply_header_add X-Only-Lan yes lan
reply_header_add X-Never yes nobody
"""

SENT = {"Cookie": "id=1", "User-Agent": "curl/8", "X-Custom-A": "a", "X-Custom-B": "b", "Referer": "http://r/",
        "X-Keep": "k", "Accept": "*/*", "X-Drop-Me": "d"}
TO_ORIGIN = ["cookie", "user-agent", "x-custom-a", "x-custom-b", "referer", "x-keep", "accept", "x-drop-me",
             "x-client", "x-literal", "x-empty", "host"]
TO_CLIENT = ["server", "x-origin-secret", "x-shown", "x-plain", "x-added", "x-only-lan", "x-never", "content-length"]


def test_header_rules_give_the_origin_and_the_client_what_squid_gives(both, origin):
    squid, ours = both(HEADER_RULES)
    upstream, downstream = {}, {}
    reply_url = origin.url("/headers?X-Origin-Secret=s&X-Shown=v&X-Plain=p")
    for name, proxy in (("squid", squid), ("squidpy", ours)):
        upstream[name] = project(seen_by_origin(ask(proxy.port, origin.url("/echo"), SENT)), TO_ORIGIN)
        status, headers, body = ask(proxy.port, reply_url, {"X-Tag": "t1"})
        assert status == 200 and body == b"headers\n"
        downstream[name] = project(headers, TO_CLIENT)
    assert upstream["squid"] == upstream["squidpy"], upstream
    assert downstream["squid"] == downstream["squidpy"], downstream
    # what the comparison covers: removals, Squid's quirks, replacements and additions
    assert upstream["squid"]["cookie"] is None and upstream["squid"]["referer"] is None
    assert upstream["squid"]["user-agent"] == "Nutscrape/1.0 (CP/M; 8-bit)"
    assert upstream["squid"]["x-keep"] == "k" and upstream["squid"]["x-drop-me"] is None
    assert upstream["squid"]["x-custom-b"] == "added-after-judging" and upstream["squid"]["x-empty"] == "-"
    assert downstream["squid"]["server"] == "hidden" and downstream["squid"]["x-shown"] is None
    assert downstream["squid"]["x-added"] == "tag t1"


def test_reply_rules_on_hits_and_error_pages_as_in_squid(both, origin):
    squid, ours = both(HEADER_RULES)
    seen = {}
    for name, proxy in (("squid", squid), ("squidpy", ours)):
        url = origin.url(f"/obj/rules-{name}?cc=max-age%3D600&h=X-Origin-Secret:s")
        ask(proxy.port, url)
        hit = ask(proxy.port, url)
        assert hit[1]["x-cache"].startswith("HIT")
        error = ask(proxy.port, "http://127.0.0.1:1/")
        seen[name] = (project(hit[1], TO_CLIENT[:-1]), project(error[1], ["server", "x-added", "x-only-lan"]),
                      error[0])
    assert seen["squid"] == seen["squidpy"], seen


def test_suppressed_version_string_as_in_squid(both, origin):
    squid, ours = both("http_access allow all\nhttpd_suppress_version_string on\n")
    for proxy, name in ((squid, "squid"), (ours, "squidpy")):
        _, headers, body = ask(proxy.port, "http://127.0.0.1:1/")
        assert headers["server"] == name and headers["via"].endswith(f"({name})")
        assert f"{name}/".encode() not in body


# ------------------------------------------------------------ the indirect client

XFF = """
acl lb src 127.0.0.1
follow_x_forwarded_for allow lb
acl office src 10.20.0.0/16
http_access allow office
http_access deny all
"""


@pytest.mark.parametrize("extra", ["", "acl_uses_indirect_client off\n", "log_uses_indirect_client off\n"])
def test_the_indirect_client_is_tested_forwarded_and_logged_as_in_squid(both, origin, extra):
    squid, ours = both(XFF + extra)
    outcome = {}
    for name, proxy in (("squid", squid), ("squidpy", ours)):
        answers = []
        for n, (source, xff) in enumerate([("127.0.0.1", "10.20.3.4"), ("127.0.0.1", "10.20.3.4, 192.0.2.9"),
                                           ("127.0.0.2", "10.20.3.4"), ("127.0.0.1", "garbage, 10.20.3.5")]):
            path = f"/echo/{name}-{n}"          # Squid logs URLs without their query
            status, _, body = ask(proxy.port, origin.url(path), {"X-Forwarded-For": xff}, source=source)
            forwarded = {k.lower(): v for k, v in json.loads(body)["headers"]}.get("x-forwarded-for") \
                if status == 200 else None
            logged = proxy.log_line(path).split()[2]
            answers.append((status, forwarded, logged))
        outcome[name] = answers
    assert outcome["squid"] == outcome["squidpy"], outcome


# ------------------------------------------------------------ miss_access

MISS = """
acl fetchers src 127.0.0.1
miss_access allow fetchers
miss_access deny all
http_access allow all
"""


def test_miss_access_answers_and_logs_as_squid(both, origin):
    squid, ours = both(MISS)
    outcome = {}
    for size, name, proxy in ((7, "squid", squid), (8, "squidpy", ours)):
        url = origin.url(f"/obj/miss-{name}?cc=max-age%3D600")
        fetched = ask(proxy.port, url)                              # 127.0.0.1 may fetch
        hit = ask(proxy.port, url, source="127.0.0.2")              # a hit needs no fetch
        refused = ask(proxy.port, origin.url(f"/size/{size}"), source="127.0.0.2")
        tunnel = ask(proxy.port, f"127.0.0.1:{origin.port}", method="CONNECT", source="127.0.0.2")
        logged = [proxy.log_line(f"/size/{size}").split()[3], proxy.log_line("CONNECT").split()[3]]
        outcome[name] = (fetched[0], hit[0], hit[1]["x-cache"].split()[0], refused[0],
                         refused[1].get("x-squid-error"), tunnel[0], tunnel[1].get("x-squid-error"), logged)
    assert outcome["squid"] == outcome["squidpy"], outcome
    assert outcome["squid"][3:5] == (403, "ERR_FORWARDING_DENIED 0")
    assert outcome["squid"][7] == ["TCP_MISS/403", "NONE_NONE/403"]


# ------------------------------------------------------------ error pages in the client's language

needs_langpack = pytest.mark.skipif(not os.path.isdir(os.path.join(LANGPACK_DIR, "de")),
                                    reason="Debian's squid-langpack is not installed (.ci/run installs it)")

LANGUAGES = [None, "de", "de-CH, fr", "xx-yy, fr;q=0.5", "en-GB, de", "*, de", "pt_BR", "es-419, it", "DE-at",
             "zh-hant-tw", "x, y, z"]


def _title(body: bytes) -> str | None:
    found = re.search(rb"<title>(.*?)</title>", body, re.S)
    return found.group(1).decode("utf-8", "replace").strip() if found else None


@needs_langpack
@pytest.mark.parametrize("extra", ["", "error_default_language fr\n"])
def test_error_pages_are_in_the_language_squid_chooses(both, extra):
    squid, ours = both("http_access allow all\n" + extra)
    for accept in LANGUAGES:
        headers = {"Accept-Language": accept} if accept is not None else {}
        seen = {}
        for name, proxy in (("squid", squid), ("squidpy", ours)):
            status, got, body = ask(proxy.port, "http://127.0.0.1:1/", headers)
            language = got.get("content-language")
            english = language is not None and (language == "en" or language.startswith("en-"))
            seen[name] = (status, got.get("x-squid-error", "").split()[0], got.get("vary"), language,
                          None if english else _title(body))       # English pages are squidpy's own
        assert seen["squid"] == seen["squidpy"], (accept, seen)


@needs_langpack
def test_error_directory_turns_languages_off_in_both(both):
    directory = Path(tempfile.mkdtemp(prefix="squid-errors-"))    # Squid, run as 'proxy', must read it
    try:
        os.chmod(directory, 0o755)
        for page in ("ERR_CONNECT_FAIL", "ERR_ACCESS_DENIED"):
            (directory / page).write_text(f"<title>mine {page}</title>%U")
            os.chmod(directory / page, 0o644)
        squid, ours = both(f"http_access allow all\nerror_directory {directory}\n")
        for proxy in (squid, ours):
            status, got, body = ask(proxy.port, "http://127.0.0.1:1/", {"Accept-Language": "de"})
            assert (status, got.get("vary"), got.get("content-language"), _title(body)) == (
                503, None, None, "mine ERR_CONNECT_FAIL")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
