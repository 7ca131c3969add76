"""The life of one request as a sans-IO state machine: events in, commands out.

See :mod:`squidpy.exchange.exchange` (the machine), :mod:`.events`,
:mod:`.commands`, :mod:`.caching` (the cache's sub-machine) and :mod:`.shared`
(what exchanges share).  Nothing in this package does I/O or reads a clock.
"""

from squidpy.exchange.exchange import ClientInfo, Exchange, IllegalEvent, State

__all__ = ["ClientInfo", "Exchange", "IllegalEvent", "State"]
