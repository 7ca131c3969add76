"""Domain lists for ``dstdomain`` (and ``srcdomain``), matched as Squid does.

``.example.com`` matches example.com and every name under it;
``example.com`` matches only itself.  Names compare case-insensitively and a
trailing dot is ignored.  An entry that is an IP address is kept as the
address's canonical text (:mod:`squidpy.ip`), the form URL hosts are parsed
into, so ``127.0.0.9``, ``::ffff:127.0.0.9`` and ``[::1]`` are compared as
addresses.  A lookup costs one set probe per label of the host,
so a 100,000-name blocklist is as fast as a list of ten.
"""

from __future__ import annotations

from squidpy.ip import ip_address


def normalize_host(host: str) -> str:
    return host.lower().rstrip(".")


class DomainSet:
    __slots__ = ("exact", "wild", "_pending")

    _VALID = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._:[]")

    def __init__(self) -> None:
        self.exact: set[str] = set()      # 'example.com': only itself
        self.wild: set[str] = set()       # '.example.com' stored as 'example.com'
        self._pending: list[tuple[str, str | None]] = []

    def add(self, value: str, where: str | None = None) -> None:
        if value == ".":                # Squid takes it; it covers only names ending in a dot
            self.wild.add("")
            return
        value = value.lower().rstrip(".")
        if not value or value == ".":
            raise ValueError("an empty domain name")
        try:
            value = str(ip_address(value))
        except ValueError:
            pass
        name = value[1:] if value.startswith(".") else value
        if not self._VALID.issuperset(name) or ".." in name or name.startswith(("-", ".")):
            raise ValueError(f"'{value}' is not a domain name")
        if value.startswith("."):
            self.wild.add(name)
        else:
            self.exact.add(name)
        self._pending.append((value, where))

    def finish(self) -> list[tuple[str | None, str]]:
        """``(where, warning)`` for names a listed parent already covers (as Squid warns)."""
        warnings = []
        seen: set[str] = set()
        for value, where in self._pending:
            if value in seen:
                warnings.append((where, f"'{value}' is listed more than once"))
                continue
            seen.add(value)
            name = value.lstrip(".")
            parent = self._wild_parent(name)
            if parent is None and not value.startswith(".") and name in self.wild:
                parent = name
            if parent is not None:
                warnings.append((where, f"'{value}' is already matched by '.{parent}'"))
        self._pending = []
        return warnings

    def _wild_parent(self, name: str) -> str | None:
        """The nearest proper parent domain listed with a leading dot."""
        wild = self.wild
        i = name.find(".")
        while i >= 0:
            suffix = name[i + 1:]
            if suffix in wild:
                return suffix
            i = name.find(".", i + 1)
        return None

    def __contains__(self, host: str) -> bool:
        if host in self.exact or host in self.wild:
            return True
        wild = self.wild
        if not wild:
            return False
        i = host.find(".")
        while i >= 0:
            if host[i + 1:] in wild:
                return True
            i = host.find(".", i + 1)
        return False

    def __len__(self) -> int:
        return len(self.exact) + len(self.wild)
