"""Unit tests: error page templates and their % codes (no sockets)."""

from __future__ import annotations

import html.parser
import os

import pytest

from squidpy import __version__
from squidpy.errors import BUILTIN_DIR, STATUS, ErrorContext, ErrorPages
from squidpy.http.message import reason_phrase

pages = ErrorPages(None, "proxy1.example.lan", "admin@example.lan")
NOW = 1700000000.0          # Tue, 14 Nov 2023 22:13:20 GMT
ALL_PAGES = sorted(STATUS) + ["ERR_GENERIC"]
VOID = {"meta", "link", "br", "hr", "img", "input", "wbr", "area", "base", "col", "source"}


def full_context(name: str) -> ErrorContext:
    return ErrorContext(
        name=name, url="http://example.com/x", method="GET", client_ip="10.0.0.7", server_ip="192.0.2.9",
        host="example.com", port=80, protocol="HTTP", detail="because-detail",
        errno_text="(111) Connection refused", dns_error="NXDOMAIN-text", request_head="GET / HTTP/1.1",
    )


class _Doc(html.parser.HTMLParser):
    """Collects what the checks need and the nesting errors of non-void elements."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.stack, self.errors = [], {}, [], []
        self.doctype, self.body_id, self.title, self.text = None, None, "", []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.setdefault(tag, []).append(dict(attrs))
        if tag == "body":
            self.body_id = dict(attrs).get("id")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "title":
            self.title += data
        self.text.append(data)


def parse(body: bytes) -> _Doc:
    doc = _Doc()
    doc.feed(body.decode("utf-8"))
    doc.close()
    return doc


# ------------------------------------------------------------ the built-in set

def test_every_page_name_has_a_template_and_no_file_is_stray():
    files = set(os.listdir(BUILTIN_DIR))
    assert set(ALL_PAGES) <= files
    assert files == set(ALL_PAGES) | {"errorpage.css"}
    assert all(reason_phrase(status) != b"Unknown" for status in STATUS.values())


@pytest.mark.parametrize("name", ALL_PAGES)
def test_every_template_is_a_complete_html5_document(name):
    body = pages.render(full_context(name), now=NOW)
    doc = parse(body)
    assert doc.doctype and doc.doctype.lower() == "doctype html"
    assert not doc.errors and not doc.stack, (doc.errors, doc.stack)
    assert doc.tags[:2] == ["html", "head"] and doc.tags.count("body") == 1
    assert doc.body_id == name
    assert doc.title.startswith("ERROR: ")
    assert {"charset": "utf-8"} in doc.attrs["meta"]
    assert any(m.get("name") == "viewport" and "width=device-width" in m.get("content", "")
               for m in doc.attrs["meta"])
    assert doc.attrs["html"][0].get("lang") == "en"
    css = pages.stylesheet().encode()
    assert b"<style>" + css + b"</style>" in body and b"#titles" in css     # %l
    assert b"%" not in body.replace(css, b"")              # every code was replaced
    assert b"[unknown]" not in body                         # ... with a value from the context
    text = " ".join(" ".join(doc.text).split())
    assert "Generated Tue, 14 Nov 2023 22:13:20 GMT by proxy1.example.lan (squidpy/%s)" % __version__ in text
    assert "http://example.com/x" in text and "10.0.0.7" in text
    assert {"href": "mailto:admin@example.lan"} in doc.attrs["a"]


@pytest.mark.parametrize("name, shown", [
    ("ERR_DNS_FAIL", ["example.com", "NXDOMAIN-text"]),
    ("ERR_CONNECT_FAIL", ["192.0.2.9", "(111) Connection refused", "example.com"]),
    ("ERR_INVALID_REQ", ["because-detail"]),
    ("ERR_INVALID_URL", ["because-detail"]),
    ("ERR_TOO_BIG", ["because-detail"]),
    ("ERR_UNSUP_REQ", ["GET", "HTTP", "because-detail"]),
    ("ERR_GENERIC", ["ERR_GENERIC", "because-detail"]),
    ("ERR_ACCESS_DENIED", ["because-detail", "10.0.0.7"]),
    ("ERR_CACHE_ACCESS_DENIED", ["10.0.0.7"]),
])
def test_pages_show_the_codes_their_situation_needs(name, shown):
    text = " ".join(parse(pages.render(full_context(name))).text)
    for value in shown:
        assert value in text


def test_invalid_url_is_not_made_a_link():
    body = pages.render(ErrorContext(name="ERR_INVALID_URL", url="javascript:alert(1)", detail="bad scheme"))
    assert b'href="javascript' not in body
    assert b"<code>javascript:alert(1)</code>" in body


def test_url_is_a_link_where_it_can_be_followed():
    doc = parse(pages.render(full_context("ERR_READ_TIMEOUT")))
    assert {"href": "http://example.com/x"} in doc.attrs["a"]


def test_stylesheet_is_small_and_has_phone_and_print_rules():
    with open(os.path.join(BUILTIN_DIR, "errorpage.css"), encoding="utf-8") as f:
        css = f.read()
    assert len(css) < 4096 and "@media print" in css and "max-width" in css
    assert "</" not in css                                   # safe inside <style>
    assert css.count("{") == css.count("}")


# ------------------------------------------------------------ the renderer

def test_codes_are_filled():
    body = pages.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://a.example/p?q=1",
                                     client_ip="10.9.8.7"))
    assert b'<a href="http://a.example/p?q=1">http://a.example/p?q=1</a>' in body
    assert b"10.9.8.7" in body and b'<body id="ERR_ACCESS_DENIED">' in body


def test_every_code_renders(tmp_path):
    (tmp_path / "ERR_X").write_text("|".join("%" + c for c in "cDEhHiIMpPRsTUwWzL%"))
    custom = ErrorPages(str(tmp_path), "ph", "boss@x")
    assert custom.render(full_context("ERR_X"), now=NOW).decode().split("|") == [
        "ERR_X", "because-detail", "(111) Connection refused", "ph", "example.com", "10.0.0.7", "192.0.2.9",
        "GET", "80", "HTTP", "GET / HTTP/1.1", f"squidpy/{__version__}", "Tue, 14 Nov 2023 22:13:20 GMT",
        "http://example.com/x", "boss@x", "mailto:boss@x", "NXDOMAIN-text", "", "%"]


def test_hostile_values_are_html_escaped():
    hostile = 'http://x/<script>alert(1)</script>"'
    for name in ALL_PAGES:
        body = pages.render(ErrorContext(name=name, url=hostile, client_ip="10.0.0.7", host="<b>h</b>",
                                         detail="<img src=x onerror=alert(1)>", dns_error="<i>",
                                         errno_text="'quoted'"))
        assert b"<script>" not in body and b"<img" not in body and b"<b>h</b>" not in body
        assert b"<i>" not in body and b"'quoted'" not in body
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in body
        assert parse(body).body_id == name                    # the quote did not break out of href


def test_percent_percent_is_a_literal_percent(tmp_path):
    (tmp_path / "ERR_ACCESS_DENIED").write_text("100%% sure, 50%%U, end %")
    custom = ErrorPages(str(tmp_path), "p", "a")
    assert custom.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://u/")) == b"100% sure, 50%U, end %"


def test_unknown_code_is_left_as_it_is(tmp_path):
    (tmp_path / "ERR_ACCESS_DENIED").write_text("%Q %U")
    custom = ErrorPages(str(tmp_path), "p", "a")
    assert custom.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://u/")) == b"%Q http://u/"


def test_missing_detail_prints_nothing_but_missing_values_say_unknown():
    body = pages.render(ErrorContext(name="ERR_CONNECT_FAIL", url="http://x/"))
    assert b"[unknown]" in body                              # %I, the server address, was not known
    assert b'<p class="detail"></p>' in body                 # %E: nothing (the stylesheet hides the box)
    body = pages.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://x/", client_ip="1.2.3.4"))
    assert b"[unknown]" not in body                          # no %D detail: nothing printed


# ------------------------------------------------------------ error_directory and fallbacks

def test_error_directory_overrides_one_page_and_falls_back_for_others(tmp_path):
    (tmp_path / "ERR_ACCESS_DENIED").write_text("<html><body>Blocked: %U for %i. 100%% sure.</body></html>")
    custom = ErrorPages(str(tmp_path), "p", "a")
    assert custom.render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://fb/", client_ip="10.1.1.1")) == \
        b"<html><body>Blocked: http://fb/ for 10.1.1.1. 100% sure.</body></html>"
    ctx = ErrorContext(name="ERR_DNS_FAIL", host="gone.example")
    other = custom.render(ctx, now=NOW)
    assert parse(other).body_id == "ERR_DNS_FAIL" and b"gone.example" in other
    assert other == ErrorPages(None, "p", "a").render(ctx, now=NOW)          # the built-in page


def test_error_directory_stylesheet_overrides_the_builtin_one(tmp_path):
    (tmp_path / "errorpage.css").write_text("body { color: teal }")
    body = ErrorPages(str(tmp_path), "p", "a").render(ErrorContext(name="ERR_READ_ERROR"))
    assert b"<style>body { color: teal }</style>" in body


def test_missing_error_directory_uses_the_builtin_set(tmp_path):
    custom = ErrorPages(str(tmp_path / "does-not-exist"), "p", "a")
    assert parse(custom.render(ErrorContext(name="ERR_TOO_BIG"))).body_id == "ERR_TOO_BIG"


def test_unknown_page_falls_back_to_generic():
    body = pages.render(ErrorContext(name="ERR_SOMETHING_NEW", detail="odd"))
    assert parse(body).body_id == "ERR_SOMETHING_NEW"
    assert b"<code>ERR_SOMETHING_NEW</code>" in body and b"odd" in body


def test_custom_generic_page_is_the_fallback_for_unknown_names(tmp_path):
    (tmp_path / "ERR_GENERIC").write_text("generic %c")
    assert ErrorPages(str(tmp_path), "p", "a").render(ErrorContext(name="ERR_NEW")) == b"generic ERR_NEW"


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", ".hidden", "a\\b", "ERR_\0X", ""])
def test_page_names_cannot_escape_the_directory(name):
    body = pages.render(ErrorContext(name=name))
    assert b"root:" not in body
    assert b"The proxy could not complete this request" in body     # ERR_GENERIC


def test_template_in_another_encoding_still_renders(tmp_path):
    (tmp_path / "ERR_ACCESS_DENIED").write_bytes("Accès refusé: %U".encode("latin-1"))
    body = ErrorPages(str(tmp_path), "p", "a").render(ErrorContext(name="ERR_ACCESS_DENIED", url="http://u/"))
    assert body.endswith(b"http://u/") and body.startswith(b"Acc")
