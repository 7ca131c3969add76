"""Background revalidation (stale-while-revalidate, RFC 5861 section 3).

The client already got the stale entry; a second exchange, with no client
behind it, asks the origin with the entry's validators and updates the store
from the answer.  :class:`~squidpy.proxy.driver.NullClient` stands in for the
client connection: it accepts and drops whatever is written to it.
"""

from __future__ import annotations

from squidpy.exchange import events as ev
from squidpy.exchange.exchange import Exchange
from squidpy.http.message import RequestHead
from squidpy.proxy.driver import ExchangeDriver, NullClient

_CONDITIONALS = frozenset({b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since",
                           b"if-range", b"range", b"cache-control", b"pragma"})


def refresh_in_background(service, exchange: Exchange, target: str, headers) -> None:
    head = RequestHead("GET", target, "1.1", [kv for kv in headers if kv[0].lower() not in _CONDITIONALS])
    background = Exchange(service, exchange.client, head, service.now(), background=True)
    driver = ExchangeDriver(background, NullClient(), service)
    service.reactor.callLater(0, driver.feed, ev.RequestStarted)
