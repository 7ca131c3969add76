"""Unit tests: which language an error page is sent in (Accept-Language, error_default_language,
error_directory), as Squid 5.7 negotiates it, over a language pack laid out as Debian's
squid-langpack (a test one, and the installed one)."""

from __future__ import annotations

import os
import re

import pytest

from squidpy.config.loader import load
from squidpy.errors import LANGPACK_DIR, ErrorContext, ErrorPages, accept_language_tags

NOW = 1700000000.0


@pytest.fixture
def langpack(tmp_path):
    """de, fr, en and pt-br, with Debian's aliases (de-at -> de, en-gb -> en, pt-pt -> pt)."""
    root = tmp_path / "langpack"
    for lang, word in (("de", "Zugriff verweigert"), ("fr", "Accès interdit"), ("en", "Squid's English"),
                       ("pt-br", "Acesso negado")):
        (root / lang).mkdir(parents=True)
        (root / lang / "ERR_ACCESS_DENIED").write_text(f"<p lang={lang}>{word}: %U (%c) %s</p>")
    (root / "de" / "ERR_DNS_FAIL").write_text("<p>DNS kaputt %H</p>")
    (root / "templates").mkdir()
    (root / "templates" / "ERR_ACCESS_DENIED").write_text("Squid's template")
    os.symlink("de", root / "de-at")
    os.symlink("en", root / "en-gb")
    return str(root)


def page(pages: ErrorPages, name: str, accept: str | None):
    p = pages.page(ErrorContext(name=name, url="http://u/", accept_language=accept), now=NOW)
    return p.body.decode(), dict(p.fields), p.missing


@pytest.mark.parametrize("value, tags", [
    ("de", ["de"]),
    ("de-AT, de;q=0.9, en;q=0.5", ["de-at", "de", "en"]),
    ("pt_BR", ["pt-br"]),                                 # a browser's _ read as -, as Squid does
    ("  fr ; q=1 , *", ["fr", "*"]),
    ("es-419, x-klingon, ES", ["x-klingon", "es"]),       # digits: skipped, as in Squid
    ("de;q=0, fr", ["de", "fr"]),                         # q values are not read, as in Squid
    ("en us, fr", ["en", "fr"]),                          # a blank ends the tag
    (",,, ;q=1", []),
    ("d/e, ../fr, de.at", []),                            # nothing that could name a path
])
def test_accept_language_is_read_as_squid_reads_it(value, tags):
    assert list(accept_language_tags(value)) == tags


def test_the_first_language_with_a_translation_wins(langpack):
    pages = ErrorPages(None, "p", "a", langpack=langpack)
    body, fields, missing = page(pages, "ERR_ACCESS_DENIED", "x-klingon, de-AT, fr")
    assert body.startswith("<p lang=de>Zugriff verweigert: http://u/ (ERR_ACCESS_DENIED) squidpy/")
    assert fields == {b"Vary": b"Accept-Language", b"Content-Language": b"de-at"}
    assert missing == ["x-klingon"]


def test_english_is_squidpys_own_page(langpack):
    pages = ErrorPages(None, "p", "a", langpack=langpack)
    for accept in ("en-GB, de", "en", None, "x-none", "*, de"):
        body, fields, _ = page(pages, "ERR_ACCESS_DENIED", accept)
        assert "Squid's English" not in body and "The proxy's rules do not allow this request" in body
        assert fields[b"Vary"] == b"Accept-Language"
    assert page(pages, "ERR_ACCESS_DENIED", "en-GB, de")[1][b"Content-Language"] == b"en-gb"
    assert page(pages, "ERR_ACCESS_DENIED", "*, de")[1][b"Content-Language"] == b"en"


def test_a_language_without_this_page_lets_the_next_one_try(langpack):
    pages = ErrorPages(None, "p", "a", langpack=langpack)
    body, fields, missing = page(pages, "ERR_CONNECT_FAIL", "de, fr")
    assert '<html lang="en">' in body and 'id="ERR_CONNECT_FAIL"' in body    # squidpy's English page
    assert fields[b"Content-Language"] == b"en" and missing == ["de", "fr"]
    assert page(pages, "ERR_DNS_FAIL", "fr, de")[1][b"Content-Language"] == b"de"


def test_error_default_language_is_used_when_nothing_matches(langpack):
    pages = ErrorPages(None, "p", "a", default_language="fr", langpack=langpack)
    body, fields, _ = page(pages, "ERR_ACCESS_DENIED", "x-none")
    assert "Accès interdit" in body and fields[b"Content-Language"] == b"fr"
    assert page(pages, "ERR_ACCESS_DENIED", "de")[1][b"Content-Language"] == b"de"
    assert page(pages, "ERR_ACCESS_DENIED", "*")[1][b"Content-Language"] == b"fr"
    # a page the default language lacks: squidpy's English, which is what it says
    assert page(pages, "ERR_DNS_FAIL", None)[1][b"Content-Language"] == b"en"


def test_error_directory_turns_negotiation_off(langpack, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "ERR_ACCESS_DENIED").write_text("mine %U")
    pages = ErrorPages(str(tmp_path / "mine"), "p", "a", default_language="de", langpack=langpack)
    assert page(pages, "ERR_ACCESS_DENIED", "de") == ("mine http://u/", {}, [])
    assert "DNS" in page(pages, "ERR_DNS_FAIL", "de")[0] and page(pages, "ERR_DNS_FAIL", "de")[1] == {}


def test_custom_deny_info_pages_are_not_negotiated(langpack, tmp_path):
    pages = ErrorPages(None, "p", "a", langpack=langpack)
    body, fields, missing = page(pages, "ERR_MY_OWN", "de")
    assert "ERR_MY_OWN" in body and fields[b"Content-Language"] == b"en" and missing == []


def test_without_a_language_pack_everything_is_english(tmp_path):
    pages = ErrorPages(None, "p", "a", default_language="de", langpack=str(tmp_path / "none"))
    body, fields, missing = page(pages, "ERR_ACCESS_DENIED", "de, fr")
    assert fields[b"Content-Language"] == b"en" and missing == ["de", "fr"]


def test_missing_languages_are_reported_once(langpack):
    pages = ErrorPages(None, "p", "a", langpack=langpack)
    assert pages.not_reported(["xx", "yy"]) == ["xx", "yy"]
    assert pages.not_reported(["xx"]) == []


def test_error_default_language_is_checked_against_the_installed_pack():
    config = load(text="error_default_language xx-nowhere\nhttp_access deny all\n", path="/etc/s.conf")
    assert any("no such language" in w.message for w in config.warnings)
    assert load(text="error_default_language EN\nhttp_access deny all\n").error_default_language == "en"
    assert load(text="http_access deny all\n").error_log_languages is True


@pytest.mark.skipif(not os.path.isdir(os.path.join(LANGPACK_DIR, "de")),
                    reason="Debian's squid-langpack is not installed (.ci/run installs it)")
def test_the_installed_language_pack_is_used_as_installed():
    pages = ErrorPages(None, "proxy.test", "admin@example.lan")
    body, fields, _ = page(pages, "ERR_ACCESS_DENIED", "de-DE,de;q=0.9")
    assert "<title>FEHLER: Die angeforderte URL konnte nicht gefunden werden</title>" in body
    assert fields[b"Content-Language"] == b"de-de"
    assert 'href="mailto:admin@example.lan?subject=CacheErrorInfo%20-%20ERR_ACCESS_DENIED&amp;body=' in body
    mail = body.split('href="mailto:', 1)[1].split('"', 1)[0]
    assert not re.search("%[A-Za-z]", body.replace(mail, "")) and "(squidpy/" in body     # every code filled
    assert page(pages, "ERR_ACCESS_DENIED", "pt-PT")[1][b"Content-Language"] == b"pt-pt"
