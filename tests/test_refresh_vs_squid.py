"""Differential: each refresh_pattern option and max_stale through Squid 5.7 and squidpy,
with the same configuration and requests; both must log the same result and hierarchy
codes.  Ages come from the origin's Date and Last-Modified (``date=``, ``lm=``), never
from sleeping."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from email.utils import formatdate
from pathlib import Path

import pytest

from tests.proxyproc import ProxyProcess
from tests.squidproc import SquidProcess
from tests.test_cache_vs_squid import DIRECT, POLICY, get, logged

HIT = ("TCP_MEM_HIT/200", "HIER_NONE/-")
MISS = ("TCP_MISS/200", DIRECT)

CONFIG = POLICY + """cache_mem 8 MB
max_stale 1 hour
refresh_pattern /oe/ 10 20% 4320 override-expire
refresh_pattern /ol/ 10 10% 4320 override-lastmod
refresh_pattern /min10/ 10 10% 4320
refresh_pattern /rim/ 0 20% 4320 reload-into-ims
refresh_pattern /ir/ 0 20% 4320 ignore-reload
refresh_pattern /ins/ 0 20% 4320 ignore-no-store
refresh_pattern /ip/ 0 20% 4320 ignore-private
refresh_pattern /rims/ 0 20% 4320 refresh-ims
refresh_pattern /ms/ 0 20% 4320 max-stale=0
refresh_pattern /ss/ 0 20% 4320 store-stale
refresh_pattern . 0 20% 4320
"""

NO_CACHE = "Cache-Control: no-cache\r\n"
# later than the objects' Last-Modified (lm=1000: 1000 s before they are served)
IMS = f"If-Modified-Since: {formatdate(time.time(), usegmt=True)}\r\n"

# (path, query, [request headers ...], [(result/status, hierarchy) ...])
CASES = [
    # override-expire: expired 60 s after its Date, 120 s ago, but younger than MIN (10 min)
    ("oe", "cc=max-age%3D60&date=120", ["", ""], [MISS, HIT]),
    ("plain", "cc=max-age%3D60&date=120", ["", ""], [MISS, ("TCP_REFRESH_MODIFIED/200", DIRECT)]),
    # override-lastmod: the LM-factor gives 10% of 700 s; it is 300 s old, MIN is 10 min
    ("ol", "lm=1000&date=300", ["", ""], [MISS, HIT]),
    # the heuristic is not raised to MIN: stale after 70 s although MIN is 10 min
    ("min10", "lm=1000&date=300", ["", ""], [MISS, ("TCP_REFRESH_UNMODIFIED/200", DIRECT)]),
    # reload-into-ims: a reload revalidates with the stored strong ETag
    ("rim", "cc=max-age%3D600&etag=%22v%22", ["", NO_CACHE], [MISS, ("TCP_REFRESH_UNMODIFIED/200", DIRECT)]),
    # ignore-reload: no-cache, Pragma: no-cache and max-age=0 are ignored
    ("ir", "cc=max-age%3D600", ["", NO_CACHE, "Pragma: no-cache\r\n", "Cache-Control: max-age=0\r\n"],
     [MISS, HIT, HIT, HIT]),
    # with those options in the configuration, another URL's reload is looked up and fetched anew
    ("plain", "cc=max-age%3D600", ["", NO_CACHE, ""], [MISS, ("TCP_CLIENT_REFRESH_MISS/200", DIRECT), HIT]),
    # ignore-no-store
    ("ins", "cc=max-age%3D600%2C+no-store", ["", ""], [MISS, HIT]),
    ("plain", "cc=max-age%3D600%2C+no-store", ["", ""], [MISS, MISS]),
    # ignore-private: stored, and revalidated on every hit
    ("ip", "cc=max-age%3D600%2C+private&etag=%22v%22", ["", ""], [MISS, ("TCP_REFRESH_UNMODIFIED/200", DIRECT)]),
    ("plain", "cc=max-age%3D600%2C+private&etag=%22v%22", ["", ""], [MISS, MISS]),
    # refresh-ims: a client If-Modified-Since asks the origin even for a fresh reply
    ("rims", "cc=max-age%3D600&lm=1000", ["", IMS], [MISS, ("TCP_REFRESH_UNMODIFIED/304", DIRECT)]),
    ("plain", "cc=max-age%3D600&lm=1000", ["", IMS], [MISS, ("TCP_IMS_HIT/304", "HIER_NONE/-")]),
    # a 5xx while revalidating: the stale reply within max_stale (1 hour here), else the error
    ("plain", "cc=max-age%3D1&etag=%22v%22&date=100&cond=500", ["", ""],
     [MISS, ("TCP_REFRESH_FAIL_OLD/200", DIRECT)]),
    ("ms", "cc=max-age%3D1&etag=%22v%22&date=100&cond=500", ["", ""],
     [MISS, ("TCP_REFRESH_FAIL_ERR/500", DIRECT)]),
    ("plain", "cc=max-age%3D1&etag=%22v%22&date=7200&cond=500", ["", ""],
     [MISS, ("TCP_REFRESH_FAIL_ERR/500", DIRECT)]),
    # a client max-age=0 revalidates a fresh reply; the origin's error keeps the stored one
    ("plain", "cc=max-age%3D600&etag=%22v%22&cond=503", ["", "Cache-Control: max-age=0\r\n"],
     [MISS, ("TCP_REFRESH_FAIL_OLD/200", DIRECT)]),
    # store-stale and minimum_expiry_time: an empty reply stale within 60 s
    ("ss", "cc=max-age%3D30&empty=1", ["", ""], [MISS, HIT]),
    ("plain", "cc=max-age%3D30&empty=1", ["", ""], [MISS, MISS]),
]


@pytest.fixture
def both(tmp_path, squid_stops):
    squid_dir = tempfile.mkdtemp(prefix="squid-", dir="/tmp")
    os.chmod(squid_dir, 0o755)
    squid = SquidProcess(Path(squid_dir), CONFIG)
    squidpy = ProxyProcess(tmp_path / "squidpy", CONFIG)
    yield {"squid": squid, "squidpy": squidpy}
    squid_stops(squid, then=lambda: shutil.rmtree(squid_dir, ignore_errors=True))     # in the background
    squidpy.stop()


def test_refresh_pattern_options_match_squid(both, origin):
    seen = {name: [] for name in both}
    for name, proxy in both.items():
        for path, query, requests, _ in CASES:
            tag = uuid.uuid4().hex[:8]
            target = origin.url(f"/obj/{path}/{tag}?{query}")
            for headers in requests:
                get(proxy.port, target, headers)
            seen[name].append(logged(proxy, tag, len(requests)))
    expected = [codes for _, _, _, codes in CASES]
    for n, case in enumerate(CASES):
        assert seen["squidpy"][n] == seen["squid"][n], (case, seen["squid"][n], seen["squidpy"][n])
    assert seen["squid"] == expected
