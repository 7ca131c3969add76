"""Background revalidation (stale-while-revalidate, RFC 5861 section 3).

The client already got the stale entry; a second transaction, with no client
behind it, asks the origin with the entry's validators and updates the store
from the answer.  :class:`NullClient` stands in for the client connection:
it accepts and drops whatever the transaction writes.
"""

from __future__ import annotations

import time

from squidpy.http.message import RequestHead
from squidpy.proxy.client_side import ClientConnection

_CONDITIONALS = frozenset({b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since",
                           b"if-range", b"range", b"cache-control", b"pragma"})


class NullClient:
    closing = False
    closes_after_active = False
    cork_number = None
    tunnel = None

    def __init__(self, client):
        self.service = client.service
        self.client_ip, self.client_port = client.client_ip, client.client_port
        self.local_ip, self.local_port = client.local_ip, client.local_port
        self.port_name = client.port_name

    checklist = ClientConnection.checklist

    def write(self, data) -> None:
        pass

    def write_sequence(self, parts) -> None:
        pass

    def cork(self) -> None:
        pass

    def uncork(self) -> None:
        pass

    def take_back(self, number) -> bool:
        return False

    def abort(self) -> None:
        pass

    def pause_reading(self, reason) -> None:
        pass

    def resume_reading(self, reason) -> None:
        pass

    def transaction_done(self, txn) -> None:
        pass


def refresh_in_background(service, txn) -> None:
    from squidpy.proxy.transaction import Transaction

    head = RequestHead("GET", txn.head.target, "1.1",
                       [kv for kv in txn.head.headers if kv[0].lower() not in _CONDITIONALS])
    background = Transaction(NullClient(txn.client), head, time.time())
    background.background = True
    service.reactor.callLater(0, background.start)
