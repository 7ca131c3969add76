"""TLS for SslBump, as Squid does it, in pure modules where possible.

* :mod:`~squidpy.tls.hello`: TLS records and hello messages read from raw
  bytes (SNI, ALPN, versions), never trusting a length.
* :mod:`~squidpy.tls.names`: Squid's host name matching (certificate names,
  ``ssl::server_name``).
* :mod:`~squidpy.tls.errors`: certificate and handshake errors in Squid's
  words (``X509_V_ERR_*``, ``SQUID_X509_V_ERR_DOMAIN_MISMATCH``, the details
  of ERR_SECURE_CONNECT_FAIL).
* :mod:`~squidpy.tls.options`: Squid's TLS option syntax (``tls_outgoing_options``,
  the TLS options of ``http_port``/``https_port``).
* :mod:`~squidpy.tls.verify`: origin certificates checked against the trust store.
* :mod:`~squidpy.tls.ca`: the bumping CA (``squidpy ca init``, ``squidpy ca export``).
* :mod:`~squidpy.tls.mint`: certificates that mimic the origin's, as Squid mints them.
* :mod:`~squidpy.tls.certcache`: minted certificates kept in memory and on disk.
* :mod:`~squidpy.tls.certgen`: Squid's ``security_file_certgen`` helper protocol.
* :mod:`~squidpy.tls.bump`: which ``ssl_bump`` action applies at which step.
"""
