"""The TLS objects a running configuration needs, made once per configuration.

:class:`TlsSide` holds the OpenSSL client contexts for origins
(``tls_outgoing_options``) and for ``cache_peer``s with ``tls``, one :class:`~squidpy.tls.certcache.Minter` per
``ssl-bump`` port (its CA, the memory cache sized by the port's
``dynamic_cert_mem_cache_size``, the disk cache and helper of
``sslcrtd_program``) and the server contexts made from minted certificates.
It decides nothing: which certificate to mint and whether an error may pass
are the exchange's and the configuration's (squidpy.config.tls_directives).
Every configuration has one, so the modules that load pyOpenSSL and
cryptography are imported by the methods that use them: a proxy that speaks
no TLS never loads them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from squidpy.config.tls_directives import cert_error_allowed

if TYPE_CHECKING:
    from OpenSSL import SSL

    from squidpy.config.loader import Config
    from squidpy.tls.certcache import Minter
    from squidpy.tls.session import ClientTlsSession

ORIGIN_ALPN = [b"http/1.1"]
CONTEXTS = 1024             # server contexts kept for minted certificates (least recently used go)


class TlsSide:
    def __init__(self, config: Config):
        self.config = config
        self.options = config.tls_outgoing_options
        self._client_context = None
        self._peer_contexts: dict[str, SSL.Context] = {}
        self._minters: dict[str, Minter] = {}
        self._contexts: OrderedDict = OrderedDict()
        self._helper = None
        program = config.sslcrtd_program
        if program is not None and not program.internal:
            from squidpy.tls.certgen import CertgenHelper

            self._helper = CertgenHelper(program.command, config.sslcrtd_children.n_max)

    @property
    def client_context(self):
        if self._client_context is None:
            from squidpy.tls.verify import client_context

            self._client_context = client_context(self.options, ORIGIN_ALPN)
        return self._client_context

    def origin_session(self, host: str, checklist) -> ClientTlsSession:
        """A client TLS session to an origin, checked for ``host``; problems
        sslproxy_cert_error allows are let through (and stay in the checklist)."""
        from squidpy.tls.session import ClientTlsSession
        from squidpy.tls.verify import Verification

        config = self.config

        def bypass(error, peer_cert) -> bool:
            return checklist is not None and cert_error_allowed(config, checklist, error, peer_cert)
        return ClientTlsSession(self.client_context, Verification(host, self.options, bypass))

    def peer_session(self, peer) -> ClientTlsSession:
        """A client TLS session to a ``cache_peer`` with ``tls``, made from its tls-*
        options (Squid's BlindPeerConnector): its certificate checked for tls-domain,
        else the peer's host, which is also the SNI sent; no sslproxy_cert_error
        bypass and no ALPN."""
        from squidpy.tls.session import ClientTlsSession
        from squidpy.tls.verify import Verification, client_context

        ctx = self._peer_contexts.get(peer.name)
        if ctx is None:
            ctx = self._peer_contexts[peer.name] = client_context(peer.tls)
        return ClientTlsSession(ctx, Verification(peer.tls.domain or peer.host, peer.tls))

    def minter(self, listen) -> Minter:
        """The minter of an ssl-bump port (made on first use)."""
        found = self._minters.get(listen.name)
        if found is None:
            from squidpy.tls.certcache import CertCache, Minter

            tls = listen.tls
            program = self.config.sslcrtd_program
            directory = program.directory if program is not None and program.internal else None
            size = program.size if program is not None else 4 << 20
            cache = CertCache(tls.dynamic_cert_mem_cache_size, directory, size)
            found = self._minters[listen.name] = Minter(tls.ca, cache, helper=self._helper)
        return found

    def server_context(self, minted, listen):
        """The context a bumped client handshakes with, kept per minted certificate."""
        key = (id(minted), listen.name)
        ctx = self._contexts.get(key)
        if ctx is None:
            from squidpy.tls.session import bump_context

            ctx = self._contexts[key] = (bump_context(minted, listen.tls), minted)
            while len(self._contexts) > CONTEXTS:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(key)
        return ctx[0]

    def stop(self) -> None:
        if self._helper is not None:
            self._helper.stop()
