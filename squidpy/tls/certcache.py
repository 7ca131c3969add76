"""Minted certificates kept, so a second handshake for the same site mints nothing.

Two tiers, as Squid has them: memory, bounded by the port's
``dynamic_cert_mem_cache_size`` (least recently used go first; 0 turns it
off), and a directory (``sslcrtd_program internal -s DIR -M SIZE``, Squid's
``security_file_certgen`` arguments) that outlives restarts and is shared by
workers.  On disk each certificate is one file holding the certificate, the
chain sent with it and its key: mode 0600 in a 0700 directory, written to a
temporary name and renamed, so a reader never sees half a file.  The oldest
files go when the directory grows past its size.

:class:`Minter` puts it together: the cache, else a new certificate from
:mod:`squidpy.tls.mint` (or from Squid's helper, :mod:`squidpy.tls.certgen`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from squidpy.tls.ca import SigningCa, new_key, write_private
from squidpy.tls.mint import SIGN_UNTRUSTED, CertProperties, mint, untrusted_ca

LEAF_KEY_FILE = "leaf.key"
CERTS_DIR = "certs"


@dataclass
class Minted:
    """A certificate for a bumped connection: what the TLS server side uses."""

    cert: x509.Certificate
    key: object
    chain: tuple[x509.Certificate, ...] = ()

    def pem(self) -> bytes:
        out = [c.public_bytes(serialization.Encoding.PEM) for c in (self.cert, *self.chain)]
        out.append(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        return b"".join(out)

    @classmethod
    def from_pem(cls, data: bytes) -> "Minted":
        certs = x509.load_pem_x509_certificates(data)
        key = serialization.load_pem_private_key(data, password=None)
        return cls(certs[0], key, tuple(certs[1:]))


class CertCache:
    """Memory then disk; both optional.  Thread-safe (workers' reader threads may ask)."""

    def __init__(self, memory_limit: int, directory: str | None = None, disk_limit: int = 4 << 20):
        self.memory_limit = memory_limit
        self.directory = Path(directory) if directory else None
        self.disk_limit = disk_limit
        self._memory: OrderedDict[str, tuple[Minted, int]] = OrderedDict()
        self._memory_size = 0
        self._lock = threading.Lock()
        self.memory_hits = self.disk_hits = self.misses = 0
        if self.directory is not None:
            prepare_directory(self.directory)

    def get(self, key: str) -> Minted | None:
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                self.memory_hits += 1
                return found[0]
        minted = self._read_disk(key)
        with self._lock:
            if minted is None:
                self.misses += 1
                return None
            self.disk_hits += 1
            self._remember(key, minted, len(minted.pem()))
        return minted

    def put(self, key: str, minted: Minted) -> None:
        data = minted.pem()
        with self._lock:
            self._remember(key, minted, len(data))
        if self.directory is not None:
            self._write_disk(key, data)

    def _remember(self, key: str, minted: Minted, size: int) -> None:
        if self.memory_limit <= 0 or size > self.memory_limit:
            return
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_size -= old[1]
        self._memory[key] = (minted, size)
        self._memory_size += size
        while self._memory_size > self.memory_limit:
            _, (_, dropped) = self._memory.popitem(last=False)
            self._memory_size -= dropped

    @property
    def memory_entries(self) -> int:
        return len(self._memory)

    def _path(self, key: str) -> Path:
        return self.directory / CERTS_DIR / f"{key}.pem"

    def _read_disk(self, key: str) -> Minted | None:
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            minted = Minted.from_pem(data)
        except (ValueError, TypeError):
            _unlink(path)                # damaged: made again, written again
            return None
        os.utime(path)                   # recently used: evicted last
        return minted

    def _write_disk(self, key: str, data: bytes) -> None:
        try:
            write_private(self._path(key), data)
        except OSError:
            return                       # a full or read-only disk costs a mint next time, nothing more
        self._trim_disk()

    def _trim_disk(self) -> None:
        folder = self.directory / CERTS_DIR
        try:
            entries = [(e.stat().st_mtime, e.stat().st_size, e.path) for e in os.scandir(folder)
                       if e.name.endswith(".pem")]
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.disk_limit:
                break
            _unlink(Path(path))
            total -= size


def prepare_directory(directory: Path) -> None:
    """The cache directory and its certs/ folder, 0700 (they hold private keys)."""
    for d in (directory, directory / CERTS_DIR):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def leaf_key_for(ca: SigningCa, directory: str | None):
    """The one key minted certificates carry: kept (0600) in the cache directory so
    restarts and workers share it; of the CA key's type (RSA or EC)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    key_type = "ec" if isinstance(ca.key, ec.EllipticCurvePrivateKey) else "rsa"
    if directory is None:
        return new_key(key_type)
    path = Path(directory) / LEAF_KEY_FILE
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        pass
    prepare_directory(Path(directory))
    key = new_key(key_type)
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    # another worker may have written its own key at the same time: everyone uses the file's
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


class Minter:
    """Certificates for bumped connections: from the cache, else made now (by squidpy,
    or by Squid's certificate helper when sslcrtd_program names one)."""

    def __init__(self, ca: SigningCa, cache: CertCache, leaf_key=None, helper=None):
        self.ca = ca
        self.cache = cache
        self.leaf_key = leaf_key if leaf_key is not None else leaf_key_for(
            ca, str(cache.directory) if cache.directory else None)
        self.helper = helper
        self._untrusted: SigningCa | None = None
        self.minted = 0                  # certificates made (not found in the cache)

    @property
    def untrusted(self) -> SigningCa:
        if self._untrusted is None:
            self._untrusted = untrusted_ca(self.ca)
        return self._untrusted

    def signer_for(self, props: CertProperties) -> SigningCa:
        return self.untrusted if props.sign == SIGN_UNTRUSTED else self.ca

    def certificate(self, props: CertProperties) -> Minted:
        key = props.cache_key(self.ca.fingerprint)
        found = self.cache.get(key)
        if found is not None:
            return found
        signer = self.signer_for(props)
        if self.helper is not None:
            minted = self.helper.mint(props, signer)
        else:
            cert = mint(props, signer, self.leaf_key)
            chain = tuple(signer.chain) if signer is self.ca else ()
            minted = Minted(cert, self.leaf_key, chain)
        self.minted += 1
        self.cache.put(key, minted)
        return minted
