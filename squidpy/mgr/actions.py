"""The cache manager's actions, in Squid's menu order, with Squid's descriptions.

``password_required``: Squid's ``pw_req_flag`` (such an action is hidden until
``cachemgr_passwd`` names it).  ``per_kid``: under ``workers N`` Squid shows this
page once per kid, each wrapped in ``by kidN { ... } by kidN``; the others are
summed over the kids.  ``needs``: what each process's report must carry for the
page (besides the basics every report has), so a report costs only what the
page shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    password_required: bool = False
    per_kid: bool = False
    needs: frozenset[str] = frozenset()


def _action(name: str, description: str, password_required: bool = False, per_kid: bool = False,
            needs: Iterable[str] = ()) -> tuple[str, Action]:
    return name, Action(name, description, password_required, per_kid, frozenset(needs))


ACTIONS: dict[str, Action] = dict((
    _action("index", "Cache Manager Interface"),
    _action("menu", "Cache Manager Menu"),
    _action("pconn", "Persistent Connection Utilization Histograms", per_kid=True, needs=("pconn",)),
    _action("config", "Current Squid Configuration", password_required=True, per_kid=True, needs=("config",)),
    _action("client_list", "Cache Client List", per_kid=True, needs=("clients",)),
    _action("ipcache", "IP Cache Stats and Contents", per_kid=True, needs=("ipcache",)),
    _action("fqdncache", "FQDN Cache Stats and Contents", per_kid=True, needs=("fqdncache",)),
    _action("info", "General Runtime Information", needs=("counters", "samples", "gauges")),
    _action("filedescriptors", "Process Filedescriptor Allocation", per_kid=True, needs=("fds",)),
    _action("objects", "All Cache Objects", per_kid=True, needs=("objects",)),
    _action("counters", "Traffic and Resource Counters", needs=("counters",)),
    _action("5min", "5 Minute Average of Counters", needs=("counters", "samples")),
    _action("60min", "60 Minute Average of Counters", needs=("counters", "samples")),
    _action("utilization", "Cache Utilization", per_kid=True, needs=("counters", "samples")),
    _action("active_requests", "Client-side Active Requests", per_kid=True, needs=("active",)),
    _action("storedir", "Store Directory Stats", per_kid=True, needs=("gauges",)),
    _action("delay", "Delay Pool Levels", per_kid=True, needs=("delay",)),
))

#: actions Squid 5 has and squidpy does not: cachemgr_passwd may name them (configurations
#: written for Squid do) without a warning; asking for one is answered 404
SQUID_ONLY = frozenset({
    "offline_toggle", "shutdown", "reconfigure", "rotate", "mem", "diskd", "squidaio_counts",
    "comm_epoll_incoming", "idns", "redirector", "store_id", "external_acl", "http_headers",
    "service_times", "vm_objects", "io", "peer_select", "digest_stats", "histograms", "username_cache",
    "openfd_objects", "store_digest", "store_log_tags", "store_io", "store_check_cachable_stats", "refresh",
    "forward", "cbdata", "sbuf", "events", "netdb", "asndb", "carp", "userhash", "sourcehash", "server_list",
})

#: /metrics is not a manager action, but is gathered the same way
METRICS_NEEDS = frozenset({"counters", "samples", "gauges", "helpers", "delay"})


def needs_of(action: str) -> frozenset[str]:
    """What a report for ``action`` ('metrics' for /metrics) must carry."""
    if action == "metrics":
        return METRICS_NEEDS
    return ACTIONS[action].needs
