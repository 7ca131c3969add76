"""Closing a transport that has a streaming producer registered.

Every squidpy connection registers itself as the producer of its own
transport (to pass back-pressure on).  Twisted's ``loseConnection`` waits
for the write buffer to drain, but when the buffer drains while the producer
is paused, Twisted resumes the producer and forgets to finish closing, and
the connection stays open for good.  Unregistering first avoids that.
"""

from __future__ import annotations

from squidpy.proxy.seam import has_producer


def lose(transport) -> None:
    """Close after what is queued has been sent."""
    if has_producer(transport):
        transport.unregisterProducer()
    transport.loseConnection()
