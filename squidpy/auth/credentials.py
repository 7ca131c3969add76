"""Proxy-Authorization read as Squid reads it (src/auth/*/Config.cc decode).

Every function here is pure and total: hostile input gives :class:`Malformed`
(the caller answers 407 again), never an exception of another kind.  The
credentials objects never show a password or token in their ``repr``, so no
log line or traceback can carry one.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field

MAX_HEADER = 64 * 1024      # a longer Proxy-Authorization is refused before decoding


# What a2b_base64's strict_mode (Python 3.11; squidpy supports 3.10) accepts: whole quanta,
# a last partial one padded exactly, or padding of any length after whole quanta
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|(?:[A-Za-z0-9+/]{4})+=+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Malformed(ValueError):
    """Credentials that cannot be read; the message never contains them."""


@dataclass(frozen=True)
class Basic:
    user: str
    password: str = field(repr=False)

    scheme = "basic"


@dataclass(frozen=True)
class Digest:
    user: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    algorithm: str | None = None
    opaque: str | None = None

    scheme = "digest"


@dataclass(frozen=True)
class Token:
    """A Negotiate or NTLM blob, passed to the helper as it came."""
    scheme: str                  # "negotiate" or "ntlm"
    token: str = field(repr=False)


def split_scheme(value: str) -> tuple[str, str]:
    """``Scheme rest`` -> (lower-case scheme, rest with surrounding blanks removed)."""
    value = value.strip(" \t")
    scheme, _, rest = value.partition(" ")
    return scheme.lower(), rest.strip(" \t")


def parse(value: str | bytes, casesensitive: bool = False, utf8: bool = False,
          accept_language: str | None = None) -> Basic | Digest | Token:
    """One Proxy-Authorization value; ``casesensitive``/``utf8`` are the Basic scheme's options."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if len(value) > MAX_HEADER:
        raise Malformed("Proxy-Authorization is too long")
    scheme, rest = split_scheme(value)
    if scheme == "basic":
        return parse_basic(rest, casesensitive, utf8, accept_language)
    if scheme == "digest":
        return parse_digest(rest)
    if scheme in ("negotiate", "ntlm"):
        if not rest or any(c.isspace() for c in rest) or not rest.isascii():
            raise Malformed(f"{scheme} credentials without a token")
        return Token(scheme, rest)
    raise Malformed("unsupported authentication scheme")


def parse_basic(text: str, casesensitive: bool = False, utf8: bool = False,
                accept_language: str | None = None) -> Basic:
    text = text.split("\n", 1)[0].strip()
    try:
        if text and not _BASE64.fullmatch(text):
            raise binascii.Error("not strict Base64")
        clear = binascii.a2b_base64(text.encode("ascii")) if text else b""
    except (binascii.Error, UnicodeEncodeError):
        raise Malformed("invalid Base64 in Basic credentials") from None
    if not clear:
        raise Malformed("empty Basic credentials")
    if utf8:
        clear = to_utf8(clear, accept_language)
    if b"\r" in clear or b"\n" in clear or b"\0" in clear:
        raise Malformed("bad characters in Basic credentials")
    user, sep, password = clear.partition(b":")
    if not sep:
        raise Malformed("no password was present in the Proxy-Authorization header")
    if not password:
        raise Malformed("an empty password: users must have a password")
    if not user:
        raise Malformed("an empty user name")
    name = user.decode("latin-1")
    if not casesensitive:
        name = name.translate(_ASCII_LOWER)       # Squid's Tolower: ASCII letters only
    return Basic(name, password.decode("latin-1"))


_CP1251_LANGUAGES = ("ru", "uk", "be", "bg", "sr", "mk")


def to_utf8(data: bytes, accept_language: str | None) -> bytes:
    """auth_param utf8 on: credentials that are not UTF-8 are read as CP1251 when the
    browser prefers a Cyrillic language, else as Latin-1, and re-encoded as UTF-8."""
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    languages = [part.split(";")[0].strip().lower() for part in (accept_language or "").split(",")]
    cyrillic = any(lang.split("-")[0] in _CP1251_LANGUAGES for lang in languages if lang)
    return data.decode("cp1251" if cyrillic else "latin-1", "replace").encode("utf-8")


def parse_params(text: str) -> dict[str, str]:
    """``key=value, key="quoted value"`` (RFC 7235 auth-params), keys lower-cased."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "= \t,":
            i += 1
        key = text[start:i].lower()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=" or not key:
            raise Malformed("malformed Digest parameters")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            value = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            if i >= n:
                raise Malformed("unterminated quoted string in Digest parameters")
            i += 1
            params[key] = "".join(value)
        else:
            start = i
            while i < n and text[i] not in " \t,":
                i += 1
            params[key] = text[start:i]
        if key in params and len(params) > 32:
            raise Malformed("too many Digest parameters")
    return params


def parse_digest(text: str) -> Digest:
    params = parse_params(text)
    for required in ("username", "realm", "nonce", "uri", "response"):
        if not params.get(required):
            raise Malformed(f"Digest credentials without {required}")
    if any(c in params["username"] for c in "\r\n\0\""):
        raise Malformed("bad characters in the Digest user name")
    qop = params.get("qop")
    if qop is not None and qop != "auth":
        raise Malformed("unsupported Digest qop")
    if qop and not (params.get("nc") and params.get("cnonce")):
        raise Malformed("Digest qop without nc or cnonce")
    algorithm = params.get("algorithm")
    if algorithm is not None and algorithm.upper() not in ("MD5", "MD5-SESS"):
        raise Malformed("unsupported Digest algorithm")
    if len(params["response"]) != 32:
        raise Malformed("malformed Digest response")
    return Digest(params["username"], params["realm"], params["nonce"], params["uri"], params["response"],
                  qop, params.get("nc"), params.get("cnonce"), algorithm, params.get("opaque"))
