"""The helper programs of one configuration, running (the Twisted side).

:class:`RunningHelpers` starts a :class:`~squidpy.helpers.manager.HelperManager`
per helper the configuration names — each ``auth_param`` scheme
(``basicauthenticator``, ``negotiateauthenticator`` ... as Squid names them in
cache_log), each ``external_acl_type``, the URL rewriter (``redirector``) and
the store-ID helper (``store_id``) — and carries out the exchanges' helper
commands with them.  Its :attr:`state` is the pure
:class:`~squidpy.helpers.state.HelperState` exchanges read.  A reconfigure
starts a new set and stops the old one (its children finish what they hold).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from twisted.internet import defer

from squidpy.helpers.manager import HelperAnswer, HelperManager
from squidpy.helpers.protocol import UNKNOWN, Reply
from squidpy.helpers.state import EXTERNAL, STORE_ID, URL_REWRITE, HelperState, external_helper

if TYPE_CHECKING:
    from squidpy.config.loader import Config


class RunningHelpers:
    state: HelperState      # set last in __init__: a new set reads the previous one's

    def __init__(self, config: Config, reactor, on_fatal=None, previous: "RunningHelpers | None" = None, log=None):
        self.managers: dict[str, HelperManager] = {}

        def add(helper: str, name: str, program, children, **options) -> None:
            self.managers[helper] = HelperManager(name, program, children, reactor, on_fatal=on_fatal, log=log,
                                                  **options)

        for scheme in config.auth_param.active():
            add(scheme.scheme, f"{scheme.scheme}authenticator", scheme.program, scheme.children,
                stateful=scheme.stateful)
        for name, definition in config.external_acl_type.items():
            add(external_helper(name), name, definition.program, definition.children)
        if config.url_rewrite_program is not None:
            children = config.url_rewrite_children
            if config.url_rewrite_bypass:
                children = children.bypassing()
            timeout = config.url_rewrite_timeout
            add(URL_REWRITE, "redirector", config.url_rewrite_program, children,
                timeout=timeout.seconds if timeout is not None else None,
                retry_timed_out=timeout is not None and timeout.action == "retry",
                timed_out_reply=timeout.response if timeout is not None else None)
        if config.store_id_program is not None:
            children = config.store_id_children
            if config.store_id_bypass:
                children = children.bypassing()
            add(STORE_ID, "store_id", config.store_id_program, children)
        self.state = HelperState(config, time.time, self.will_overload,
                                 previous.state if previous is not None else None)

    def start(self) -> None:
        for manager in self.managers.values():
            manager.start()

    def stop(self, grace: float = 5.0) -> defer.Deferred:
        """Close the children's input (they finish what they hold); kill those still
        running after ``grace`` seconds.  Fires when all have ended."""
        return defer.DeferredList([m.stop(grace) for m in self.managers.values()])

    def ask(self, helper: str, line: str, reservation: int | None = None) -> defer.Deferred:
        """The helper's answer, always (a helper this configuration does not have —
        after a reconfigure removed it — answers ``Unknown``)."""
        manager = self.managers.get(helper)
        if manager is None:
            return defer.succeed(HelperAnswer(Reply(UNKNOWN, [("message", f"no {helper} helper")]), None))
        return manager.ask(line, reservation)

    def will_overload(self, helper: str) -> bool:
        manager = self.managers.get(helper)
        return manager is not None and manager.will_overload()

    def reserve(self, helper: str, child: int) -> None:
        manager = self.managers.get(helper)
        if manager is not None:
            manager.reserve(child)

    def release(self, helper: str, child: int) -> None:
        manager = self.managers.get(helper)
        if manager is not None:
            manager.release(child)

    def refresh_external(self, type_name: str, line: str) -> None:
        """A grace-period refresh: the answer replaces the cached one."""
        state = self.state
        self.ask(EXTERNAL + type_name, line).addCallback(
            lambda answer: state.refreshed(type_name, line, answer.reply.result, answer.reply.notes))

    def figures(self) -> dict:
        """For the cache manager: per helper, children running and busy, queue, counters."""
        out = {}
        for helper, manager in self.managers.items():
            pool = manager.pool
            out[manager.name] = {"running": pool.running(), "busy": pool.busy(), "queued": pool.queued(),
                                 **pool.stats}
        return out
