"""A tiny real DNS server on loopback UDP for tests.

Answers A and AAAA queries from a name -> [addresses] table, PTR queries
from an address -> name table, NXDOMAIN for anything else, and records every query name so a test can assert that a
lookup did (or did not) happen.  ``hold(name)`` keeps the answers for a name
until ``release(name)``: a lookup that takes as long as the test wants.  Point squidpy at it with
``dns_nameservers 127.0.0.1:PORT``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading


class DnsServer:
    def __init__(self, records: dict[str, list[str]] | None = None, ttl: int = 60,
                 names: dict[str, str] | None = None):
        self.records = {k.lower(): v for k, v in (records or {}).items()}
        # address -> name, answered to PTR queries
        self.pointers = {ipaddress.ip_address(a).reverse_pointer: n for a, n in (names or {}).items()}
        self.ttl = ttl
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, list] = {}     # name -> queries waiting for release()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "DnsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def names(self) -> list[str]:
        return [name for name, _ in self.queries]

    def hold(self, name: str) -> None:
        """Answer no query for ``name`` until :meth:`release`."""
        with self._lock:
            self._held.setdefault(name.lower(), [])

    def held(self, name: str) -> int:
        """Queries for ``name`` waiting for :meth:`release`."""
        with self._lock:
            return len(self._held.get(name.lower(), ()))

    def release(self, name: str) -> None:
        """Answer the queries for ``name`` held so far, and the next ones at once."""
        with self._lock:
            held = self._held.pop(name.lower(), [])
        for data, addr in held:
            self.sock.sendto(self._answer(data), addr)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                with self._lock:
                    held = self._held.get(self._name(data))
                    if held is not None:
                        held.append((data, addr))
                        continue
                self.sock.sendto(self._answer(data), addr)
            except (ValueError, IndexError, struct.error, OSError):
                continue

    @staticmethod
    def _name(query: bytes) -> str:
        i, labels = 12, []
        while query[i]:
            labels.append(query[i + 1:i + 1 + query[i]].decode("ascii"))
            i += 1 + query[i]
        return ".".join(labels).lower()

    def _answer(self, query: bytes) -> bytes:
        qid, _flags, qdcount = struct.unpack("!HHH", query[:6])
        i, labels = 12, []
        while query[i]:
            n = query[i]
            labels.append(query[i + 1:i + 1 + n].decode("ascii"))
            i += 1 + n
        qtype, _qclass = struct.unpack("!HH", query[i + 1:i + 5])
        question = query[12:i + 5]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        if qtype == 12:     # PTR
            target = self.pointers.get(name)
            if target is None:
                return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
            rdata = b"".join(bytes([len(l)]) + l.encode() for l in target.split(".")) + b"\x00"
            answer = struct.pack("!HHHIH", 0xC00C, 12, 1, self.ttl, len(rdata)) + rdata
            return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer
        addresses = self.records.get(name)
        if addresses is None:
            return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question   # NXDOMAIN
        family = 4 if qtype == 1 else 6 if qtype == 28 else 0
        answers = []
        for a in addresses:
            ip = ipaddress.ip_address(a)
            if ip.version != family:
                continue
            answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl, len(ip.packed)) + ip.packed)
        return struct.pack("!HHHHHH", qid, 0x8180, 1, len(answers), 0, 0) + question + b"".join(answers)
