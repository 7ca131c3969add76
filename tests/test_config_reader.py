"""squid.conf read as Squid 5.7 reads it (ConfigParser and cache_cf semantics).

Every construct here was checked against `squid -k parse` of Squid 5.7; the
differential tests (test_squid_differential.py) compare the verdicts live.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from squidpy.acl.checklist import Checklist
from squidpy.config import loader

PATH = "/etc/squid/squid.conf"


def load(text: str, path: str = PATH):
    return loader.load(path, text=text)


def problems(text: str, path: str = PATH) -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        load(text, path)
    return [str(x) for x in e.value.errors]


def warnings(config) -> list[str]:
    return [str(w) for w in config.warnings]


def request(host: str = "www.example.com", path: str = "/", src: str = "10.0.0.7") -> Checklist:
    return Checklist(src=src, url=f"http://{host}{path}", host=host, path=path)


def allowed(config, **kw) -> bool:
    return config.http_access.check(request(**kw)).allowed


# ------------------------------------------------------------ the six silent differences of issue 12

def test_a_commented_line_inside_a_continuation_is_skipped_alone():
    config = load("acl blocked dstdomain \\\n  .facebook.com \\\n#  .twitter.com \\\n  .youtube.com\n"
                  "http_access deny blocked\nhttp_access allow all\n")
    assert not allowed(config, host="www.youtube.com")
    assert not allowed(config, host="www.facebook.com")
    assert allowed(config, host="twitter.com")


def test_continuations_are_joined_as_written_without_a_blank():
    config = load("acl blocked dstdomain .face\\\nbook.com\nhttp_access deny blocked\nhttp_access allow all\n")
    assert not allowed(config, host="www.facebook.com")
    assert allowed(config, host="face")


def test_blank_lines_inside_a_continuation_are_skipped_and_a_blank_after_the_backslash_ends_it():
    config = load("acl a src 10.0.0.1 \\\n\n   10.0.0.2\n")
    assert request(src="10.0.0.2").src_key in config.acls.get("a").matcher.addresses
    assert "is not an IP address" in problems("acl a src 10.0.0.1 \\ \n10.0.0.2\n")[0]


def test_acl_names_ignore_case():
    config = load("acl LocalNet src 10.0.0.0/8\nacl localnet src 192.168.0.0/16\n"
                  "http_access allow LOCALNET\nhttp_access deny all\n")
    assert allowed(config, src="10.1.2.3") and allowed(config, src="192.168.1.1")
    assert config.acls.get("localNET").name == "LocalNet"      # the first spelling is kept


def test_comments_in_acl_value_files(tmp_path):
    (tmp_path / "exe.txt").write_text("# executables and installers\n\\.exe$   # executables\n"
                                      "  \\.msi$\t# installers\n\n\\.a b$ \n")
    conf = tmp_path / "squid.conf"
    conf.write_text('acl exe urlpath_regex "exe.txt"\nhttp_access deny exe\nhttp_access allow all\n')
    config = loader.load(str(conf))
    assert not allowed(config, path="/setup.exe")
    assert not allowed(config, path="/setup.msi")
    assert not allowed(config, path="/x.a b")                 # words of one line are one value
    assert allowed(config, path="/readme.txt")


@pytest.mark.parametrize("line,attr,value", [
    ("maximum_object_size 4096", "maximum_object_size", 4096),
    ("request_header_max_size 65536", "request_header_max_size", 65536),
    ("cache_mem 256", "cache_mem", 256),
    ("maximum_object_size_in_memory 8192", "maximum_object_size_in_memory", 8192),
])
def test_a_bare_size_is_in_bytes(line, attr, value):
    config = load(line + "\n")
    assert getattr(config, attr) == value
    assert f"no unit after {value}: taken as {value} bytes, as Squid takes it" in warnings(config)[0]


def test_regular_expressions_are_posix_extended():
    config = load("acl digits url_regex [[:digit:]]{4}\nacl perl url_regex \\d{4}\n")
    assert config.acls.get("digits").match(request(path="/2024"))
    perl = config.acls.get("perl")
    assert not perl.match(request(path="/2024")) and perl.match(request(path="/dddd"))
    assert "'\\d' is a literal 'd' here" in warnings(config)[0]
    assert warnings(config)[0].startswith(f"{PATH}:2: WARNING:")


# ------------------------------------------------------------ bytes, lines, macros

def test_a_latin1_file_reads_without_error(tmp_path):
    conf = tmp_path / "squid.conf"
    conf.write_bytes(b"# R\xe9seau du si\xe8ge\nacl caf\xe9 urlpath_regex caf\xe9\nhttp_access deny caf\xe9\n"
                     b"http_access allow all\n")
    config = loader.load(str(conf))
    assert not allowed(config, path="/caf\xe9")           # the same byte in the request
    assert config.acls.get("caf\xe9") is not None
    out = subprocess.run([sys.executable, "-m", "squidpy", "parse", "-f", str(conf)], capture_output=True)
    assert out.returncode == 0 and b"Traceback" not in out.stderr


def test_carriage_returns_end_the_line():
    config = load("acl a src 10.0.0.1\r\nacl b src 10.0.0.2\rjunk\r\n")
    assert config.acls.get("b") is not None


def test_a_continuation_open_at_the_end_of_the_file_is_dropped():
    config = load("acl a src 10.0.0.1\nacl b src 10.0.0.2 \\")
    assert config.acls.get("b") is None
    assert "the file ends inside a '\\' continuation" in warnings(config)[0]


def test_macros():
    config = load("visible_hostname ${service_name}-${process_name}-${process_number}-${other}\n")
    assert config.visible_hostname == "squidpy-squidpy-1-${other}"
    assert "${other} is not a known macro; it is kept as written" in warnings(config)[0]


# ------------------------------------------------------------ if / else / endif

def test_conditions():
    config = load("if ${process_number} = 1\nvisible_hostname one\nelse\nvisible_hostname other\nendif\n"
                  "if 0x10 = 16\ncache_mgr hex\nendif\nif false\nlogfile_rotate 3\nendif\n")
    assert config.visible_hostname == "one" and config.cache_mgr == "hex" and config.logfile_rotate == 10


def test_only_the_innermost_condition_counts_as_in_squid():
    config = load("if false\nif true\ncache_mgr inner\nendif\nvisible_hostname after\nendif\n")
    assert config.cache_mgr == "inner"
    assert config.visible_hostname != "after"


@pytest.mark.parametrize("text,message", [
    ("else\n", "1: 'else' without 'if'"),
    ("endif\n", "1: 'endif' without 'if'"),
    ("if true\nvia on\n", "1: 'if' without 'endif'"),
    ("if maybe\nendif\n", "1: cannot evaluate the condition 'maybe'"),
    ("if 1 = 1 junk\nendif\n", "1: '1 = 1 junk' compares something that is not an integer number"),
])
def test_condition_errors(text, message):
    assert problems(text)[0].startswith(f"{PATH}:{message}")


# ------------------------------------------------------------ include

def test_include_globs_paths_in_quotes_and_several_paths(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("acl b src 10.0.0.2\n")
    (tmp_path / "conf.d" / "a.conf").write_text("acl a src 10.0.0.1\n")
    (tmp_path / "with space.conf").write_text("acl s src 10.0.0.3\n")
    (tmp_path / "x.conf").write_text("acl x src 10.0.0.4\n")
    conf = tmp_path / "squid.conf"
    conf.write_text(f'include {tmp_path}/conf.d/*.conf "{tmp_path}/with space.conf" x.conf\n')
    config = loader.load(str(conf))
    assert [config.acls.get(n).where for n in ("a", "b", "s", "x")] == [
        f"{tmp_path}/conf.d/a.conf:1", f"{tmp_path}/conf.d/b.conf:1", f"{tmp_path}/with space.conf:1",
        f"{tmp_path}/x.conf:1"]


@pytest.mark.parametrize("line", ["include /nonexistent/conf.d/*.conf", "include /nonexistent/one.conf"])
def test_an_include_that_matches_nothing_is_an_error(line):
    assert problems(line + "\n") == [f"{PATH}:1: include: no configuration file matches {line.split()[1]}"]


def test_include_depth_is_limited(tmp_path):
    (tmp_path / "loop.conf").write_text(f"include {tmp_path}/loop.conf\n")
    assert "include nested deeper than 16 levels" in problems(f"include {tmp_path}/loop.conf\n")[0]


def test_errors_name_the_included_file(tmp_path):
    (tmp_path / "bad.conf").write_text("\nvia maybe\n")
    assert problems(f"include {tmp_path}/bad.conf\n") == [f"{tmp_path}/bad.conf:2: via: expected 'on' or 'off'"]


# ------------------------------------------------------------ quoted values and parameters()

def test_quoted_values_and_parameters(tmp_path):
    (tmp_path / "domains.txt").write_text('.a.example .b.example # two on a line\n# a comment\n".c.example"\n')
    conf = tmp_path / "squid.conf"
    conf.write_text('configuration_includes_quoted_values on\n'
                    'acl d dstdomain parameters("domains.txt") ".z.example"\n'
                    'visible_hostname "proxy one"\n'
                    'configuration_includes_quoted_values off\n'
                    'http_access deny d\nhttp_access allow all\n')
    config = loader.load(str(conf))
    for host in ("x.a.example", "b.example", "c.example", "z.example"):
        assert not allowed(config, host=host)
    assert config.visible_hostname == "proxy one"
    assert config.acls.get("d").matcher.domains is not None


def test_quoted_values_mode_is_strict_as_in_squid():
    on = "configuration_includes_quoted_values on\n"
    assert "character '!' is not allowed in the unquoted word !a" in problems(
        on + "acl a src 10.0.0.1\nhttp_access deny !a\n")[0]
    assert "regular expressions cannot be read while configuration_includes_quoted_values is on" in problems(
        on + "acl r url_regex foo\n")[0]
    assert "unknown configuration function files(" in problems(on + 'acl a dstdomain files("x")\n')[0]


def test_without_quoted_values_a_quoted_word_names_a_file(tmp_path):
    (tmp_path / "list.txt").write_text(".example.com\n")
    conf = tmp_path / "squid.conf"
    conf.write_text("acl d dstdomain 'list.txt' after.example\nhttp_access deny d\nhttp_access allow all\n")
    config = loader.load(str(conf))
    assert not allowed(config, host="www.example.com")
    # Squid stops reading the line at the end of the file: the words after it are ignored
    assert allowed(config, host="after.example")
    assert "'after.example' after the file of values is ignored" in warnings(config)[0]


# ------------------------------------------------------------ what Squid accepts, with its notes

def test_acl_all_src_all_and_zero_networks():
    config = load("acl all src all\nacl z src 0/0\nhttp_access allow z\n")
    assert allowed(config, src="203.0.113.9") and allowed(config, src="2001:db8::1")
    assert "'0/0' needs to be replaced by the term 'all'" in " ".join(warnings(config))


def test_acl_names_with_any_character_squid_allows():
    config = load("acl my.acl/1+x:y src 10.0.0.1\nhttp_access allow my.acl/1+x:y\n")
    assert allowed(config, src="10.0.0.1")
    assert "longer than 63 characters" in problems(f"acl {'n' * 64} src 10.0.0.1\n")[0]


def test_legacy_acl_forms():
    config = load("acl manager proto cache_object\nacl me myip 127.0.0.1\nacl p myport 3128\n"
                  "http_access allow manager\n")
    said = " ".join(warnings(config))
    assert "ACL 'manager' is now a built-in ACL" in said
    assert "'myip' has been renamed to 'localip'" in said and "'myport' has been renamed to 'localport'" in said
    assert config.acls.get("me").type_name == "localip" and config.acls.get("p").type_name == "localport"
    assert config.acls.get("manager").type_name == "url_regex"


def test_obsolete_directives_and_aliases():
    config = load("hierarchy_stoplist cgi-bin ?\nno_cache deny all\ncache_access_log /tmp/a.log\n"
                  "pconn_timeout 30 seconds\nrefresh_pattern . 0 20% 4320 ignore-no-cache\n"
                  "logformat squid %ts\n")
    said = warnings(config)
    assert said[0].startswith(f"{PATH}:1: WARNING: hierarchy_stoplist is obsolete and ignored")
    assert config.cache.rules[0].text == "no_cache deny all"
    assert config.access_log[0].destination.path == "/tmp/a.log"
    assert config.server_idle_pconn_timeout == 30
    assert "refresh_pattern option 'ignore-no-cache' is obsolete" in said[1]
    assert "logformat squid is already defined; this line is ignored" in said[2]
    assert "log_access is obsolete" in problems("log_access allow all\n")[0]


def test_every_error_names_file_and_line(tmp_path):
    (tmp_path / "values.txt").write_text("10.0.0.1\nnot-an-address\n")
    conf = tmp_path / "squid.conf"
    conf.write_text('acl a src "values.txt"\nssl_bump bump all\nhttp_port 3128 accel\n'
                    "acl b ident alice\nhttp_access allow b\nbogus 1\n")
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(conf))
    assert [str(x) for x in e.value.errors] == [
        f"{tmp_path}/values.txt:2: ACL 'a': 'not-an-address' is not an IP address or an address range",
        f"{conf}:2: Squid directive ssl_bump is not implemented by squidpy yet (see docs/squid-compat.md)",
        f"{conf}:3: http_port: Squid http_port option accel is not implemented by squidpy yet "
        "(reverse proxy (accelerator) mode; see docs/squid-compat.md)",
        f"{conf}:4: acl: Squid ACL type ident is not implemented by squidpy yet "
        "(ident lookups; see docs/squid-compat.md)",
        f"{conf}:6: unknown directive 'bogus'",
    ]                                        # line 5 names b: no cascade of 'used before it is defined'
