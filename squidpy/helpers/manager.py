"""Helper children as Twisted processes, driven by :class:`~squidpy.helpers.pool.HelperPool`.

The pool decides; :class:`HelperManager` carries its actions out: it spawns
children with pipes on stdin/stdout/stderr (stderr lines go to cache_log, as
in Squid), writes request lines, reads replies as they come, ends children
that are stuck, and fires each request's Deferred.  Nothing here blocks the
reactor: a slow or hung child only delays the requests it holds.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass

from twisted.internet import defer, error, protocol, task

from squidpy.helpers.pool import (
    Answer,
    CloseInput,
    Fatal,
    HelperPool,
    Kill,
    Log,
    Spawn,
    Write,
)
from squidpy.helpers.protocol import ChildConfig, Reply

cache_log = logging.getLogger("squidpy")

TICK = 0.25          # seconds between timeout and restart checks
STDERR_LINE = 4096   # a helper's stderr line is cut at this length in cache_log


@dataclass(frozen=True)
class HelperAnswer:
    reply: Reply
    child: int | None      # which child answered (for a stateful handshake's reservation)


class _Child(protocol.ProcessProtocol):
    def __init__(self, manager: "HelperManager", index: int):
        self.manager = manager
        self.index = index
        self.stderr = bytearray()
        self.ended = False

    def outReceived(self, data: bytes) -> None:
        self.manager._carry(self.manager.pool.received(self.index, data))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        while b"\n" in self.stderr:
            line, _, rest = bytes(self.stderr).partition(b"\n")
            self.stderr = bytearray(rest)
            self.manager._stderr_line(self.index, line)
        if len(self.stderr) > STDERR_LINE:
            self.manager._stderr_line(self.index, bytes(self.stderr))
            self.stderr.clear()

    def processEnded(self, reason) -> None:
        self.ended = True
        if self.stderr:
            self.manager._stderr_line(self.index, bytes(self.stderr))
        value = reason.value
        if isinstance(value, error.ProcessTerminated):
            detail = f"signal {value.signal}" if value.signal else f"exit status {value.exitCode}"
        else:
            detail = ""
        self.manager._ended(self.index, detail)


class HelperManager:
    """Children of one helper program.  ``command`` is the program and its
    arguments as written in squid.conf (a string is split as the shell would)."""

    def __init__(self, name: str, command: str | list[str], config: ChildConfig, reactor,
                 stateful: bool = False, timeout: float | None = None, retry_timed_out: bool = False,
                 timed_out_reply: str | None = None, log=None, on_fatal=None, env: dict | None = None):
        self.name = name
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise ValueError(f"{name}: no helper program")
        self.reactor = reactor
        self.pool = HelperPool(name, config, reactor.seconds, stateful=stateful, timeout=timeout,
                               retry_timed_out=retry_timed_out, timed_out_reply=timed_out_reply)
        self.log = log or (lambda message: cache_log.warning("%s", message))
        self.on_fatal = on_fatal
        self.env = dict(os.environ if env is None else env)
        self.processes: dict[int, _Child] = {}
        self.transports: dict[int, object] = {}
        self._ticker: task.LoopingCall | None = None
        self._stopped: list[defer.Deferred] = []

    # ------------------------------------------------------------ the caller's side

    def start(self) -> None:
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(TICK, now=False)
        self._carry(self.pool.start())

    def ask(self, line: str, reservation: int | None = None) -> defer.Deferred:
        """Send one request line; the Deferred fires with a :class:`HelperAnswer`
        (never errs: a helper failure is an answer too)."""
        d = defer.Deferred()
        self._carry(self.pool.submit(line, d, reservation))
        return d

    def will_overload(self) -> bool:
        return self.pool.will_overload()

    def reserve(self, child: int) -> None:
        self.pool.reserve(child)

    def release(self, child: int) -> None:
        self._carry(self.pool.release(child))

    def stop(self, grace: float = 5.0) -> defer.Deferred:
        """Close the children's input; those still running after ``grace`` seconds are killed.
        Fires once every child has ended."""
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._carry(self.pool.shutdown())
        if not self.processes:
            return defer.succeed(None)
        d = defer.Deferred()
        self._stopped.append(d)
        self.reactor.callLater(grace, self._kill_all)
        return d

    # ------------------------------------------------------------ carrying out actions

    def _carry(self, actions) -> None:
        for action in actions:
            kind = type(action)
            if kind is Write:
                transport = self.transports.get(action.index)
                if transport is not None:
                    transport.write(action.data)
            elif kind is Answer:
                d = action.token
                if not d.called:
                    d.callback(HelperAnswer(action.reply, action.child))
            elif kind is Spawn:
                self._spawn(action.index)
            elif kind is Log:
                self.log(action.message)
            elif kind is CloseInput:
                transport = self.transports.get(action.index)
                if transport is not None:
                    transport.closeStdin()
            elif kind is Kill:
                self._signal(action.index, "KILL")
            elif kind is Fatal:
                if self.on_fatal is not None:
                    self.on_fatal(action.message)       # it writes the FATAL line, once
                else:
                    self.log(f"FATAL: {action.message}")

    def _spawn(self, index: int) -> None:
        child = _Child(self, index)
        self.processes[index] = child
        try:
            transport = self.reactor.spawnProcess(child, self.argv[0], self.argv, env=self.env,
                                                  childFDs={0: "w", 1: "r", 2: "r"})
        except OSError as e:
            self.log(f"WARNING: Cannot run '{self.argv[0]}' process: {e.strerror}")
            del self.processes[index]
            self.reactor.callLater(0, self._ended, index, "not started")
            return
        self.transports[index] = transport

    def _signal(self, index: int, signal: str) -> None:
        transport = self.transports.get(index)
        if transport is None:
            return
        try:
            transport.signalProcess(signal)
        except error.ProcessExitedAlready:
            pass

    def _ended(self, index: int, detail: str) -> None:
        self.processes.pop(index, None)
        self.transports.pop(index, None)
        self._carry(self.pool.exited(index, detail))
        if not self.processes and self._stopped:
            waiting, self._stopped = self._stopped, []
            for d in waiting:
                d.callback(None)

    def _kill_all(self) -> None:
        for index in list(self.transports):
            self._signal(index, "KILL")

    def _stderr_line(self, index: int, line: bytes) -> None:
        text = line[:STDERR_LINE].decode("utf-8", "replace").rstrip("\r")
        if text:
            self.log(f"{self.name} #{index}: {text}")

    def _tick(self) -> None:
        self._carry(self.pool.tick())
