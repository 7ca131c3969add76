"""Unit tests: error page templates and their % codes (no sockets)."""

from __future__ import annotations

import html.parser
import os

import pytest

from squidpy.errors import BUILTIN_DIR, STATUS, ErrorContext, ErrorPages

pages = ErrorPages(None, "proxy1.example.lan", "admin@example.lan")


class _Doc(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.body_id, self.title, self._in_title = [], None, "", False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "body":
            self.body_id = dict(attrs).get("id")
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


@pytest.mark.parametrize("name", sorted(STATUS))
def test_every_page_has_a_template_that_renders_as_html(name):
    assert os.path.exists(os.path.join(BUILTIN_DIR, name))
    body = pages.render(ErrorContext(name=name, url="http://example.com/x", client_ip="10.0.0.7",
                                     host="example.com", detail="because"))
    doc = _Doc()
    doc.feed(body.decode())
    assert doc.body_id == name
    assert doc.title.startswith("ERROR")
    assert {"html", "head", "body", "style"} <= set(doc.tags)
    assert b"%" not in body.replace(b"%25", b"")    # every code was replaced
    assert b"http://example.com/x" in body and b"proxy1.example.lan" in body


def test_codes_are_filled_and_escaped():
    body = pages.render(ErrorContext(name="ERR_ACCESS_DENIED", url='http://x/<script>alert(1)</script>"',
                                     client_ip="10.0.0.7"))
    assert b"<script>" not in body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in body
    assert b"10.0.0.7" in body and b"mailto:admin@example.lan" in body


def test_missing_detail_prints_nothing_but_missing_values_say_unknown():
    body = pages.render(ErrorContext(name="ERR_CONNECT_FAIL", url="http://x/"))
    assert b"[unknown]" in body          # %I, the server address, was not known
    body = pages.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://x/", client_ip="1.2.3.4"))
    assert b"[unknown]" not in body      # no %D detail: nothing printed


def test_error_directory_overrides_one_page_and_falls_back_for_others(tmp_path):
    (tmp_path / "ERR_ACCESS_DENIED").write_text("<html><body>Blocked: %U for %i. 100%% sure.</body></html>")
    custom = ErrorPages(str(tmp_path), "p", "a")
    assert custom.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://fb/", client_ip="10.1.1.1")) == \
        b"<html><body>Blocked: http://fb/ for 10.1.1.1. 100% sure.</body></html>"
    assert b'id="ERR_DNS_FAIL"' in custom.render(ErrorContext(name="ERR_DNS_FAIL"))


def test_unknown_page_falls_back_to_generic():
    body = pages.render(ErrorContext(name="ERR_SOMETHING_NEW", detail="odd"))
    assert b'id="ERR_SOMETHING_NEW"' in body and b"odd" in body


def test_page_names_cannot_escape_the_directory():
    body = pages.render(ErrorContext(name="../../etc/passwd"))
    assert b"root:" not in body
