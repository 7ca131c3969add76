"""Runs squidpy's HelperManager with real helper processes in a reactor of its own.

Tests start it as a subprocess (the helpers and the reactor are real; nothing is
mocked) with a JSON scenario on argv[1] and read JSON lines back:
  {"command": [...], "children": "N opts...", "timeout": S|null, "stateful": bool,
   "requests": [{"line": "...", "at": SECONDS, "reservation_from": INDEX|null}],
   "deadline": SECONDS, "stop": true}
Output lines: {"answer": i, "result": ..., "notes": [...], "child": n, "t": elapsed}
then {"log": [...], "running_at_end": n, "pids_alive": n}.
"""

import json
import os
import sys
import time

from twisted.internet import reactor

from squidpy.helpers.manager import HelperManager
from squidpy.helpers.protocol import ChildConfig


def main() -> None:
    scenario = json.loads(sys.argv[1])
    logs: list[str] = []
    fatal: list[str] = []
    manager = HelperManager(
        "test", scenario["command"], ChildConfig.parse(scenario.get("children", "1").split()), reactor,
        stateful=scenario.get("stateful", False), timeout=scenario.get("timeout"),
        retry_timed_out=scenario.get("retry_timed_out", False),
        timed_out_reply=scenario.get("timed_out_reply"), log=logs.append, on_fatal=fatal.append)
    started = time.monotonic()
    answers: dict[int, object] = {}
    requests = scenario["requests"]
    pids: list[int] = []

    def send(i: int, spec: dict) -> None:
        reservation = None
        if spec.get("reservation_from") is not None:
            reservation = answers[spec["reservation_from"]].child
        d = manager.ask(spec["line"], reservation)

        def done(answer):
            answers[i] = answer
            print(json.dumps({"answer": i, "result": answer.reply.result, "notes": answer.reply.notes,
                              "child": answer.child, "t": round(time.monotonic() - started, 3)}), flush=True)
            if len(answers) == len(requests):
                reactor.callLater(scenario.get("linger", 0), finish)
        d.addCallback(done)

    finished = []

    def finish() -> None:
        if finished:
            return
        finished.append(True)
        pids.extend(t.pid for t in manager.transports.values() if t.pid)
        running = manager.pool.running()
        d = manager.stop(grace=2.0)

        def report(_):
            alive = 0
            for pid in pids:
                try:
                    os.kill(pid, 0)
                    alive += 1
                except OSError:
                    pass
            print(json.dumps({"log": logs, "fatal": fatal, "running_at_end": running, "pids_alive": alive,
                              "stats": manager.pool.stats}), flush=True)
            reactor.stop()
        d.addCallback(report)

    manager.start()
    for i, spec in enumerate(requests):
        reactor.callLater(spec.get("at", 0), send, i, spec)
    if not requests:
        reactor.callLater(scenario.get("linger", 0.5), finish)

    def give_up() -> None:
        print(json.dumps({"deadline": True, "log": logs, "answered": sorted(answers)}), flush=True)
        finish()
    reactor.callLater(scenario.get("deadline", 10), give_up)
    reactor.run()


if __name__ == "__main__":
    main()
