"""Squid's own configuration files, judged by `squidpy parse` as Squid judges them.

The files are copies (tests/data/squid-conf/): Debian 12's squid.conf with its
conf.d, the squid.conf Squid generates from cf.data.pre (Squid 6's), and Squid's
test-suite configurations with their .instructions (what Squid expects).  Each
verdict is compared with what `squid -k parse` of the installed Squid 5.7 says;
where they differ, the reason is a documented difference or a directive squidpy
refuses until it implements it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from squidpy.config import compat, loader
from squidpy.config.registry import REFUSED, lookup
from tests.squidproc import SQUID

DATA = Path(__file__).resolve().parent / "data" / "squid-conf"
SUITE = DATA / "squid-testsuite"


@dataclass
class Expect:
    squidpy: bool                  # squidpy accepts the file
    squid57: bool                  # Squid 5.7 accepts it (squid -k parse), checked live
    says: str = ""                 # squidpy's messages include this
    because: str = ""              # why the verdicts differ: an INTENDED id, or "refused:DIRECTIVE"


FILES = {
    "bad-acl-dstdomain-dupe.conf": Expect(True, False, "'c.example.com' is already matched by '.example.com'",
                                          "domain-dupes"),
    "bad-acl-http-status-dupe.conf": Expect(True, True),
    "bad-acl-src-dupe.conf": Expect(True, True, "'127.0.0.2' is already covered by '127.0.0.0-127.0.0.255'"),
    "bad-pp-space.conf": Expect(False, False, "unknown directive 'http_access\\x0b'"),
    "bad-regex.conf": Expect(False, True, "bad regular expression '*': Invalid preceding regular expression",
                             "bad-regex"),
    "bug4832.conf": Expect(False, True, "Squid directive auth_schemes is not implemented", "refused:auth_schemes"),
    "empty.conf": Expect(True, True),
    "external_acl_type.conf": Expect(True, True, "external_acl_type format %>{Header} is deprecated"),
    "file_userip-example.conf": Expect(True, True),
    "mgr_passwd.conf": Expect(True, True, "cachemgr_passwd names no action: the line has no effect"),
    "note-key-change.conf": Expect(False, True, "cannot test both the 'color' and 'weight' annotations",
                                   "note-two-names"),
    "regex.conf": Expect(True, True),
    "regressions-3.3.conf": Expect(True, True),
    "regressions-3.4.0.1.conf": Expect(True, True, "ACL 'Mark' has no values on this line"),
    "regressions-3.5.0.2.conf": Expect(True, True),
    "regressions-4.0.18.conf": Expect(True, True, "delay pool 1 has no delay_parameters line: it limits nothing"),
    "req-header-key-change.conf": Expect(False, True, "cannot match both the x-1 and X-2 headers",
                                         "req-header-two-names"),
    "time_units.conf": Expect(True, True),
}


def squidpy_parse(path: Path, text: str | None = None) -> tuple[bool, str, list[str]]:
    try:
        config = loader.load(str(path), text=text)
    except loader.ConfigErrors as e:
        return False, "\n".join(str(x) for x in [*e.warnings, *e.errors]), [str(x) for x in e.errors]
    return True, "\n".join(str(w) for w in config.warnings), []


def squid_parse(path: Path) -> bool:
    out = subprocess.run([SQUID, "-k", "parse", "-f", str(path)], cwd=path.parent, capture_output=True, timeout=60)
    return out.returncode == 0


def check_difference(expect: Expect) -> None:
    if expect.squidpy == expect.squid57:
        return
    if expect.because.startswith("refused:"):
        assert lookup(expect.because.split(":", 1)[1]).status == REFUSED
    else:
        assert expect.because in compat.INTENDED


@pytest.mark.parametrize("name", sorted(FILES))
def test_squid_test_suite_configurations(name):
    expect = FILES[name]
    accepted, said, errors = squidpy_parse(SUITE / name)
    assert accepted == expect.squidpy, said
    assert expect.says in said
    if not accepted and expect.because.startswith("refused:"):
        # the only errors are the refused directive's lines: everything else reads as in Squid
        directive = expect.because.split(":", 1)[1]
        assert all(f"Squid directive {directive} " in e or "delay_" in e for e in errors), errors
    check_difference(expect)
    assert squid_parse(SUITE / name) == expect.squid57


def test_every_test_suite_file_is_judged():
    assert sorted(p.name for p in SUITE.glob("*.conf")) == sorted(FILES)


def test_the_failures_squid_expects_are_failures_here():
    """Where an .instructions file says Squid must refuse the file, squidpy refuses it."""
    for instructions in SUITE.glob("*.instructions"):
        if "expect-failure" in instructions.read_text():
            name = instructions.name.removesuffix(".instructions")
            assert FILES[name].squidpy is False, name


def test_debian_squid_conf(tmp_path):
    shutil.copytree(DATA / "debian", tmp_path / "squid")
    conf = tmp_path / "squid" / "squid.conf"
    conf.write_text(conf.read_text().replace("/etc/squid/conf.d/", f"{tmp_path}/squid/conf.d/"))
    config = loader.load(str(conf))
    assert config.logfile_rotate == 0                           # from conf.d/debian.conf
    rules = [r.text for r in config.http_access.rules]
    assert rules == ["http_access deny !Safe_ports", "http_access deny CONNECT !SSL_ports",
                     "http_access allow localhost manager", "http_access deny manager",
                     "http_access allow localhost", "http_access deny all"]
    assert [p.port for p in config.http_port] == [3128]
    assert [str(w).split("WARNING: ")[1] for w in config.warnings] == [
        "coredump_dir is ignored: squidpy writes no core files"]
    assert squid_parse(conf)


def test_squid_generated_default_squid_conf(tmp_path):
    conf = tmp_path / "squid.conf"
    shutil.copy(DATA / "squid-master-default.conf", conf)
    accepted, said, _ = squidpy_parse(conf)
    assert accepted, said
    # Squid 5.7 refuses it: the file is Squid 6's, whose to_linklocal ACL Squid 5.7 does not predefine
    assert not squid_parse(conf)
    check_difference(Expect(True, False, because="to-linklocal"))
