"""Unit tests: the logformat compiler (Squid's % codes) and its generated formatter."""

from __future__ import annotations

import pytest

from squidpy.log.entry import LogEntry
from squidpy.log.logformat import PREDEFINED_FORMATS, compile_format


def entry(**kw) -> LogEntry:
    e = LogEntry(1795369446.152)
    e.end = 1795369446.165
    e.client_ip = "10.0.0.7"
    e.result, e.status, e.hierarchy = "TCP_MISS", 200, "HIER_DIRECT"
    e.server_ip = "93.184.216.34"
    e.method, e.url = "GET", "http://example.com/"
    e.reply_header_size, e.reply_body_size = 426, 1024
    e.mime_type = "text/html"
    for k, v in kw.items():
        setattr(e, k, v)
    return e


def test_squid_native_format_to_the_letter():
    line = PREDEFINED_FORMATS["squid"].format(entry())
    assert line == "1795369446.165     13 10.0.0.7 TCP_MISS/200 1450 GET http://example.com/ - HIER_DIRECT/93.184.216.34 text/html"


def test_denied_line_has_dashes_for_what_is_unknown():
    e = entry(result="TCP_DENIED", status=403, hierarchy="HIER_NONE", server_ip=None, url="http://www.facebook.com/",
              start=1795369447.001, end=1795369447.001)
    line = PREDEFINED_FORMATS["squid"].format(e)
    assert line == "1795369447.001      0 10.0.0.7 TCP_DENIED/403 1450 GET http://www.facebook.com/ - HIER_NONE/- text/html"


@pytest.mark.parametrize("spec,expected", [
    ("%>Hs", "200"), ("%03>Hs", "200"), ("%6tr", "    13"), ("%-6tr|", "13    |"), ("%06tr", "000013"),
    ("%.3tr", "13.000"), ("%.4ru", "http"), ("%%", "%"), ("%un", "-"), ("%<a:%>a", "93.184.216.34:10.0.0.7"),
])
def test_modifiers(spec, expected):
    assert compile_format(spec).format(entry()) == expected


def test_client_controlled_values_cannot_forge_a_line():
    e = entry(url="http://x/a\r\n1795369446.165 0 6.6.6.6 TCP_HIT/200")
    for spec in ("%ru", '%"ru', "%[ru", "%#ru", "%'ru"):
        line = compile_format(spec).format(e)
        assert "\n" not in line and "\r" not in line, spec


def test_request_header_argument_before_and_after_the_code():
    e = entry(request_headers=[(b"User-Agent", b"curl/8 (x)"), (b"Referer", b"http://r/")])
    assert compile_format('"%{User-Agent}>h"').format(e) == '"curl/8%20(x)"'
    assert compile_format('%">h{User-Agent}').format(e) == "curl/8 (x)"
    assert compile_format("%{X-Missing}>h").format(e) == "-"


def test_unknown_code_is_an_error():
    with pytest.raises(ValueError, match="unknown format code"):
        compile_format("%ts %zz")


def test_generated_formatter_matches_field_by_field_rendering():
    e = entry()
    for fmt in PREDEFINED_FORMATS.values():
        assert fmt.format(e) == "".join(p if isinstance(p, str) else p.render(e) for p in fmt.parts)
