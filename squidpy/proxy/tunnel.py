"""A tunnel: bytes both ways between a client and an origin (or a peer), untouched.

Used after ``CONNECT`` (TCP_TUNNEL) and after a ``101 Switching Protocols``
(WebSocket).  Each side's write buffer throttles the other side's reads
(Twisted producers), a half-close is passed on as a half-close, and the
tunnel ends when both directions are done, either side resets, or nothing
moves for ``read_timeout``.  The transaction is logged when it ends.
"""

from __future__ import annotations

import time

from squidpy.proxy import splice
from squidpy.proxy.closing import lose
from squidpy.proxy.seam import buffers_empty


class Tunnel:
    limit = None                # no limit beside the idle deadline (see proxy/timeouts.py)

    def __init__(self, client, server, idle_timeout: float, on_end):
        self.client = client
        self.server = server
        self.idle_timeout = idle_timeout
        self.on_end = on_end
        self.bytes_up = 0          # client -> server
        self.bytes_down = 0        # server -> client
        self.client_done = False   # the client sent EOF
        self.server_done = False
        self.ended = False
        self.deadline = time.monotonic() + idle_timeout
        client.tunnel = self
        server.tunnel = self
        server.deadline = None
        client.deadline = None
        server.pool.timeouts.add(self)
        self.spliced: splice.SplicedTunnel | None = None
        # a client speaking TLS to us (https_port) or a peer we speak TLS to has its bytes
        # encrypted here, and a delay pool counts the bytes it lets through: those tunnels
        # stay in Python (no splice(2))
        self._can_splice = (getattr(client, "tls", None) is None and server.tls is None and server.delay is None
                            and client.write_limit is None and splice.available(client.transport, server.transport))
        self._splice_pending = False

    def maybe_splice(self) -> None:
        """Hand the sockets to splice(2) once nothing is queued in Python.

        Checked on the reactor's next turn, when what was just written has
        usually left the transports' buffers."""
        if self._can_splice and not self._splice_pending and self.spliced is None:
            self._splice_pending = True
            self.server.pool.reactor.callLater(0, self._try_splice)

    def _try_splice(self) -> None:
        self._splice_pending = False
        c, s = self.client, self.server
        if (self.spliced is None and not self.ended and not self.client_done and not self.server_done
                and c.transport.connected and s.transport.connected and not c._paused_by and not s._paused_by
                and buffers_empty(c.transport) and buffers_empty(s.transport)):
            self.spliced = splice.SplicedTunnel(self, s.pool.reactor)

    def from_client(self, data: bytes) -> None:
        self.bytes_up += len(data)
        self.deadline = time.monotonic() + self.idle_timeout
        self.server.write(data)
        self.maybe_splice()

    def from_server(self, data: bytes) -> None:
        self.bytes_down += len(data)
        self.deadline = time.monotonic() + self.idle_timeout
        self.client.write(data)
        self.maybe_splice()

    def client_eof(self) -> None:
        self.client_done = True
        if self.server_done:
            self._close_both()
        else:
            server = self.server
            if server.tls is not None:
                server.transport.write(server.tls.close())
            server.transport.loseWriteConnection()

    def server_eof(self) -> None:
        self.server_done = True
        if self.client_done:
            self._close_both()
        else:
            self.client.transport.loseWriteConnection()

    def client_closed(self) -> None:
        lose(self.server.transport)
        self._end()

    def server_closed(self) -> None:
        lose(self.client.transport)
        self._end()

    def timed_out(self) -> None:
        """Nothing moved for read_timeout: close; reset only a side that is stuck
        with data it cannot deliver."""
        if self.spliced is not None:
            self.spliced.close_idle()
        else:
            for t in (self.client.transport, self.server.transport):
                if buffers_empty(t):
                    lose(t)
                else:
                    t.abortConnection()
        self._end()

    def _close_both(self) -> None:
        lose(self.client.transport)
        lose(self.server.transport)

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.server.pool.timeouts.discard(self)
        on_end, self.on_end = self.on_end, None
        on_end(self)
