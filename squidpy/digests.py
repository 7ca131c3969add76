"""The hashes squidpy uses, from CPython's own implementations.

Importing hashlib (or hmac, or secrets, which import it) loads OpenSSL's libcrypto and initialises
it: 3.7 MB of a started proxy's 47, for a proxy that may speak no TLS at all.
CPython always carries its own MD5, SHA-256 and BLAKE2 (the modules hashlib falls
back to), which give the same digests; short inputs, all squidpy hashes on the
request path, cost about the same.  Bulk data is checked with CRC-32 instead
(zlib, about three times OpenSSL's SHA-256 speed; see squidpy.cache.store).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__all__ = ["blake2b", "compare_digest", "md5", "sha256", "token_bytes"]


def _builtin(name: str, *modules: str) -> Any:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:
            continue
    import hashlib      # a Python built without them: hashlib's, whatever it rests on

    return getattr(hashlib, name)


if TYPE_CHECKING:       # the same functions as hashlib's and hmac's
    from hashlib import blake2b, md5, sha256
    from hmac import compare_digest
else:
    md5 = _builtin("md5", "_md5")
    sha256 = _builtin("sha256", "_sha2", "_sha256")      # _sha2 from Python 3.12
    blake2b = _builtin("blake2b", "_blake2")
    # hmac.compare_digest without hmac: its time does not tell where two secrets differ
    compare_digest = _builtin("_compare_digest", "_operator")


def token_bytes(size: int) -> bytes:
    """secrets.token_bytes without secrets: the system's random source."""
    return os.urandom(size)
