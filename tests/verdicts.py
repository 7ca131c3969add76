"""Verdicts of a proxy, of `squidpy check`, on requests from loopback clients.

Shared by the differential tests against Squid 5.7 and the property tests:
cases (a piece of squid.conf and requests) are combined into one
configuration in which every case only sees requests carrying its `X-Case`
header, and nothing is ever forwarded: allowing rules become denials answered
by a deny_info redirect to http://allow.invalid/, so a 302 (or 307) is "allow"
and a 403 is "deny".
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from click.testing import CliRunner

from squidpy.cli import main

HOSTS = {   # name -> address, for Squid's hosts_file and squidpy's DNS server
    "www.example.test": "192.0.2.10", "www.facebook.test": "192.0.2.11", "www.facebook.test.": "192.0.2.11",
    "www.youtube.test": "192.0.2.12", "www.twitter.test": "192.0.2.13", "face": "192.0.2.14",
    "www.dst-out.test": "198.51.100.10", "a.domains.test": "192.0.2.15", "z.test": "192.0.2.16",
    "mgr.example.test": "192.0.2.17",
}
NAMES = {   # address -> name, for reverse lookups (127.0.0.1 is localhost in /etc/hosts, which squidpy reads)
    "127.0.0.1": "localhost", "127.0.0.2": "client2.lan.test", "127.0.0.3": "client3.guest.test",
    "192.0.2.20": "literal.example.test",
}


@dataclass
class Req:
    url: str
    expect: str                               # "allow" or "deny"
    client: str = "127.0.0.1"
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    extra_connections: int = 0                # idle connections the client holds open meanwhile
    origin_form: bool = False                 # sent as "GET /path" with Host, as to a web server


@dataclass
class Case:
    name: str
    acls: str                                 # configuration lines, ACL names local to the case
    rules: list[str]                          # http_access lines without "http_access"
    requests: list[Req]
    files: dict[str, str] = field(default_factory=dict)     # written to {dir}/NAME
    differs: str = ""                         # an intended difference (docs/squid-compat.md)


_ACL_LINE = re.compile(r"^acl\s+(\S+)", re.M)


def _rename(text: str, names: set[str], prefix: str) -> str:
    """Give the case's ACL names a prefix, keeping their spelling (names compare without case)."""
    if not names:
        return text
    pattern = re.compile(r"(?<![^\s!])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                         + r")(?=\s|$)", re.I | re.M)
    return pattern.sub(lambda m: prefix + m.group(1), text)


def case_names(case: Case) -> set[str]:
    return {n.lower() for n in _ACL_LINE.findall(case.acls) if n.lower() != "manager"}


def expand(text: str, directory, port: int) -> str:
    return text.replace("{dir}", str(directory)).replace("{port}", str(port))


def standalone(case: Case, directory, port: int) -> str:
    """The case as an admin would write it, for `squidpy check`."""
    rules = "".join(f"http_access {r}\n" for r in case.rules)
    return f"http_port 127.0.0.1:{port} name=office\n" + expand(case.acls, directory, port) + rules


def combined(cases: list[Case], directory, port: int) -> str:
    out = ["acl allowmark src all", "acl denymark src all", "deny_info http://allow.invalid/ allowmark",
           "dns_timeout 2 seconds", "maximum_object_size 102400 KB (100MB)", "hierarchy_stoplist cgi-bin ?",
           "logformat squid %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt", ""]
    for number, case in enumerate(cases, 1):
        prefix = f"c{number}_"
        names = case_names(case)
        out.append(f"# {case.name}")
        out.append(f"acl {prefix}_case req_header X-Case ^{number}$")
        out.append(_rename(expand(case.acls, directory, port), {n for n in names}, prefix).rstrip("\n"))
        last = "allow"
        for rule in case.rules:
            action, _, acls = rule.partition(" ")
            acls = _rename(acls, names, prefix)
            out.append(f"http_access deny {prefix}_case {acls} {'allowmark' if action == 'allow' else 'denymark'}")
            last = action
        out.append(f"http_access deny {prefix}_case {'denymark' if last == 'allow' else 'allowmark'}")
    out.append("http_access deny all")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------ asking the proxies

def send(port: int, case_number: int, req: Req) -> str:
    """The proxy's verdict on one request: allow (the marker redirect), deny (403), or what it said."""
    idle = []
    try:
        for _ in range(req.extra_connections):
            s = socket.socket()
            s.bind((req.client, 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            idle.append(s)
        with socket.socket() as s:
            s.bind((req.client, 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            url = req.url.replace("{port}", str(port))
            host = url if req.method == "CONNECT" else url.split("/")[2]
            target = "/" + url.split("/", 3)[3] if req.origin_form else url
            lines = [f"{req.method} {target} HTTP/1.1", f"Host: {host}", f"X-Case: {case_number}",
                     "Connection: close", *(f"{k}: {v}" for k, v in req.headers.items())]
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            reply = b""
            while b"\r\n\r\n" not in reply and len(reply) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
    finally:
        for s in idle:
            s.close()
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = head.split(" ", 2)[1] if " " in head else "no answer"
    if status in ("302", "307") and "allow.invalid" in head:
        return "allow"
    return "deny" if status == "403" else f"status {status}"


def check_verdict(config_file, port: int, req: Req) -> str:
    url = req.url.replace("{port}", str(port))
    args = ["check", "-f", str(config_file), url, "--client", req.client, "--method", req.method,
            "--local-ip", "127.0.0.1", "--local-port", str(port), "--port-name", "office",
            "--connections", str(req.extra_connections + 1)]
    for name, value in req.headers.items():
        args += ["--header", f"{name}: {value}"]
    host = url.split(":")[0] if req.method == "CONNECT" else url.split("/")[2].split(":")[0]
    address = HOSTS.get(host.lower(), host)
    args += ["--dst", address, "--dst-name", NAMES.get(address, ""), "--client-name", NAMES.get(req.client, "")]
    result = CliRunner().invoke(main, args)
    if result.exit_code not in (0, 1):
        return f"error {result.output}"
    return "allow" if result.exit_code == 0 else "deny"
