"""Unit tests: squid.conf reading, value syntaxes, the directive registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squidpy.config import loader, reference
from squidpy.config.reader import logical_lines, split_words
from squidpy.config.values import parse_http_port, parse_size, parse_time

ROOT = Path(__file__).resolve().parent.parent


def load(text: str, path: str = "/etc/squidpy/test.conf"):
    return loader.load(path, text=text)


def errors_of(text: str, path: str = "/etc/squidpy/test.conf") -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        load(text, path)
    return [str(err) for err in e.value.errors]


# ------------------------------------------------------------ reader

def test_comments_and_continuations():
    text = "# a comment\n  # indented comment\n\nacl a src \\\n  10.0.0.0/8 \\\n  192.168.0.0/16\nhttp_port 3128\n"
    lines = list(logical_lines(text))
    assert lines[0][0] == 4
    assert lines[0][1].split() == ["acl", "a", "src", "10.0.0.0/8", "192.168.0.0/16"]
    assert lines[1] == (7, "http_port 3128")


def test_trailing_comment_starts_at_a_word():
    assert split_words("port 80 # http") == ["port", "80"]
    assert split_words(r"url_regex ^http://x/#frag") == ["url_regex", "^http://x/#frag"]


def test_quotes_are_characters_unless_quoted_values_are_on():
    assert split_words('dstdomain "/etc/squidpy/domains.txt" .example.com') == [
        "dstdomain", '"/etc/squidpy/domains.txt"', ".example.com"]
    assert split_words('visible_hostname "my host" x', quoted_values=True) == ["visible_hostname", "my host", "x"]


def test_include_with_glob_and_relative_path(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("acl a src 10.0.0.0/8\n")
    (tmp_path / "conf.d" / "b.conf").write_text("http_access allow a\n")
    main = tmp_path / "squidpy.conf"
    main.write_text("include conf.d/*.conf\nhttp_access deny all\n")
    config = loader.load(str(main))
    assert [r.text for r in config.http_access.rules] == ["http_access allow a", "http_access deny all"]
    assert config.http_access.rules[0].where == f"{tmp_path}/conf.d/b.conf:1"


def test_include_missing_file_is_an_error(tmp_path):
    main = tmp_path / "squidpy.conf"
    main.write_text("include nothere.conf\n")
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(main))
    assert str(e.value.errors[0]).startswith(f"{main}:1: include")


def test_macros(tmp_path):
    config = load("visible_hostname proxy-${process_number}\ncache_log ${state_dir}/x.log\n")
    assert config.visible_hostname == "proxy-1"
    assert config.cache_log == os.path.join(loader.state_dir(), "x.log")
    config = load("visible_hostname ${nope}\n")
    assert config.visible_hostname == "${nope}"
    assert "${nope} is not a known macro; it is kept as written" in str(config.warnings[0])


# ------------------------------------------------------------ values

@pytest.mark.parametrize("args,seconds", [
    (["30", "seconds"], 30), (["2", "minutes"], 120), (["1.5", "hours"], 5400), (["500", "ms"], 0.5),
    (["1", "day"], 86400), (["1", "week"], 604800), (["45"], 45), (["2", "minutesxyz"], 120),
    (["1", "year"], 8766 * 3600), (["0x10", "seconds"], 16),
])
def test_time_units(args, seconds):
    assert parse_time(args) == pytest.approx(seconds)


@pytest.mark.parametrize("args,size", [
    (["64", "KB"], 65536), (["4", "MB"], 4 << 20), (["1", "GB"], 1 << 30), (["100", "bytes"], 100),
    (["64KB"], 65536), (["2"], 2), (["64", "kbytes"], 65536), (["1.5", "MB"], 3 << 19), (["none"], -1),
])
def test_size_units(args, size):
    assert parse_size(args) == size


@pytest.mark.parametrize("args,message", [
    (["lots"], "'lots' is not a size such as '64 KB'"),
    (["64", "lots"], "unknown size unit 'lots' (use bytes, KB, MB or GB)"),
    (["KB"], "'KB' is not a size such as '64 KB'"),
])
def test_bad_sizes_say_what_is_wrong(args, message):
    with pytest.raises(ValueError) as e:
        parse_size(args)
    assert str(e.value) == message


def test_cache_mem_lots_names_the_line(tmp_path):
    conf = tmp_path / "squidpy.conf"
    conf.write_text("cache_mem lots\n")
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(conf))
    assert [str(err) for err in e.value.errors] == [f"{conf}:1: cache_mem: 'lots' is not a size such as '64 KB'"]


@pytest.mark.parametrize("bad", [["ten", "seconds"], ["10", "fortnights", "x"], ["-1", "s"], ["3", "parsecs"]])
def test_bad_times(bad):
    with pytest.raises(ValueError):
        parse_time(bad)


def test_http_port_forms():
    assert parse_http_port(["3128"]).key == ("http", "", 3128)
    assert parse_http_port(["127.0.0.1:8080"]).key == ("http", "127.0.0.1", 8080)
    assert parse_http_port(["[::1]:3128"]).key == ("http", "::1", 3128)
    assert parse_http_port(["127.0.0.1:9301"], kind="metrics").key == ("metrics", "127.0.0.1", 9301)
    assert parse_http_port(["3128", "name=office"]).name == "office"
    for bad in (["::1:3128"], ["99999"], ["1.2.3.4:x"], ["3128", "bogus=1"], ["300.1.1.1:80"]):
        with pytest.raises(ValueError):
            parse_http_port(bad)


# ------------------------------------------------------------ directives

def test_defaults_apply():
    config = load("")
    assert [p.port for p in config.http_port] == [3128]
    assert config.connect_timeout == 60
    assert config.read_timeout == 15 * 60
    assert config.request_header_max_size == 64 * 1024
    assert config.via is True and config.forwarded_for == "on"
    assert config.access_log[0].format_name == "squid"
    assert config.http_access.rules == []


def test_every_error_is_reported_with_file_and_line():
    errors = errors_of(
        "http_port 3128\n"
        "bogus_directive 1\n"
        "connect_timeout soon\n"
        "via maybe\n"
        "acl x src 10.0.0.0/33\n"
        "http_access allow undefined_acl\n"
        "acl y nosuchtype 1\n"
        "forwarded_for sometimes\n"
    )
    assert errors == [
        "/etc/squidpy/test.conf:2: unknown directive 'bogus_directive'",
        "/etc/squidpy/test.conf:3: connect_timeout: 'soon' is not a number",
        "/etc/squidpy/test.conf:4: via: expected 'on' or 'off'",
        "/etc/squidpy/test.conf:5: ACL 'x': '10.0.0.0/33' is not a valid network (use ADDRESS/BITS or ADDRESS/NETMASK)",
        "/etc/squidpy/test.conf:6: http_access: ACL 'undefined_acl' is used before it is defined (define it with an 'acl undefined_acl ...' line first)",
        "/etc/squidpy/test.conf:7: acl: unknown ACL type 'nosuchtype'",
        "/etc/squidpy/test.conf:8: forwarded_for: expected one of: on, off, transparent, delete, truncate",
    ]


def test_words_after_the_value_are_ignored_as_squid_ignores_them():
    config = load("visible_hostname a b\nmaximum_object_size 102400 KB (100MB)\n")
    assert config.visible_hostname == "a"
    assert config.maximum_object_size == 100 << 20
    assert [str(w) for w in config.warnings] == [
        "/etc/squidpy/test.conf:1: WARNING: visible_hostname: 'b' after the value is ignored, as Squid ignores it",
        "/etc/squidpy/test.conf:2: WARNING: maximum_object_size: '(100MB)' after the value is ignored, "
        "as Squid ignores it"]
    assert "expected a time" in errors_of("read_timeout\n")[0]


def test_acl_type_conflict():
    errors = errors_of("acl a src 10.0.0.0/8\nacl a dstdomain .example.com\n")
    assert errors == ["/etc/squidpy/test.conf:2: acl: ACL 'a' is already defined as type 'src' at /etc/squidpy/test.conf:1; it cannot also be 'dstdomain'"]


def test_acl_values_from_file(tmp_path):
    (tmp_path / "blocked.txt").write_text("# social\n.facebook.com\n\n.fbcdn.net\n")
    conf = tmp_path / "squidpy.conf"
    conf.write_text('acl blocked dstdomain "blocked.txt"\n')
    config = loader.load(str(conf))
    assert "www.facebook.com" in config.acls.get("blocked").matcher.domains


def test_bad_value_in_a_value_file_names_that_file_and_line(tmp_path):
    (tmp_path / "blocked.txt").write_text("# social\n.facebook.com\nbad..name\n")
    conf = tmp_path / "squidpy.conf"
    conf.write_text('acl blocked dstdomain "blocked.txt"\n')
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(conf))
    assert [str(x) for x in e.value.errors] == [f"{tmp_path}/blocked.txt:3: ACL 'blocked': 'bad..name' is not a domain name"]


def test_missing_acl_file(tmp_path):
    conf = tmp_path / "squidpy.conf"
    conf.write_text('acl blocked dstdomain "nothere.txt"\n')
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(conf))
    assert "cannot read the values of ACL 'blocked'" in str(e.value.errors[0])
    assert str(e.value.errors[0]).startswith(f"{conf}:1:")


def test_relative_paths_are_from_the_config_directory(tmp_path):
    conf = tmp_path / "squidpy.conf"
    conf.write_text("access_log logs/access.log squid\ncache_log logs/cache.log\n")
    config = loader.load(str(conf))
    assert config.access_log[0].destination.path == str(tmp_path / "logs/access.log")
    assert config.cache_log == str(tmp_path / "logs/cache.log")


def test_access_log_unknown_format():
    assert "unknown logformat 'fancy'" in errors_of("access_log /tmp/a.log logformat=fancy\n")[0]
    # the older positional form: a name that is no logformat is taken as an ACL, as in Squid
    assert "ACL 'fancy' is used before it is defined" in errors_of("access_log /tmp/a.log fancy\n")[0]


def test_logformat_is_read_raw():
    config = load('logformat mine %>a "%rm %ru" %>Hs\naccess_log /tmp/a.log mine\n')
    assert config.logformat["mine"].spec == '%>a "%rm %ru" %>Hs'


def test_dns_nameservers_with_ports():
    config = load("dns_nameservers 10.0.0.1 127.0.0.1:5353 [::1]:5353\n")
    assert config.dns_nameservers == [("10.0.0.1", 53), ("127.0.0.1", 5353), ("::1", 5353)]


def test_default_configuration_is_etc_squidpy_conf():
    etc = (ROOT / "etc" / "squidpy.conf").read_text()
    embedded = Path(loader.default_config_path()).read_text()
    assert etc == embedded
    config = loader.load()
    actions = [(r.action, [("!" if n else "") + a.name for n, a in r.acls]) for r in config.http_access.rules]
    assert actions == [
        ("deny", ["!Safe_ports"]), ("deny", ["CONNECT", "!SSL_ports"]),
        ("allow", ["localhost", "manager"]), ("deny", ["manager"]), ("deny", ["to_localhost"]),
        ("allow", ["localnet"]), ("allow", ["localhost"]), ("deny", ["all"]),
    ]
    assert [p.port for p in config.http_port] == [3128]


def test_reference_page_is_generated_from_the_registry():
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == reference.render(), "regenerate: python -m squidpy.config.reference > docs/reference.md"
