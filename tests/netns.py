"""Three network namespaces joined by veth pairs, for interception tests on real kernel paths.

::

    client ns                 gateway ns                          origin ns
    c0 192.0.2.2/24  <->  g0 192.0.2.1/24   g1 198.51.100.1/24  <->  o0 198.51.100.2/24
       2001:db8:1::2/64       2001:db8:1::1/64 2001:db8:2::1/64        2001:db8:2::2/64
    default via the gateway                                     (and .3, ::3: a second host)
                                                                 default via the gateway

The gateway forwards between its two links and runs the proxy; its nftables rules send the
client's port 80 and 443 to the proxy (``redirect`` for ``intercept`` ports, ``tproxy`` with
policy routing for ``tproxy`` ports).  Every address is one the test assigns inside the
namespaces (documentation prefixes, RFC 5737 and RFC 3849); the veth pairs are created inside
the namespaces, never in the host's, and no namespace has a route anywhere else, so no packet
leaves them.  :meth:`Topology.create` checks that the host's own interfaces did not change.

Needs root (CAP_SYS_ADMIN for ``ip netns``, CAP_NET_ADMIN for links and nftables), ``ip``
from iproute2 and ``nft`` from nftables; :func:`unavailable` says why not, for ``pytest.skip``.

Sockets are made inside a namespace from this process (``Netns.socket``, ``Netns.entered``:
setns(2) on the calling thread, then back), so the test's own servers (tests/origin.py,
tests/dnsserver.py) listen inside the namespaces while running in the test process.
Commands run inside one with ``ip netns exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import socket
import subprocess
import uuid

CLONE_NEWNET = 0x40000000
PREFIX = "sqpy"          # every namespace this module makes is named sqpy<pid>x<n><role>

CLIENT4, GATEWAY_CLIENT4, GATEWAY_ORIGIN4, ORIGIN4, OTHER4 = (
    "192.0.2.2", "192.0.2.1", "198.51.100.1", "198.51.100.2", "198.51.100.3")
CLIENT6, GATEWAY_CLIENT6, GATEWAY_ORIGIN6, ORIGIN6, OTHER6 = (
    "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::1", "2001:db8:2::2", "2001:db8:2::3")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def unavailable() -> str | None:
    """Why these tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the suite as root)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt-get install {package}; .ci/run does)"
    probe = f"{PREFIX}{os.getpid()}probe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        return f"the kernel refuses a network namespace: {made.stderr.strip()}"
    try:
        nft = subprocess.run(["ip", "netns", "exec", probe, "nft", "-f", "-"], input=(
            "table inet probe {\n"
            "chain pre { type nat hook prerouting priority dstnat; tcp dport 80 redirect to :1; }\n"
            "chain mangle { type filter hook prerouting priority mangle; "
            "meta l4proto tcp socket transparent 1 meta mark set 1 accept; "
            "tcp dport 81 tproxy to :1 meta mark set 1; }\n}\n"),
            capture_output=True, text=True, timeout=10)
        if nft.returncode != 0:
            return f"nftables redirect/tproxy is not available in this kernel: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def _run(*args: str, input: str | None = None) -> str:
    done = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class Netns:
    """One named network namespace."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<Netns {self.name}>"

    def ip(self, *args: str) -> str:
        return _run("ip", "-n", self.name, *args)

    def run(self, *args: str, input: str | None = None) -> str:
        """Run a command inside the namespace; its output (raises on failure)."""
        return _run("ip", "netns", "exec", self.name, *args, input=input)

    def exec_prefix(self) -> list[str]:
        """The words that run a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def sysctl(self, *settings: str) -> None:
        self.run("sysctl", "-qw", *settings)

    @contextlib.contextmanager
    def entered(self):
        """This thread inside the namespace for the block (sockets made there stay there)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            try:
                yield self
            finally:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the test's own namespace")
        finally:
            os.close(target)
            os.close(home)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        with self.entered():
            return socket.socket(family, kind)

    def connect(self, address: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection made from inside the namespace."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        s = self.socket(family)
        s.settimeout(timeout)
        s.connect((address, port))
        return s


def _host_links() -> str:
    return _run("ip", "-o", "link", "show").strip()


class Topology:
    """The client, gateway and origin namespaces (see the module docstring)."""

    def __init__(self, tag: str, policy_routing: bool = True):
        self.tag = tag
        self.policy_routing = policy_routing
        self.client = Netns(f"{tag}c")
        self.gateway = Netns(f"{tag}g")
        self.origin = Netns(f"{tag}o")
        self.rules: str | None = None

    @property
    def namespaces(self) -> tuple[Netns, Netns, Netns]:
        return (self.client, self.gateway, self.origin)

    @classmethod
    def create(cls, policy_routing: bool = True) -> "Topology":
        """``policy_routing``: the gateway's fwmark 1 -> local table 100 (what TPROXY needs);
        without it, a test sets it up itself (docs/intercept.md's recipes)."""
        remove_stale()
        before = _host_links()
        topo = cls(f"{PREFIX}{os.getpid()}x{uuid.uuid4().hex[:4]}", policy_routing)
        try:
            topo._build()
        except BaseException:
            topo.destroy()
            raise
        if _host_links() != before:
            topo.destroy()
            raise RuntimeError("the host's interfaces changed while the namespaces were built")
        return topo

    def _build(self) -> None:
        c, g, o = self.namespaces
        for ns in self.namespaces:
            _run("ip", "netns", "add", ns.name)
            ns.ip("link", "set", "lo", "up")
        # each pair is made inside the client (or gateway) namespace, its peer moved straight into the next
        c.ip("link", "add", "c0", "type", "veth", "peer", "name", "g0", "netns", g.name)
        g.ip("link", "add", "g1", "type", "veth", "peer", "name", "o0", "netns", o.name)
        for ns, link, addresses in (
                (c, "c0", (f"{CLIENT4}/24", f"{CLIENT6}/64")),
                (g, "g0", (f"{GATEWAY_CLIENT4}/24", f"{GATEWAY_CLIENT6}/64")),
                (g, "g1", (f"{GATEWAY_ORIGIN4}/24", f"{GATEWAY_ORIGIN6}/64")),
                (o, "o0", (f"{ORIGIN4}/24", f"{OTHER4}/24", f"{ORIGIN6}/64", f"{OTHER6}/64"))):
            for address in addresses:
                ns.ip("addr", "add", address, "dev", link, *(("nodad",) if ":" in address else ()))
            ns.ip("link", "set", link, "up")
        c.ip("route", "add", "default", "via", GATEWAY_CLIENT4)
        c.ip("-6", "route", "add", "default", "via", GATEWAY_CLIENT6)
        o.ip("route", "add", "default", "via", GATEWAY_ORIGIN4)
        o.ip("-6", "route", "add", "default", "via", GATEWAY_ORIGIN6)
        g.sysctl("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        if not self.policy_routing:
            return
        # TPROXY: packets marked 1 (redirected ones, and the origin's answers to spoofed
        # connections) are delivered to this host whatever their destination
        g.ip("rule", "add", "fwmark", "1", "lookup", "100")
        g.ip("route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
        g.ip("-6", "rule", "add", "fwmark", "1", "lookup", "100")
        g.ip("-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")

    def intercept(self, http_port: int | None = None, https_port: int | None = None, mode: str = "intercept",
                  extra: str = "") -> None:
        """Send the client's port 80 (and 443) to the proxy's ports on the gateway:
        ``mode`` "intercept" (nat redirect) or "tproxy" (mangle tproxy + mark).  Replaces
        any rules set before.  ``extra``: more nftables text inside the table."""
        lines = []
        for dport, to in ((80, http_port), (443, https_port)):
            if to is None:
                continue
            if mode == "intercept":
                lines.append(f'iifname "g0" tcp dport {dport} redirect to :{to}')
            else:
                lines.append(f'iifname "g0" meta l4proto tcp th dport {dport} tproxy to :{to} meta mark set 1 accept')
        if mode == "intercept":
            chain = ("chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
                     + "\n".join(lines) + "\n}")
        else:
            chain = ("chain prerouting { type filter hook prerouting priority mangle; policy accept;\n"
                     # the origin's answers to connections the proxy made with the client's address
                     "meta l4proto tcp socket transparent 1 meta mark set 1 accept\n"
                     + "\n".join(lines) + "\n}")
        self.rules = f"table inet squidpy_test {{\n{chain}\n{extra}\n}}\n"
        self.gateway.run("nft", "-f", "-", input="flush ruleset\n" + self.rules)

    def destroy(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=20)


def remove_stale() -> None:
    """Namespaces left by a test process that no longer exists (killed mid-run)."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        digits = name[len(PREFIX):].split("x", 1)[0].split("probe", 1)[0]
        if digits.isdigit() and not os.path.exists(f"/proc/{digits}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
