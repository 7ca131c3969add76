"""squidpy: a caching forward proxy in the style of Squid, on Twisted.

The package reads in the order a request travels:
config (squid.conf) -> acl (http_access) -> proxy (client side, server side,
tunnel) -> cache -> log.
"""

__version__ = "0.1.0"
