"""A client connection's requests, in order (Squid's ConnStateData, without the I/O).

A :class:`ClientSession` decides which exchange runs, which one the request
bytes being read belong to, and what happens to the connection when an
exchange ends: the next pipelined request starts, the connection waits for
one (keep-alive), or it closes — lingering while a refused request's body
drains, so the client can read its answer.  Pipelined requests are answered
one at a time, in the order they came, and each one is answered even when a
later one says ``Connection: close``.
"""

from __future__ import annotations

from dataclasses import dataclass

from squidpy.exchange.exchange import Exchange

MAX_PIPELINE = 16          # queued requests before the connection stops being read


class SessionCommand:
    __slots__ = ()

    def __repr__(self) -> str:
        return type(self).__name__


@dataclass(slots=True)
class Begin(SessionCommand):
    """Start this exchange (feed it RequestStarted)."""
    exchange: Exchange


@dataclass(slots=True)
class PauseReading(SessionCommand):
    reason: str


@dataclass(slots=True)
class ResumeReading(SessionCommand):
    reason: str


@dataclass(slots=True)
class Close(SessionCommand):
    """Close the connection once what was written has left; ``linger``: half-close
    first and let the client finish sending a body we will not read."""
    linger: bool


class _Idle(SessionCommand):
    """Nothing to do: wait for the next request (client_idle_pconn_timeout)."""
    __slots__ = ()


Idle = _Idle()
RESUME_BODY = ResumeReading("body")
RESUME_PIPELINE = ResumeReading("pipeline")
PAUSE_PIPELINE = PauseReading("pipeline")


class ClientSession:
    __slots__ = ("queue", "active", "receiving", "closing", "eof", "closed")

    def __init__(self) -> None:
        self.queue: list[Exchange] = []     # requests read, waiting for their turn
        self.active: Exchange | None = None
        self.receiving: Exchange | None = None    # the exchange the body bytes being read belong to
        self.closing = False                # no further request will be read
        self.eof = False                    # the client half-closed
        self.closed = False

    def received(self, exchange: Exchange, has_body: bool) -> list[SessionCommand]:
        """A request head was read."""
        if not exchange.head.keep_alive:
            self.closing = True             # read no more requests; answer those we have
        self.receiving = exchange if has_body else None
        self.queue.append(exchange)
        out: list[SessionCommand] = []
        if len(self.queue) > MAX_PIPELINE:
            out.append(PAUSE_PIPELINE)
        self._next(out)
        self._tell(exchange)
        return out

    def _tell(self, exchange: Exchange) -> None:
        """Exchanges see ``client.closing``: the connection closes once the active
        request is answered (no request will be read any more and none waits behind
        it), so its reply says ``Connection: close``; an earlier one of a pipeline
        ending in ``Connection: close`` does not."""
        exchange.client.closing = self.closing and not self.queue

    def body_target(self) -> Exchange | None:
        """Who the body bytes being read belong to (None: nobody, drop them)."""
        return self.receiving

    def body_ended(self) -> None:
        self.receiving = None

    def refused(self, exchange: Exchange) -> list[SessionCommand]:
        """Input that cannot be parsed, answered by ``exchange`` (a refusal made by the
        reader); nothing more is read from this client."""
        self.closing = True
        self.receiving = None
        self.queue.append(exchange)
        out: list[SessionCommand] = []
        self._next(out)
        self._tell(exchange)
        return out

    def stop_reading(self, exchange: Exchange) -> None:
        """Malformed input inside a request already read: that request gets the
        error; nothing more is read."""
        self.closing = True
        self.receiving = None
        self._tell(exchange)

    def half_closed(self) -> list[SessionCommand]:
        """The client sent EOF: finish what was asked, then close."""
        self.eof = self.closing = True
        if self.active is None and not self.queue:
            return [Close(linger=False)]
        if self.active is not None:
            self._tell(self.active)
        return []

    def finished(self, exchange: Exchange, keep_alive: bool, body_done: bool,
                 tunnel: bool = False) -> list[SessionCommand]:
        """``exchange`` has answered (or became a tunnel that ended)."""
        if exchange is not self.active:
            return []
        self.active = None
        out: list[SessionCommand] = [RESUME_BODY]
        if exchange.head.method == "CONNECT" and not tunnel and exchange.entry.status != 407:
            # bytes meant for a tunnel may follow a refused CONNECT; a 407 keeps the
            # connection (as in Squid) so a Negotiate/NTLM handshake can finish on it,
            # unless such bytes came (the client side checks)
            keep_alive = False
        if not keep_alive:
            self.closing = True
            self.queue.clear()
            self.receiving = None
            if not tunnel:
                out.append(Close(linger=not (body_done or self.eof)))
            self.closed = True
            return out
        if self.closing and not self.queue:
            self.closed = True
            out.append(Close(linger=not (body_done or self.eof)))
            return out
        if not self.queue:
            out.append(Idle)
            return out
        self._next(out)
        return out

    def gone(self) -> Exchange | None:
        """The connection is gone: the active exchange (if any) must hear of it; the
        queued ones are dropped unanswered."""
        self.closing = self.closed = True
        self.queue.clear()
        self.receiving = None
        active, self.active = self.active, None
        return active

    def _next(self, out: list[SessionCommand]) -> None:
        if self.active is None and self.queue:
            self.active = self.queue.pop(0)
            if len(self.queue) == MAX_PIPELINE:
                out.append(RESUME_PIPELINE)
            self._tell(self.active)
            out.append(Begin(self.active))
