"""Every Squid 5.7 directive, ACL type and http_port option has one status in squidpy,
and docs/squid-compat.md says which (generated from the registries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from squidpy.acl.types import ACL_TYPES, NOT_IMPLEMENTED, RENAMED
from squidpy.config import compat, loader
from squidpy.config.registry import ALIASES, DIRECTIVES, IGNORED, IMPLEMENTED, OBSOLETE, REFUSED
from squidpy.config.values import HTTP_PORT_OPTIONS, HTTP_PORT_OTHERS, TLS_PORT_OPTIONS, http_port_option

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "squid57"
PATH = "/etc/squid/squid.conf"


def squid_lines(name: str) -> list[str]:
    return [line.strip() for line in (DATA / name).read_text().splitlines() if line and not line.startswith("#")]


def load(text: str):
    return loader.load(PATH, text=text)


def problems(text: str) -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        load(text)
    return [str(x) for x in e.value.errors]


def test_every_squid_directive_has_exactly_one_status():
    squid_names, squid_aliases = set(), {}
    for line in squid_lines("directives.txt"):
        name, kind, *aliases = line.split()
        squid_names.add(name)
        for alias in aliases:
            if kind == "obsolete":
                squid_names.add(alias)        # Squid says the same of every name of an obsolete entry
            else:
                squid_aliases[alias] = name
    ours = {name for name, d in DIRECTIVES.items() if d.squid}
    assert ours == squid_names
    assert ALIASES == squid_aliases
    assert {d.status for d in DIRECTIVES.values()} == {IMPLEMENTED, IGNORED, REFUSED, OBSOLETE}
    obsolete = {line.split()[0] for line in squid_lines("directives.txt") if line.split()[1] == "obsolete"}
    assert all(DIRECTIVES[n].status == OBSOLETE for n in obsolete)


def test_every_squid_acl_type_has_a_status():
    for name in squid_lines("acl-types.txt"):
        assert name in ACL_TYPES or name in NOT_IMPLEMENTED or name in RENAMED, name
    assert not set(ACL_TYPES) & set(NOT_IMPLEMENTED)


def test_every_http_port_option_has_a_status():
    for option in squid_lines("http-port-options.txt"):
        key = http_port_option(option.rstrip("="))
        if key == "tls-":
            assert any(k.startswith("tls-") for k in (*TLS_PORT_OPTIONS, *HTTP_PORT_OTHERS))
        else:
            assert key in HTTP_PORT_OPTIONS or key in TLS_PORT_OPTIONS or key in HTTP_PORT_OTHERS, option
    assert not set(TLS_PORT_OPTIONS) & set(HTTP_PORT_OTHERS)


def test_compat_page_is_generated_from_the_registries():
    committed = (ROOT / "docs" / "squid-compat.md").read_text()
    assert committed == compat.render(), "regenerate: python -m squidpy.config.compat > docs/squid-compat.md"


def test_ignored_directives_warn_in_one_line():
    config = load("coredump_dir /var/spool/squid\ncache_swap_low 90\npinger_enable off\nmemory_pools off\n")
    assert [str(w) for w in config.warnings] == [
        f"{PATH}:1: WARNING: coredump_dir is ignored: squidpy writes no core files",
        f"{PATH}:2: WARNING: cache_swap_low is ignored: a tuning knob of Squid's ufs/rock stores; "
        "squidpy's cache_dir evicts by its size in MB",
        f"{PATH}:3: WARNING: pinger_enable is ignored: squidpy has no ICMP pinger; it only served peer selection",
        f"{PATH}:4: WARNING: memory_pools is ignored: a Squid memory or process tuning knob; "
        "squidpy's memory is Python's",
    ]


@pytest.mark.parametrize("line", ["auth_schemes basic all", "sslcrtvalidator_program /bin/true",
                                  "neighbor_type_domain p sibling .au", "response_delay_pool slow", "htcp_port 4827",
                                  "forward_timeout 1 minute"])
def test_refused_directives_say_so(line):
    name = line.split()[0]
    assert problems(line + "\n") == [
        f"{PATH}:1: Squid directive {name} is not implemented by squidpy yet (see docs/squid-compat.md)"]


def test_a_refused_directive_asking_for_what_squidpy_does_is_accepted():
    config = load("htcp_port 0\nhosts_file /etc/hosts\nicap_enable off\n")
    assert "htcp_port 0: accepted, squidpy behaves this way without it" in str(config.warnings[0])


def test_typos_get_a_suggestion():
    assert problems("http_acess allow all\n") == [f"{PATH}:1: unknown directive 'http_acess' "
                                                  "(did you mean 'http_access'?)"]
    assert "did you mean 'name'" in problems("http_port 3128 nam=x\n")[0]


def test_http_port_options():
    config = load("http_port 3128 name=office tcpkeepalive=60,30,3 worker-queues\n")
    assert config.http_port[0].name == "office"
    assert [str(w) for w in config.warnings] == [
        f"{PATH}:1: WARNING: http_port option tcpkeepalive=60,30,3 is ignored: "
        "squidpy does not set TCP keepalive probes on client connections",
        f"{PATH}:1: WARNING: http_port option worker-queues is ignored: squidpy's workers share a port with "
        "SO_REUSEPORT"]
    assert "Squid http_port option accel is not implemented by squidpy yet" in problems(
        "http_port 3129 accel\n")[0]


def test_documented_differences_are_on_the_page():
    page = (ROOT / "docs" / "squid-compat.md").read_text()
    for key in compat.INTENDED:
        assert f"**{key}**" in page
