"""One helper kind's children, queue and timeouts as a pure state machine.

:class:`HelperPool` is what Squid's ``helper`` class decides (src/helper.cc,
5.7): which child takes a request (an idle one, else the least loaded below
``concurrency``), when to start more children (``startup``, ``idle``,
``n_max``), the queue and its overload rules (``queue-size``,
``on-persistent-overload``, 180 seconds), channel IDs, a ``BH`` retried on
another attempt, timeouts, and what a child's death does to its requests.  It
never does I/O: each call returns :class:`Action` objects that
``squidpy/helpers/manager.py`` carries out with Twisted, and the clock is
injected.  Where Squid would stop (helpers crashing too rapidly) squidpy keeps
serving and restarts them with a growing back-off instead.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from squidpy.helpers.protocol import (
    BH,
    ERR,
    TIMEDOUT,
    UNKNOWN,
    ChildConfig,
    LineSplitter,
    Reply,
    format_request,
    parse_reply,
    split_channel,
)

MAX_RETRIES = 2              # a BH (or a timed-out request with retry) is tried at most this often again
OVERLOAD_GRACE = 180         # seconds of persistent overload before on-persistent-overload acts
QUEUE_WARN_INTERVAL = 600    # seconds between "all processes are busy" warnings
RAPID_CRASH = 30             # a child that dies this soon after its start, without answering, crashed
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0


# ---------------------------------------------------------------- actions


class Action:
    __slots__ = ()


@dataclass(slots=True)
class Spawn(Action):
    """Start child ``index`` (the program and its arguments are the manager's)."""
    index: int


@dataclass(slots=True)
class Write(Action):
    index: int
    data: bytes


@dataclass(slots=True)
class CloseInput(Action):
    """Close the child's stdin: a helper exits at end of input once it has answered."""
    index: int


@dataclass(slots=True)
class Kill(Action):
    """The child is stuck or broke the protocol: end it."""
    index: int


@dataclass(slots=True)
class Answer(Action):
    """The reply to the request submitted with ``token``; ``child``: who answered
    (a stateful helper's caller reserves it for the rest of a handshake)."""
    token: Any
    reply: Reply
    child: int | None = None


@dataclass(slots=True)
class Log(Action):
    """A cache_log line."""
    message: str


@dataclass(slots=True)
class Fatal(Action):
    """on-persistent-overload=die: Squid stops here."""
    message: str


# ---------------------------------------------------------------- state


@dataclass(slots=True, eq=False)
class Request:
    line: str
    token: Any
    reservation: int | None = None
    retries: int = 0
    dispatched: float = 0.0


@dataclass(eq=False)
class Child:
    index: int
    started: float
    pending: "OrderedDict[int, Request]" = field(default_factory=OrderedDict)
    next_id: int = 0
    replies: int = 0
    timed_out: int = 0            # requests given up on: their late replies are ignored
    closing: bool = False         # takes no new requests (shutting down, killed)
    ignore_until_eol: bool = False
    reserved_at: float | None = None      # stateful: held for one client's handshake
    splitter: LineSplitter = field(default_factory=LineSplitter)


class HelperPool:
    """The children of one helper (an ``auth_param`` scheme, an
    ``external_acl_type``, the URL rewriter ...).  ``name`` is how cache_log names
    it.  ``timeout`` (seconds, or None) bounds how long a request may wait for its
    answer once sent; ``timed_out_reply`` is what a timed-out request is answered
    (url_rewrite_timeout's on_timeout=use_configured_response), else ``TimedOut``;
    ``retry_timed_out`` sends it again instead (on_timeout=retry)."""

    def __init__(self, name: str, config: ChildConfig, clock: Callable[[], float],
                 stateful: bool = False, timeout: float | None = None,
                 retry_timed_out: bool = False, timed_out_reply: str | None = None):
        self.name = name
        self.config = config
        self.clock = clock
        self.stateful = stateful
        self.timeout = timeout
        self.retry_timed_out = retry_timed_out
        self.timed_out_reply = timed_out_reply
        self.children: dict[int, Child] = {}
        self.queue: deque[Request] = deque()
        self._numbers = itertools.count(1)
        self.overload_start: float | None = None
        self.dying = False                   # on-persistent-overload=die acted: the proxy is stopping
        self.dropped = 0
        self.last_queue_warn: float | None = None
        self.backoff = 0.0
        self.restart_at: float | None = None
        self.shutting_down = False
        self.stats = {"requests": 0, "replies": 0, "timedout": 0, "restarts": 0}

    # ------------------------------------------------------------ what a caller asks

    def start(self) -> list[Action]:
        """Start ``startup`` children (Squid starts the rest on demand)."""
        return self._spawn(self.config.need_new(0, starting_up=True))

    def submit(self, line: str, token: Any, reservation: int | None = None) -> list[Action]:
        """A request line (without newline).  ``reservation``: the child a stateful
        handshake is bound to."""
        self.stats["requests"] += 1
        actions: list[Action] = []
        if "\n" in line or "\r" in line:
            raise ValueError("a helper request is one line")
        if self.shutting_down:
            return [Answer(token, Reply(UNKNOWN))]
        if self.restart_at is not None and not self._running():
            return [Answer(token, Reply(UNKNOWN, [("message", "no helper is running")]))]
        if not self._prepare_submit(actions):
            if not self.dying:              # under die the proxy exits: nobody is answered, as in Squid
                actions.append(Answer(token, Reply(ERR)))
            return actions
        self._submit_request(Request(line, token, reservation), actions)
        self._sync_queue_stats(actions)     # the request that overflows the queue starts the overload
        return actions

    def will_overload(self) -> bool:
        """One more request would be queued past queue-size with no child to start
        (url_rewrite_bypass and store_id_bypass skip the helper then)."""
        return self._queue_full() and not (self._need_new() > 0 or self._available() is not None)

    def reserve(self, index: int) -> None:
        child = self.children.get(index)
        if child is not None:
            child.reserved_at = self.clock()

    def release(self, index: int) -> list[Action]:
        child = self.children.get(index)
        if child is None or child.reserved_at is None:
            return []
        child.reserved_at = None
        actions: list[Action] = []
        self._kick(actions)
        return actions

    def shutdown(self) -> list[Action]:
        """Stop taking requests; children exit once they have answered (their stdin closes)."""
        self.shutting_down = True
        actions: list[Action] = []
        while self.queue:
            actions.append(Answer(self.queue.popleft().token, Reply(UNKNOWN)))
        for child in self.children.values():
            if not child.closing:
                child.closing = True
                actions.append(CloseInput(child.index))
        return actions

    # ------------------------------------------------------------ what the children do

    def received(self, index: int, data: bytes) -> list[Action]:
        child = self.children.get(index)
        if child is None:
            return []
        actions: list[Action] = []
        lines = child.splitter.feed(data)
        if lines is None:
            actions.append(Log(f"ERROR: Disconnecting from a helper that overflowed the "
                               f"{child.splitter.limit}-byte input buffer: {self.name} #{index}"))
            child.closing = True
            actions.append(Kill(index))
            actions += self._spawn(self._need_new())
            self._kick(actions)
            return actions
        for line in lines:
            self._reply_line(child, line, actions)
        self._check_timeouts(actions)
        if not child.closing:
            self._kick(actions)
        elif not child.pending and self.shutting_down:
            actions.append(CloseInput(index))
        return actions

    def exited(self, index: int, detail: str = "") -> list[Action]:
        """The child's process ended (or its pipes closed)."""
        child = self.children.pop(index, None)
        if child is None:
            return []
        actions: list[Action] = []
        for request in child.pending.values():
            actions.append(Answer(request.token, Reply(UNKNOWN, [("message", f"{self.name} helper exited")]),
                                  index))
        child.pending.clear()
        if self.shutting_down or child.closing:
            return actions              # ended on purpose; a replacement was started then
        now = self.clock()
        actions.append(Log(f"WARNING: {self.name} #{index} exited" + (f" ({detail})" if detail else "")))
        need = self._need_new()
        if need > 0:
            actions.append(Log(f"Too few {self.name} processes are running "
                               f"(need {need}/{self.config.n_max})"))
            if child.replies == 0 and now - child.started < RAPID_CRASH:
                self.backoff = min(BACKOFF_MAX, self.backoff * 2 if self.backoff else BACKOFF_FIRST)
                self.restart_at = now + self.backoff
                actions.append(Log(f"ERROR: The {self.name} helpers are crashing too rapidly, need help! "
                                   f"(next start in {self.backoff:g} seconds)"))
                if not self._running():
                    self._fail_queue(actions, "no helper is running")
            else:
                self.backoff = 0.0
                actions += self._spawn(need)
                self._kick(actions)
        return actions

    def tick(self) -> list[Action]:
        """Called a few times a second: timeouts, a backed-off restart, reservations."""
        actions: list[Action] = []
        now = self.clock()
        if self.restart_at is not None and now >= self.restart_at and not self.shutting_down:
            self.restart_at = None
            need = self._need_new()
            if need > 0 or self.queue:
                actions += self._spawn(max(need, 1))
                self.stats["restarts"] += 1
                self._kick(actions)
        self._check_timeouts(actions)
        if self.stateful:
            for child in self.children.values():
                if (child.reserved_at is not None and not child.pending
                        and now - child.reserved_at > self.config.reservation_timeout):
                    actions.append(Log(f"ERROR: {self.name} #{child.index} reservation expired"))
                    child.reserved_at = None
            self._kick(actions)
        return actions

    # ------------------------------------------------------------ figures

    def running(self) -> int:
        return self._running()

    def queued(self) -> int:
        return len(self.queue)

    def busy(self) -> int:
        return sum(1 for c in self.children.values() if c.pending)

    # ------------------------------------------------------------ Squid's rules

    def _running(self) -> int:
        return sum(1 for c in self.children.values() if not c.closing)

    def _need_new(self) -> int:
        return self.config.need_new(self._running())

    def _queue_full(self) -> bool:
        return len(self.queue) >= self.config.queue_size

    def _overloaded(self) -> bool:
        return len(self.queue) > self.config.queue_size

    def _sync_queue_stats(self, actions: list[Action]) -> None:
        now = self.clock()
        if self._overloaded():
            if self.overload_start is None:
                self.overload_start = now
        elif self.overload_start is not None:
            if self.dropped:
                actions.append(Log(f"helper {self.name} is no longer overloaded after dropping "
                                   f"{self.dropped} requests in {int(now - self.overload_start)} seconds"))
                self.dropped = 0
            self.overload_start = None

    def _prepare_submit(self, actions: list[Action]) -> bool:
        self._sync_queue_stats(actions)
        if not self._overloaded():
            return True
        # _sync_queue_stats has just set overload_start: the queue is overloaded
        if self.clock() - self.overload_start <= OVERLOAD_GRACE:  # type: ignore[operator]
            return True
        if self.config.on_persistent_overload == "die":
            self.dying = True
            actions.append(Fatal(f"Too many queued {self.name} requests; see on-persistent-overload."))
            return False
        if not self.dropped:
            actions.append(Log(f"WARNING: dropping requests to overloaded {self.name} helper "
                               f"configured with on-persistent-overload=err"))
        self.dropped += 1
        return False

    def _available(self, reservation: int | None = None) -> Child | None:
        """An idle child, else the least loaded one below its concurrency."""
        if reservation is not None:
            child = self.children.get(reservation)
            if child is not None and not child.closing and not child.pending:
                return child
            return None
        limit = max(self.config.concurrency, 1)
        best = None
        for child in self.children.values():
            if child.closing or (self.stateful and child.reserved_at is not None):
                continue
            if not child.pending:
                return child
            if best is None or len(child.pending) < len(best.pending):
                best = child
        if best is None or len(best.pending) >= limit:
            return None
        return best

    def _submit_request(self, request: Request, actions: list[Action]) -> None:
        child = self._available(request.reservation)
        if child is None and request.reservation is not None and request.reservation not in self.children:
            request.reservation = None          # the reserved child is gone: any other will do
            child = self._available()
        if child is not None and (not self.queue or request.reservation is not None):
            self._dispatch(child, request, actions)
            return
        self.queue.append(request)
        need = self._need_new()
        if need > 0 and self.restart_at is None:
            actions.append(Log(f"Starting new {self.name} helpers..."))
            actions += self._spawn(need)
            self._kick(actions)
            return
        if not self._running() and self.restart_at is not None:
            return
        if len(self.queue) < self.config.queue_size:
            return
        now = self.clock()
        if self.last_queue_warn is not None and now - self.last_queue_warn < QUEUE_WARN_INTERVAL:
            return
        self.last_queue_warn = now
        actions.append(Log(f"WARNING: All {self._running()}/{self.config.n_max} {self.name} processes are busy."))
        actions.append(Log(f"WARNING: {len(self.queue)} pending requests queued"))
        actions.append(Log(f"WARNING: Consider increasing the number of {self.name} processes in your config file."))

    def _dispatch(self, child: Child, request: Request, actions: list[Action]) -> None:
        child.next_id += 1
        request.dispatched = self.clock()
        child.pending[child.next_id] = request
        channel = child.next_id if self.config.concurrency else None
        actions.append(Write(child.index, format_request(request.line, channel)))

    def _kick(self, actions: list[Action]) -> None:
        """Send queued requests to children that can take them, in order."""
        while self.queue:
            request = self.queue[0]
            child = self._available(request.reservation)
            if child is None:
                if request.reservation is not None and request.reservation not in self.children:
                    request.reservation = None
                    continue
                break
            self.queue.popleft()
            self._dispatch(child, request, actions)
        self._sync_queue_stats(actions)

    def _spawn(self, count: int) -> list[Action]:
        actions: list[Action] = []
        now = self.clock()
        for _ in range(max(0, min(count, self.config.n_max - self._running()))):
            index = next(self._numbers)
            self.children[index] = Child(index, now)
            actions.append(Spawn(index))
        return actions

    def _reply_line(self, child: Child, line: str, actions: list[Action]) -> None:
        if self.config.concurrency:
            channel, rest = split_channel(line)
            request = child.pending.pop(channel, None) if channel is not None else None
            if request is None:
                if not child.timed_out:
                    actions.append(Log(f"helperHandleRead: unexpected reply on channel {channel} from "
                                       f"{self.name} #{child.index}"))
                return
        else:
            if not child.pending:
                actions.append(Log(f"helperHandleRead: unexpected read from {self.name} #{child.index}, "
                                   f"{len(line)} bytes"))
                return
            _, request = child.pending.popitem(last=False)
            rest = line
        child.replies += 1
        self.stats["replies"] += 1
        self.backoff = 0.0
        reply = parse_reply(rest)
        if reply.result == BH and request.retries < MAX_RETRIES and not self.stateful:
            # (a Negotiate/NTLM handshake is bound to its child: Squid does not retry it)
            actions.append(Log(f"ERROR: helper: {self.name} #{child.index} answered BH, "
                               f"attempt #{request.retries + 1} of 2"))
            request.retries += 1
            request.reservation = None
            self._submit_request(request, actions)
            return
        actions.append(Answer(request.token, reply, child.index))

    def _check_timeouts(self, actions: list[Action]) -> None:
        if self.timeout is None:
            return
        now = self.clock()
        for child in list(self.children.values()):
            expired = [(cid, r) for cid, r in child.pending.items() if now - r.dispatched >= self.timeout]
            if not expired:
                continue
            for cid, request in expired:
                del child.pending[cid]
                child.timed_out += 1
                self.stats["timedout"] += 1
                if self.retry_timed_out and request.retries < MAX_RETRIES:
                    request.retries += 1
                    self.queue.appendleft(request)
                elif self.timed_out_reply is not None:
                    actions.append(Answer(request.token, parse_reply(self.timed_out_reply), child.index))
                else:
                    actions.append(Answer(request.token, Reply(TIMEDOUT), child.index))
            if not self.config.concurrency and not child.closing:
                # Without channel IDs a late answer would be taken for the next
                # request's: the stuck child is replaced.
                actions.append(Log(f"WARNING: {self.name} #{child.index} did not answer within "
                                   f"{self.timeout:g} seconds: restarting it"))
                child.closing = True
                actions.append(Kill(child.index))
                actions += self._spawn(1)
        self._kick(actions)

    def _fail_queue(self, actions: list[Action], why: str) -> None:
        while self.queue:
            actions.append(Answer(self.queue.popleft().token, Reply(UNKNOWN, [("message", why)])))
