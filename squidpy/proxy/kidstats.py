"""Under ``workers N``: every kid's figures, for a page any one kid is asked for.

The kernel hands a cache manager request or a /metrics scrape to one kid; the
page must show all of them (Squid's coordinator gathers its kids' figures the
same way).  Each kid listens on a UNIX socket, ``kidN.sock``, in a directory
the master made for this run (mode 0700, owned by the kids' user, so no other
local user can read the figures); the kid that was asked connects to the
others, sends one line (what the page needs, as JSON) and reads each one's
report (JSON) until it closes.  A kid that does not answer within
``ASK_TIMEOUT`` (being restarted, stuck) is left out of the page.

Nothing here is on the request path: the reports are made when a page is asked for.
"""

from __future__ import annotations

import json
import logging
import os

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory, Factory, Protocol

log = logging.getLogger("squidpy")

ASK_TIMEOUT = 5.0           # seconds a kid has to send its report
MAX_QUESTION = 64 * 1024
MAX_REPORT = 512 * 1024 * 1024      # an objects list of a big memory tier is large; this bounds it


def socket_path(run_dir: str, kid: int) -> str:
    return os.path.join(run_dir, f"kid{kid}.sock")


class KidReports:
    """This kid's report socket, and the gathering of the others' reports."""

    def __init__(self, service, run_dir: str):
        self.service = service
        self.run_dir = run_dir
        path = socket_path(run_dir, service.kid)
        try:
            os.unlink(path)             # left by this kid's previous life
        except FileNotFoundError:
            pass
        self.port = service.reactor.listenUNIX(path, _AnswerFactory(service), mode=0o600)

    def close(self) -> None:
        self.port.stopListening()

    def collect(self, own: defer.Deferred, action: str, needs: frozenset, params: dict) -> defer.Deferred:
        """Fires with this kid's report (``own``) and every other kid's that answered."""
        service = self.service
        question = json.dumps({"action": action, "needs": sorted(needs), "params": params}).encode() + b"\n"
        asks = [own]
        for kid in range(1, service.config.workers + 1):
            if kid != service.kid:
                asks.append(ask(service.reactor, socket_path(self.run_dir, kid), question))

        def gathered(results):
            reports = []
            for ok, value in results:
                if ok and value is not None:
                    reports.append(value)
                elif not ok:
                    log.warning("cache manager: a kid's figures are missing: %s", value.getErrorMessage())
            return reports
        return defer.DeferredList(asks, consumeErrors=True).addCallback(gathered)


def ask(reactor, path: str, question: bytes) -> defer.Deferred:
    """Another kid's report (None when it cannot be reached or does not answer in time)."""
    factory = _AskFactory(question)
    connector = reactor.connectUNIX(path, factory, timeout=ASK_TIMEOUT)
    timer = reactor.callLater(ASK_TIMEOUT, connector.disconnect)

    def done(result):
        if timer.active():
            timer.cancel()
        return result
    return factory.answer.addBoth(done)


class _Ask(Protocol):
    def connectionMade(self):
        self.chunks = []
        self.size = 0
        self.transport.write(self.factory.question)

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_REPORT:
            self.transport.abortConnection()
            return
        self.chunks.append(data)

    def connectionLost(self, reason):
        answer = self.factory.answer
        if answer.called:
            return
        try:
            answer.callback(json.loads(b"".join(self.chunks)) if self.size <= MAX_REPORT else None)
        except ValueError:
            answer.callback(None)


class _AskFactory(ClientFactory):
    protocol = _Ask

    def __init__(self, question: bytes):
        self.question = question
        self.answer = defer.Deferred()

    def clientConnectionFailed(self, connector, reason):
        if not self.answer.called:
            self.answer.callback(None)


class _Answer(Protocol):
    """Reads one question line, answers with this process's report, closes."""

    def connectionMade(self):
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        if self.buffer is None:
            return
        self.buffer += data
        if b"\n" not in self.buffer:
            if len(self.buffer) > MAX_QUESTION:
                self.transport.abortConnection()
            return
        line, self.buffer = self.buffer.split(b"\n", 1)[0], None
        try:
            question = json.loads(line)
            needs = frozenset(question["needs"])
            params = dict(question["params"])
        except (ValueError, KeyError, TypeError):
            self.transport.abortConnection()
            return
        from squidpy.proxy import reports
        d = reports.build(self.factory.service, needs, params)
        d.addCallbacks(self._send, self._failed)

    def _send(self, report: dict) -> None:
        self.transport.write(json.dumps(report).encode())
        self.transport.loseConnection()

    def _failed(self, failure) -> None:
        log.error("cache manager: this kid's figures could not be made: %s", failure.getErrorMessage())
        self.transport.abortConnection()


class _AnswerFactory(Factory):
    protocol = _Answer

    def __init__(self, service):
        self.service = service
