"""URL rewriting with a real rewriter: squidGuard (Debian package squidguard)
with a small category blocklist the test builds, driven through the helper
manager; its answers read by squidpy.helpers.rewrite as Squid reads them."""

from __future__ import annotations

import shutil

import pytest

from squidpy.helpers.protocol import Reply
from squidpy.helpers.rewrite import REDIRECT, REWRITE, UNCHANGED, url_rewrite_decision
from tests.test_helper_processes import run


def squidguard_config(tmp_path, redirect: str) -> str:
    db = tmp_path / "db"
    (db / "adult").mkdir(parents=True)
    (db / "adult" / "domains").write_text("badsite.test\nworse.test\n")
    (db / "adult" / "urls").write_text("mixed.test/adult\n")
    conf = tmp_path / "squidGuard.conf"
    conf.write_text(f"dbhome {db}\nlogdir {tmp_path}\n"
                    "dest adult {\n    domainlist adult/domains\n    urllist adult/urls\n}\n"
                    "acl {\n    default {\n        pass !adult all\n"
                    f"        redirect {redirect}\n    }}\n}}\n")
    return str(conf)


@pytest.fixture
def squidguard():
    path = shutil.which("squidGuard")
    assert path, "squidGuard (Debian package squidguard) is missing: .ci/run installs it"
    return path


def decisions(answers):
    return [url_rewrite_decision(Reply(a["result"], [tuple(n) for n in a["notes"]])) for a in answers]


REQUESTS = ["http://badsite.test/page 127.0.0.1/- alice GET myip=127.0.0.1 myport=3128",
            "http://www.worse.test/ 127.0.0.1/- - GET myip=127.0.0.1 myport=3128",
            "http://mixed.test/adult/x 127.0.0.1/- - GET myip=127.0.0.1 myport=3128",
            "http://mixed.test/news 127.0.0.1/- - GET myip=127.0.0.1 myport=3128",
            "http://good.test/ 127.0.0.1/- - GET myip=127.0.0.1 myport=3128"]


def test_squidguard_rewrites_blocked_urls(tmp_path, squidguard):
    conf = squidguard_config(tmp_path, "http://block.test/blocked?url=%u")
    answers, report = run({"command": [squidguard, "-c", conf], "children": "2 startup=1",
                           "requests": [{"line": r} for r in REQUESTS]})
    got = decisions(answers)
    assert [d.kind for d in got] == [REWRITE, REWRITE, REWRITE, UNCHANGED, UNCHANGED]
    assert got[0].url == "http://block.test/blocked?url=http://badsite.test/page"
    assert report["pids_alive"] == 0


def test_squidguard_redirects_with_status(tmp_path, squidguard):
    conf = squidguard_config(tmp_path, "302:http://block.test/blocked")
    answers, _ = run({"command": [squidguard, "-c", conf], "children": "1",
                      "requests": [{"line": r} for r in REQUESTS[:1] + REQUESTS[-1:]]})
    got = decisions(answers)
    assert (got[0].kind, got[0].status, got[0].url) == (REDIRECT, 302, "http://block.test/blocked")
    assert got[1].kind == UNCHANGED
