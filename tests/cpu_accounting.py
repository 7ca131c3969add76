"""Where the suite's time goes, measured in CPU seconds rather than wall-clock seconds.

    python -m pytest -q -p tests.cpu_accounting

adds a table to the end of the run: for each test module, the CPU time its tests used in
the worker itself and in the processes it started and waited for (proxies, Squid, curl,
helpers), and how many squidpy and Squid processes it started.  On this project's
machines several suites run at once, so a run's wall-clock time says more about the
neighbours than about the suite; CPU seconds barely change with the load, and on two
cores the suite cannot finish in less than half of their total.  ``SQUIDPY_CPU_TOP=N``
sets how many modules the table lists (30).

A process counts once it has been waited for: a module fixture's proxy counts for the
test during whose teardown it stopped, a daemon nobody waits for (slapd) not at all.
A proxy forked by the worker's fork server (tests/proxyfork.py) counts when its status
is collected, the fork server's own CPU (its imports) as it goes.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from collections import defaultdict

import pytest

from tests.proxyfork import forked_cpu
from tests.proxyproc import ProxyProcess
from tests.squidproc import SquidProcess

_DIR_VARIABLE = "SQUIDPY_CPU_ACCOUNTING_DIR"


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, waited.ru_utime + waited.ru_stime + forked_cpu()


def _starts() -> tuple[int, int]:
    return ProxyProcess.starts, SquidProcess.starts


class _Recorder:
    def __init__(self, directory: str):
        name = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.out = open(os.path.join(directory, f"{name}.jsonl"), "a")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        wall, (own, waited), (proxies, squids) = time.monotonic(), _cpu(), _starts()
        yield
        wall2, (own2, waited2), (proxies2, squids2) = time.monotonic(), _cpu(), _starts()
        self.out.write(json.dumps({"id": item.nodeid, "wall": wall2 - wall, "own": own2 - own,
                                   "waited": waited2 - waited, "proxies": proxies2 - proxies,
                                   "squids": squids2 - squids}) + "\n")
        self.out.flush()


def pytest_configure(config):
    directory = os.environ.get(_DIR_VARIABLE)
    if directory is None:               # the controller (or a run without workers) makes it
        directory = tempfile.mkdtemp(prefix="squidpy-cpu-")
        os.environ[_DIR_VARIABLE] = directory       # inherited by the xdist workers
        config._cpu_accounting_dir = directory
    if not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no" \
            and config.getoption("numprocesses", None):
        return                          # the controller runs no tests itself
    config.pluginmanager.register(_Recorder(directory), "cpu_accounting_recorder")


def pytest_terminal_summary(terminalreporter, config):
    directory = getattr(config, "_cpu_accounting_dir", None)
    if directory is None:
        return
    modules: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0, 0, 0])
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            for line in f:
                row = json.loads(line)
                m = modules[row["id"].split("::")[0]]
                m[0] += row["wall"]
                m[1] += row["own"]
                m[2] += row["waited"]
                m[3] += 1
                m[4] += row["proxies"]
                m[5] += row["squids"]
    shutil.rmtree(directory, ignore_errors=True)
    if not modules:
        return
    total = [sum(m[i] for m in modules.values()) for i in range(6)]
    write = terminalreporter.write_line
    terminalreporter.section("CPU seconds by test module (tests/cpu_accounting.py)")
    write(f"all {int(total[3])} tests: {total[1] + total[2]:.0f} s of CPU ({total[1]:.0f} in the workers, "
          f"{total[2]:.0f} in the processes they waited for), {int(total[4])} squidpy and "
          f"{int(total[5])} Squid processes started; test wall-clock times add up to {total[0]:.0f} s")
    write(f"{'cpu':>7} {'own':>6} {'waited':>6} {'wall':>7} {'tests':>5} {'squidpy':>7} {'squid':>5}  module")
    top = int(os.environ.get("SQUIDPY_CPU_TOP", "30"))
    for module, m in sorted(modules.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
        write(f"{m[1] + m[2]:7.1f} {m[1]:6.1f} {m[2]:6.1f} {m[0]:7.1f} {int(m[3]):5d} {int(m[4]):7d} {int(m[5]):5d}  {module}")
