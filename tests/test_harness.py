"""The test harness itself: what the other tests rely on to be fast and parallel-safe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from email.utils import parsedate_to_datetime

import pytest

from tests.conftest import LOCKS, exclusive
from tests.proxyproc import wait_for
from tests.squidproc import SquidProcess


def test_aged_dates_only_the_first_reply(origin):
    """/obj/NAME?aged=N: the first reply is N seconds old, the next ones are current."""
    url = origin.url(f"/obj/{uuid.uuid4().hex[:8]}?cc=max-age%3D60&aged=100")
    dates = []
    for _ in range(2):
        with urllib.request.urlopen(url, timeout=10) as r:
            dates.append(parsedate_to_datetime(r.headers["Date"]).timestamp())
    now = time.time()
    assert 95 <= now - dates[0] <= 130 and now - dates[1] <= 30


def test_exclusive_lets_one_holder_in_at_a_time(tmp_path):
    """A machine-wide lock: another process holds it, so this one waits (here: gives up)."""
    name = f"harness-{uuid.uuid4().hex[:8]}"
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); from tests.conftest import exclusive\n"
         "with exclusive(sys.argv[2]):\n"
         "    open(sys.argv[3], 'w').close()\n"
         "    sys.stdin.read()\n",
         os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name, str(ready)],
        stdin=subprocess.PIPE)
    try:
        assert wait_for(ready.exists, 30)
        with pytest.raises(TimeoutError):
            with exclusive(name, timeout=0.3):
                pass
    finally:
        holder.communicate(b"", timeout=30)       # its stdin closes: it lets go and exits
    with exclusive(name, timeout=10):
        pass
    os.unlink(os.path.join(LOCKS, f"{name}.lock"))


def test_squid_gets_a_directory_of_its_own_and_it_goes_away(tmp_path):
    """Squid runs as 'proxy' when started as root: its directory is one that user may
    enter, not pytest's tmp_path; stop() keeps the configuration and logs in tmp_path."""
    squid = SquidProcess(tmp_path / "squid", "http_access deny all\n", start=False)
    here = squid.dir
    assert str(here.parent) == "/tmp" and os.stat(here).st_mode & 0o005 == 0o005
    assert squid.config_path.read_text().startswith("http_access deny all\n")
    squid.stop()
    assert not here.exists()
    assert (tmp_path / "squid" / "squid.conf").exists() and squid.config_path == tmp_path / "squid" / "squid.conf"
