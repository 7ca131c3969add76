"""Zero-copy tunnels on Linux: splice(2) between the two sockets, through a pipe.

Once a tunnel's Twisted write buffers are empty, both sockets are taken off
their Twisted transports and handed to two :class:`_SpliceEnd` descriptors.
Bytes then go socket -> pipe -> socket inside the kernel, never through
Python objects.  Flow control is the pipe: when the receiving socket is full
the pipe keeps what it holds, the sending side stops being read, and reading
resumes when the pipe is empty again.  EOF is passed on as a half-close.
When both directions are done (or on error or timeout) the sockets go back
to their transports, which close them as usual, so the protocols'
connectionLost bookkeeping and the access log line are unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time

from twisted.internet import tcp

from squidpy.proxy.closing import lose

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_DONE = (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT)


def available(*transports) -> bool:
    """splice works between plain TCP sockets on Linux (not under TLS)."""
    return hasattr(os, "splice") and all(
        isinstance(t, tcp.Connection) and getattr(t, "socket", None) is not None for t in transports)




class _Direction:
    """One way through the tunnel: src socket -> pipe -> dst socket."""

    def __init__(self, src: int, dst: int):
        self.src = src
        self.dst = dst
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass        # keep the default pipe size
        self.in_pipe = 0        # bytes read from src, not yet written to dst
        self.moved = 0
        self.eof = False        # src sent EOF
        self.finished = False   # EOF passed on to dst

    def pull(self) -> int:
        """src -> pipe; returns bytes read (0 on EOF), -1 when nothing to read."""
        try:
            n = os.splice(self.src, self.write_fd, CHUNK, flags=FLAGS)
        except BlockingIOError:
            return -1
        if n == 0:
            self.eof = True
        self.in_pipe += n
        return n

    def push(self) -> bool:
        """pipe -> dst; True when the pipe is empty."""
        while self.in_pipe:
            try:
                n = os.splice(self.read_fd, self.dst, self.in_pipe, flags=FLAGS)
            except BlockingIOError:
                return False
            self.in_pipe -= n
            self.moved += n
        return True

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class _SpliceEnd:
    """The reactor's view of one socket of a spliced tunnel."""

    def __init__(self, tunnel: "SplicedTunnel", fd: int, outgoing: _Direction, incoming: _Direction):
        self.tunnel = tunnel
        self.fd = fd
        self.outgoing = outgoing    # reads from this socket
        self.incoming = incoming    # writes to this socket

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "splice"

    def doRead(self):
        self.tunnel.step(self.outgoing)

    def doWrite(self):
        self.tunnel.step(self.incoming)

    def connectionLost(self, reason):
        self.tunnel.finish()


class SplicedTunnel:
    """Moves a :class:`~squidpy.proxy.tunnel.Tunnel` onto splice(2)."""

    def __init__(self, tunnel, reactor):
        self.tunnel = tunnel
        self.reactor = reactor
        self.client_t = tunnel.client.transport
        self.server_t = tunnel.server.transport
        for t in (self.client_t, self.server_t):
            t.stopReading()
            t.stopWriting()
        c, s = self.client_t.fileno(), self.server_t.fileno()
        self.up = _Direction(c, s)
        self.down = _Direction(s, c)
        self.client_end = _SpliceEnd(self, c, self.up, self.down)
        self.server_end = _SpliceEnd(self, s, self.down, self.up)
        self.ends = {self.up: (self.client_end, self.server_end), self.down: (self.server_end, self.client_end)}
        self.done = False
        reactor.addReader(self.client_end)
        reactor.addReader(self.server_end)

    def step(self, direction: _Direction) -> None:
        """Move what can be moved one way; adjust which events we wait for."""
        if self.done:
            return
        reader, writer = self.ends[direction]
        try:
            if direction.push():
                self.reactor.removeWriter(writer)
                if not direction.eof:
                    n = direction.pull()
                    if n > 0 and not direction.push():
                        # the receiver is full: hold the data, stop reading
                        self.reactor.removeReader(reader)
                        self.reactor.addWriter(writer)
                        return
                    self.reactor.addReader(reader)
            else:
                self.reactor.removeReader(reader)
                self.reactor.addWriter(writer)
                return
            if direction.eof and not direction.in_pipe and not direction.finished:
                direction.finished = True
                self.reactor.removeReader(reader)
                try:
                    _shutdown_write(direction.dst)
                except OSError:
                    pass
        except OSError as e:
            if e.errno in _DONE:
                return self.finish()
            raise
        finally:
            self.tunnel.deadline = time.monotonic() + self.tunnel.idle_timeout
        if self.up.finished and self.down.finished:
            self.finish()

    def finish(self) -> None:
        """Give the sockets back to their transports, which close them."""
        if self._release():
            lose(self.client_t)
            lose(self.server_t)

    def close_idle(self) -> None:
        """The tunnel timed out: close, or reset if data is stuck in a pipe."""
        stuck = self.up.in_pipe or self.down.in_pipe
        if self._release():
            for t in (self.client_t, self.server_t):
                t.abortConnection() if stuck else lose(t)

    def _release(self) -> bool:
        if self.done:
            return False
        self.done = True
        for end in (self.client_end, self.server_end):
            self.reactor.removeReader(end)
            self.reactor.removeWriter(end)
        self.tunnel.bytes_up += self.up.moved
        self.tunnel.bytes_down += self.down.moved
        self.up.close()
        self.down.close()
        self.tunnel.spliced = None
        return True


def _shutdown_write(fd: int) -> None:
    s = socket.socket(fileno=os.dup(fd))
    try:
        s.shutdown(socket.SHUT_WR)
    finally:
        s.close()
