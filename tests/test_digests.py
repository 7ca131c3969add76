"""squidpy.digests: CPython's own hashes, the same digests as hashlib's (OpenSSL's)."""

from __future__ import annotations

import hashlib
import hmac

from squidpy import digests


def test_the_builtin_hashes_give_hashlibs_digests():
    for data in (b"", b"abc", bytes(range(256)) * 50):
        assert digests.md5(data).hexdigest() == hashlib.md5(data).hexdigest()
        assert digests.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
        assert digests.blake2b(data, key=b"k", digest_size=32).digest() == \
            hashlib.blake2b(data, key=b"k", digest_size=32).digest()
    # and they are not OpenSSL's (the point of the module): CPython's modules
    assert digests.sha256.__module__ in ("_sha256", "_sha2") and digests.md5.__module__ == "_md5"


def test_compare_digest_and_token_bytes():
    assert digests.compare_digest(b"secret", b"secret") and not digests.compare_digest(b"secret", b"secreT")
    assert digests.compare_digest("a", "a") == hmac.compare_digest("a", "a")
    tokens = {digests.token_bytes(16) for _ in range(8)}
    assert len(tokens) == 8 and all(len(t) == 16 for t in tokens)
