"""Squid's TLS option syntax: ``tls_outgoing_options``, ``cache_peer``'s
``tls-*`` options and the TLS options of ``http_port``/``https_port``, read
into plain data.

The words are Squid's (src/security/PeerOptions.cc, ServerOptions.cc):
``cert=``, ``key=``, ``cipher=``, ``options=`` (OpenSSL option names joined by
``:`` or ``,``, each optionally ``-``/``!`` to remove or ``+`` to add, or a hex
mask), ``min-version=1.N``, ``cafile=`` (repeatable), ``capath=``,
``crlfile=``, ``flags=`` (``DONT_VERIFY_PEER``, ``DONT_VERIFY_DOMAIN`` ...),
``default-ca[=off]``, ``domain=``, ``no-npn``, ``disable``; on ports also
``clientca=``, ``dh=``, ``context=``, ``generate-host-certificates[=on|off]``
and ``dynamic_cert_mem_cache_size=``.  Parsing is pure: files are named, not
opened (:mod:`squidpy.tls.verify` and :mod:`squidpy.tls.ca` load them).  As in
Squid an unknown option word is reported and ignored; an unknown flag, or
words run together, is an error.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from squidpy.config.values import parse_size


@functools.cache
def ssl_options() -> dict[str, int]:
    """options= names Squid knows, with OpenSSL 3's values (0: known to Squid, unsupported
    here); made when first needed, so that a configuration without TLS never loads pyOpenSSL."""
    from OpenSSL import SSL

    return {
        "NETSCAPE_REUSE_CIPHER_CHANGE_BUG": SSL.OP_NETSCAPE_REUSE_CIPHER_CHANGE_BUG,
        "SSLREF2_REUSE_CERT_TYPE_BUG": SSL.OP_SSLREF2_REUSE_CERT_TYPE_BUG,
        "MICROSOFT_BIG_SSLV3_BUFFER": SSL.OP_MICROSOFT_BIG_SSLV3_BUFFER,
        "SSLEAY_080_CLIENT_DH_BUG": SSL.OP_SSLEAY_080_CLIENT_DH_BUG,
        "TLS_D5_BUG": SSL.OP_TLS_D5_BUG,
        "TLS_BLOCK_PADDING_BUG": SSL.OP_TLS_BLOCK_PADDING_BUG,
        "TLS_ROLLBACK_BUG": SSL.OP_TLS_ROLLBACK_BUG,
        "ALL": SSL.OP_ALL,
        "SINGLE_DH_USE": SSL.OP_SINGLE_DH_USE,
        "EPHEMERAL_RSA": SSL.OP_EPHEMERAL_RSA,
        "PKCS1_CHECK_1": SSL.OP_PKCS1_CHECK_1,
        "PKCS1_CHECK_2": SSL.OP_PKCS1_CHECK_2,
        "NETSCAPE_CA_DN_BUG": SSL.OP_NETSCAPE_CA_DN_BUG,
        "NON_EXPORT_FIRST": 0,
        "CIPHER_SERVER_PREFERENCE": SSL.OP_CIPHER_SERVER_PREFERENCE,
        "NETSCAPE_DEMO_CIPHER_CHANGE_BUG": SSL.OP_NETSCAPE_DEMO_CIPHER_CHANGE_BUG,
        "NO_SSLv3": SSL.OP_NO_SSLv3,
        "NO_TLSv1": SSL.OP_NO_TLSv1,
        "NO_TLSv1_1": SSL.OP_NO_TLSv1_1,
        "NO_TLSv1_2": SSL.OP_NO_TLSv1_2,
        "NO_TLSv1_3": SSL.OP_NO_TLSv1_3,
        "No_Compression": SSL.OP_NO_COMPRESSION,
        "NO_TICKET": SSL.OP_NO_TICKET,
        "SINGLE_ECDH_USE": SSL.OP_SINGLE_ECDH_USE,
    }


FLAGS = ("NO_DEFAULT_CA", "DELAYED_AUTH", "DONT_VERIFY_PEER", "CONDITIONAL_AUTH", "DONT_VERIFY_DOMAIN",
         "NO_SESSION_REUSE", "VERIFY_CRL", "VERIFY_CRL_ALL")
_EXCLUSIVE = frozenset({"DONT_VERIFY_PEER", "DELAYED_AUTH", "CONDITIONAL_AUTH"})
_MIN_VERSION = re.compile(r"^1\.([0-3])$")
DEFAULT_CERT_CACHE = 4 * 1024 * 1024


class TlsOptionError(ValueError):
    pass


@dataclass
class TlsOptions:
    """Squid's PeerOptions: TLS settings towards origins (``tls_outgoing_options``),
    and the part of a port's settings both sides share."""

    certs: list[tuple[str, str]] = field(default_factory=list)    # (certificate file, key file)
    options: str = ""                    # options= as written
    min_version: str | None = None       # min-version= as written ("1.2")
    cipher: str | None = None
    cafiles: list[str] = field(default_factory=list)
    capath: str | None = None
    crlfile: str | None = None
    flags: frozenset[str] = frozenset()
    default_ca: bool | None = None       # None: not said (on for origins, off for ports)
    domain: str | None = None
    npn: bool = True
    disabled: bool = False               # "disable": no https:// URLs at all
    version: int | None = None           # the deprecated version=N

    def parse(self, token: str, warn, resolve_path=lambda p: p, unknown=None) -> bool:
        """Apply one option word (``min-version=1.2``); ``warn(message)`` for what
        Squid reports and goes on with, ``unknown(token)`` (when given) instead of
        warn for a word that is no TLS option.  False for such a word.  Raises
        TlsOptionError."""
        key, eq, value = token.partition("=")
        if key == "disable":
            self.__init__()              # Squid clears every setting
            self.disabled = True
            return True
        if key == "cert":
            self.certs.append((resolve_path(value), resolve_path(value)))
        elif key == "key":
            if not self.certs:
                raise TlsOptionError("cert= option must be set before key= is used")
            self.certs[-1] = (self.certs[-1][0], resolve_path(value))
        elif key == "version":
            warn("UPGRADE WARNING: version= is deprecated; use options= and min-version= to limit protocols")
            try:
                self.version = int(value)
            except ValueError:
                raise TlsOptionError(f"version={value} is not a number") from None
        elif key == "min-version":
            if not _MIN_VERSION.match(value):
                warn(f"unknown TLS minimum version '{value}' (1.0, 1.1, 1.2 or 1.3); ignored")
                return True
            self.min_version = value
        elif key == "options":
            self.options = value
            option_mask(value, warn)     # reports unknown names now, at the line that has them
        elif key == "cipher":
            self.cipher = value
        elif key == "cafile":
            self.cafiles.append(resolve_path(value))
        elif key == "capath":
            self.capath = resolve_path(value)
        elif key == "crlfile":
            self.crlfile = resolve_path(value)
        elif key == "flags":
            if self.flags:
                warn(f"overwriting flags={':'.join(sorted(self.flags))} with {value}")
            self.flags = self._parse_flags(value, warn)
        elif token in ("default-ca=off", "no-default-ca"):
            if self.default_ca:
                raise TlsOptionError(f"previous default-ca settings conflict with {token}")
            self.default_ca = False
        elif token in ("default-ca=on", "default-ca"):
            if self.default_ca is False:
                raise TlsOptionError(f"previous default-ca settings conflict with {token}")
            self.default_ca = True
        elif key == "domain":
            self.domain = value
        elif token == "no-npn":
            self.npn = False
        else:
            if unknown is not None:
                unknown(token)
            else:
                warn(f"unknown TLS option '{token}'; ignored")
            return False
        self.disabled = False
        return True

    def _parse_flags(self, text: str, warn) -> frozenset[str]:
        found = set()
        for word in re.split(r"[:,]", text):
            if word not in FLAGS:
                raise TlsOptionError(f"unknown TLS flag '{word}' (known: {', '.join(FLAGS)})")
            if word == "NO_DEFAULT_CA":
                if self.default_ca:
                    raise TlsOptionError("previous default-ca settings conflict with flags=NO_DEFAULT_CA")
                warn("flags=NO_DEFAULT_CA is deprecated; use default-ca=off instead")
                self.default_ca = False
                continue
            found.add(word)
        exclusive = found & _EXCLUSIVE
        if len(exclusive) > 1:
            if "CONDITIONAL_AUTH" in exclusive:
                raise TlsOptionError("CONDITIONAL_AUTH is not compatible with DONT_VERIFY_PEER and DELAYED_AUTH")
            warn("mixing the TLS flags " + " and ".join(sorted(exclusive)) + " is deprecated")
        return frozenset(found)

    def openssl_options(self) -> int:
        """The OpenSSL option mask: options=, then what min-version= (or the old
        version=) removes, and SSLv2 always off (RFC 6176)."""
        from OpenSSL import SSL     # here: a configuration without TLS never loads pyOpenSSL

        mask = option_mask(self.options)
        if self.min_version is not None:
            minor = int(self.min_version[2])
            for n, op in ((1, SSL.OP_NO_TLSv1), (2, SSL.OP_NO_TLSv1_1), (3, SSL.OP_NO_TLSv1_2)):
                if minor >= n:
                    mask |= op
        elif self.version is not None and self.version > 2:
            keep = {3: SSL.OP_NO_SSLv3, 4: SSL.OP_NO_TLSv1, 5: SSL.OP_NO_TLSv1_1, 6: SSL.OP_NO_TLSv1_2}
            everything = SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_TLSv1_2 | SSL.OP_NO_TLSv1_3
            if self.version in keep:
                mask |= everything & ~keep[self.version]
        return mask | SSL.OP_NO_SSLv2

    @property
    def verify_peer(self) -> bool:
        return "DONT_VERIFY_PEER" not in self.flags

    @property
    def verify_domain(self) -> bool:
        return "DONT_VERIFY_DOMAIN" not in self.flags

    def uses_default_ca(self, default: bool) -> bool:
        return default if self.default_ca is None else self.default_ca


def option_mask(text: str, warn=None) -> int:
    """``options=`` as Squid reads it: names or hex masks joined by ``:`` or ``,``,
    each added, or removed when written ``-NAME``/``!NAME``."""
    mask = 0
    pos = 0
    while pos < len(text):
        remove = text[pos] in "-!"
        if text[pos] in "-!+":
            pos += 1
        m = re.compile(r"[A-Za-z0-9_]*").match(text, pos)
        word = m.group(0)
        pos = m.end()
        value = ssl_options().get(word)
        if value is None and re.fullmatch(r"(0[xX])?[0-9A-Fa-f]+", word):
            value = int(word, 16)
        if value:
            mask = mask & ~value if remove else mask | value
        elif warn is not None:
            warn(f"{'unsupported' if word in ssl_options() else 'unknown'} TLS option '{word}'; ignored")
        if pos < len(text):
            if text[pos] not in ":,":
                raise TlsOptionError(f"unknown TLS option '{text[pos:]}'")
            while pos < len(text) and text[pos] in ":,":
                pos += 1
    return mask


@dataclass
class PortTls(TlsOptions):
    """A port's TLS settings (Squid's ServerOptions): its own certificate (or the CA
    that signs minted ones) and what it asks of clients."""

    ssl_bump: bool = False
    clientca: str | None = None
    dh: str | None = None
    context: str | None = None
    generate_host_certificates: bool = True
    dynamic_cert_mem_cache_size: int = DEFAULT_CERT_CACHE
    ca: object = field(default=None, compare=False, repr=False)    # the SigningCa, once loaded
    server_context: object = field(default=None, compare=False, repr=False)   # an https_port's, once made

    def parse_port(self, token: str, warn, resolve_path=lambda p: p) -> bool:
        """Apply one http_port/https_port word if it is a TLS one; False if it is not.
        The words Squid takes bare are these; every other TLS option is written
        with ``tls-`` (``tls-min-version=1.2``, ``tls-dh=``, ``tls-default-ca``)."""
        key, _, value = token.partition("=")
        if token in ("ssl-bump", "sslBump"):
            if token == "sslBump":
                warn("'sslBump' is deprecated; use 'ssl-bump' instead")
            self.ssl_bump = True
        elif key == "cafile":
            warn("UPGRADE WARNING: cafile= is deprecated; use tls-cafile= instead")
            self.cafiles.append(resolve_path(value))
        elif key == "dhparams":
            warn("dhparams= is deprecated; use tls-dh= instead")
            self.dh = resolve_path(value)
        elif key == "version":
            warn("UPGRADE WARNING: version= is deprecated; use options= instead")
            self.parse(token, warn, resolve_path)
        elif key in ("sslflags", "sslcontext"):
            self._server_option(token[3:], warn, resolve_path)
        elif key in ("cert", "key", "options", "cipher", "clientca", "capath", "crlfile",
                     "generate-host-certificates", "dynamic_cert_mem_cache_size"):
            self._server_option(token, warn, resolve_path)
        elif token.startswith("tls-"):
            self._server_option(token[4:], warn, resolve_path)
        else:
            return False
        return True

    def _server_option(self, token: str, warn, resolve_path) -> None:
        key, _, value = token.partition("=")
        if key == "generate-host-certificates":
            if token not in ("generate-host-certificates", "generate-host-certificates=on",
                             "generate-host-certificates=off"):
                warn(f"unknown TLS option '{token}'; ignored (generate-host-certificates takes =on or =off)")
                return
            self.generate_host_certificates = value != "off"
        elif key == "dynamic_cert_mem_cache_size":
            try:
                self.dynamic_cert_mem_cache_size = parse_size([value], "byte")
            except ValueError as e:
                raise TlsOptionError(f"dynamic_cert_mem_cache_size: {e}") from None
        elif key in ("clientca", "dh"):
            setattr(self, key, resolve_path(value))
        elif key == "context":
            if len(value) > 32:
                raise TlsOptionError("context= is longer than 32 characters")
            self.context = value
        else:
            self.parse(token, warn, resolve_path)

    @property
    def has_tls(self) -> bool:
        return bool(self.certs) or self.ssl_bump

    def check(self, https: bool, warn, interception: str | None = None) -> None:
        """What Squid checks once a port's line is read; raises TlsOptionError.
        ``interception``: the port's intercept or tproxy option, if any."""
        if https and not self.certs:
            raise TlsOptionError("https_port requires a tls-cert= parameter")
        if self.ssl_bump and not self.certs:
            raise TlsOptionError("ssl-bump requires tls-cert= (the CA that signs the certificates it makes)")
        if self.ssl_bump and https and interception is None:
            raise TlsOptionError("ssl-bump on https_port requires tproxy/intercept which is missing.")
        if https and interception is not None and not self.ssl_bump:
            raise TlsOptionError(f"https_port {interception} without ssl-bump (TLS ended with the port's own "
                                 "certificate) is not implemented by squidpy yet: add ssl-bump (docs/intercept.md)")
        if not self.ssl_bump and not https and self.certs:
            warn("tls-cert= on an http_port without ssl-bump is not used")


def outgoing_defaults() -> TlsOptions:
    """``tls_outgoing_options`` when the configuration says nothing: min-version=1.0."""
    options = TlsOptions()
    options.min_version = "1.0"
    return options
