"""The exchange's I/O half (squidpy.proxy.driver) when the exchange itself fails."""

from __future__ import annotations

import logging

from squidpy.exchange import events as ev
from squidpy.proxy.driver import ExchangeDriver, NullClient


class Broken:
    """An exchange with a bug: it raises on the event it is given."""

    def __repr__(self):
        return "<Exchange GET http://example.test/ WAITING_STATS>"

    def handle_all(self, events):
        raise KeyError("a bug")


class Client(NullClient):
    aborted = 0

    def abort(self):
        self.aborted += 1


def test_a_bug_in_the_exchange_is_logged_and_closes_the_client_instead_of_leaving_it_waiting(caplog):
    client = Client()
    driver = ExchangeDriver(Broken(), client, service=None)
    with caplog.at_level(logging.ERROR, logger="squidpy"):
        driver.feed(ev.StatsCollected([]))
    assert client.aborted == 1
    [record] = caplog.records
    assert record.getMessage() == ("BUG: <Exchange GET http://example.test/ WAITING_STATS> failed; "
                                   "closing the client's connection")
    assert record.exc_info[0] is KeyError
    driver.feed(ev.StatsCollected([]))       # not stuck busy: the next event is handled (and fails) too
    assert client.aborted == 2
