"""End to end: `squidpy logs tail` and `squidpy logs report` as an admin runs them,
following a real proxy's log across rotation, and the HTML report in headless Chromium."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import pytest

from tests.conftest import LOCAL_POLICY
from tests.logdata import write_crafted
from tests.proxyproc import wait_for

ENV = dict(os.environ, TZ="UTC")


def squidpy(*args, timeout=60, env=ENV):
    return subprocess.run([sys.executable, "-m", "squidpy", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def crafted(tmp_path):
    path = tmp_path / "access.log"
    write_crafted(path)
    return path


# ------------------------------------------------------------ tail

def test_tail_shows_the_last_lines_with_readable_times(crafted):
    out = squidpy("logs", "tail", "-n", "3", str(crafted))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "garbage line here",
        "2026-11-22 12:00:03.000      0 10.0.0.1 TCP_DENIED/403 3900 GET http://ads.facebook.com/p alice HIER_NONE/- text/html",
        "2026-11-22 12:00:04.000     60 192.168.1.10 TCP_MISS_ABORTED/200 100 GET http://www.example.com/big - "
        "HIER_DIRECT/93.184.216.34 application/octet-stream",
    ]


@pytest.mark.parametrize("args,urls", [
    (["--denied"], ["http://www.facebook.com/", "www.facebook.com:443", "http://ads.facebook.com/p"]),
    (["--status", "4xx", "--user", "bob"], ["www.facebook.com:443", "http://slow.test/x"]),
    (["--domain", "example.org", "--method", "CONNECT"], ["mail.example.org:443", "mail.example.org:443"]),
    (["--client", "10.0.0.4"], ["http://www.example.com/a", "http://down.test/"]),
    (["--result", "TCP_TUNNEL", "--since", "2026-11-22 11:00:08"], ["mail.example.org:443", "chat.example.net:443"]),
    (["--grep", "slow", "--until", "2026-11-22 11:00:06"], ["http://slow.test/x"]),
])
def test_tail_filters(crafted, args, urls):
    out = squidpy("logs", "tail", "-n", "100", *args, str(crafted))
    assert out.returncode == 0, out.stderr
    assert [line.split()[7] for line in out.stdout.splitlines()] == urls


def test_tail_json(crafted):
    out = squidpy("logs", "tail", "--json", "-n", "2", "--denied", str(crafted))
    objects = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["url"] for o in objects] == ["www.facebook.com:443", "http://ads.facebook.com/p"]
    first = objects[0]
    assert first["client"] == "10.0.0.3" and first["status"] == 403 and first["denied"] is True
    assert first["domain"] == "www.facebook.com" and first["user"] == "bob" and first["time"] == 1795341650.0
    assert first["iso_time"] == "2026-11-22T10:00:50.000+0000"


def test_tail_colours_only_when_asked_or_on_a_terminal(crafted):
    plain = squidpy("logs", "tail", "-n", "100", str(crafted))
    assert "\x1b[" not in plain.stdout
    coloured = squidpy("logs", "tail", "-n", "100", "--color", str(crafted)).stdout.splitlines()
    denied = [l for l in coloured if "TCP_DENIED" in l]
    assert len(denied) == 3 and all(l.startswith("\x1b[31m\x1b[1m") for l in denied)      # denied in bold red
    assert any(l.startswith("\x1b[32m") and "TCP_HIT/200" in l for l in coloured)       # hits in green
    assert any("\x1b[33m" in l and "TCP_MISS/404" in l for l in coloured)               # 4xx in yellow
    assert any("TCP_MISS/200 1000" in l and "\x1b[" not in l for l in coloured)          # a plain miss: no colour


def test_tail_reads_the_configured_access_log(crafted, tmp_path):
    conf = tmp_path / "squidpy.conf"
    conf.write_text(f"{LOCAL_POLICY}\naccess_log {crafted} squid\n")
    out = squidpy("logs", "-f", str(conf), "tail", "-n", "1")
    assert out.returncode == 0, out.stderr
    assert "http://www.example.com/big" in out.stdout


def test_tail_explains_bad_arguments(crafted, tmp_path):
    out = squidpy("logs", "tail", "--status", "6xx", str(crafted))
    assert out.returncode == 2 and "is not a status" in out.stderr
    out = squidpy("logs", "tail", "--since", "someday", str(crafted))
    assert out.returncode == 2 and "is not a time" in out.stderr
    out = squidpy("logs", "tail", "--client", "10.0.0.300", str(crafted))
    assert out.returncode == 2 and "is not an address" in out.stderr
    out = squidpy("logs", "tail", str(tmp_path / "missing.log"))
    assert out.returncode != 0 and "no such file" in out.stderr


def reading_at_end(pid: int, path) -> bool:
    """Process ``pid`` has ``path`` open and its position is the file's end (from
    /proc/PID/fdinfo): a line written now reaches a follower that started at the end."""
    size = os.path.getsize(path)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != str(path):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                return int(info.readline().split()[1]) == size      # "pos:\tOFFSET"
        except OSError:
            continue
    return False


def test_tail_follows_a_live_proxy_log_across_rotation(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "logfile_rotate 3\n")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))

    def get(path):
        with opener.open(origin.url(path), timeout=10) as r:
            return r.read()

    get("/size/1?before-tail")
    assert proxy.log_line("before-tail")
    tail = subprocess.Popen([sys.executable, "-m", "squidpy", "logs", "tail", "-F", "-n", "0", "--json",
                             str(proxy.access_log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in tail.stdout], daemon=True).start()

    def urls_until(needle, timeout=15):
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(json.loads(lines.get(timeout=0.5))["url"])
            except queue.Empty:
                continue
            if needle in seen[-1]:
                return seen
        return seen

    try:
        assert wait_for(lambda: reading_at_end(tail.pid, proxy.access_log), 15)
        for i in range(3):
            get(f"/size/1?one-{i}")
        assert [u.rsplit("?", 1)[1] for u in urls_until("one-2")] == ["one-0", "one-1", "one-2"]
        for round_ in range(2):
            get(f"/size/1?just-before-rotate-{round_}")
            proxy.signal(signal.SIGUSR1)
            assert wait_for(lambda: proxy.access_log.with_name(f"access.log.{round_}").exists(), 10)
            for i in range(3):
                get(f"/size/1?after-rotate-{round_}-{i}")
            seen = urls_until(f"after-rotate-{round_}-2")
            assert [u.rsplit("?", 1)[1] for u in seen] == [f"just-before-rotate-{round_}"] + [
                f"after-rotate-{round_}-{i}" for i in range(3)]
        # the file removed, then created again by squidpy
        proxy.access_log.unlink()
        get("/size/1?after-removal")
        assert [u.rsplit("?", 1)[1] for u in urls_until("after-removal")] == ["after-removal"]
    finally:
        tail.send_signal(signal.SIGINT)
        try:
            tail.wait(10)
        except subprocess.TimeoutExpired:
            tail.kill()
            tail.wait(5)
    assert "before-tail" not in "".join(lines.queue)


# ------------------------------------------------------------ report

def test_report_on_the_terminal(crafted):
    out = squidpy("logs", "report", "--top", "3", "--min-requests", "2", str(crafted))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"requests\s+14\n", text) and re.search(r"malformed lines\s+1\n", text)
    assert re.search(r"cache hit ratio, requests\s+37.5%", text)
    assert re.search(r"www.facebook.com\s+2\s+100.0%", text)            # denied by domain
    assert re.search(r"mail.example.org:443\s+2\s+68.4 KiB", text)      # CONNECT destinations
    assert "Reading" not in out.stderr                                   # no progress bar when not a terminal


def test_report_time_window_and_rotated_gzip_files(crafted, tmp_path):
    import gzip
    lines = crafted.read_text().splitlines()
    with gzip.open(tmp_path / "access.log.1.gz", "wt") as g:
        g.write("\n".join(lines[:7]) + "\n")
    crafted.write_text("\n".join(lines[7:]) + "\n")
    out = squidpy("logs", "report", str(crafted), str(tmp_path / "access.log.1.gz"))
    assert re.search(r"requests\s+14\n", out.stdout)
    out = squidpy("logs", "report", "--since", "2026-11-22 11:00", "--until", "2026-11-22 12:00",
                  str(tmp_path / "access.log.1.gz"), str(crafted))
    assert re.search(r"requests\s+5\n", out.stdout) and re.search(r"first request\s+2026-11-22 11:00:05", out.stdout)


def test_report_reads_the_configured_log_and_its_rotations(crafted, tmp_path):
    shutil.copy(crafted, tmp_path / "access.log.0")
    conf = tmp_path / "squidpy.conf"
    conf.write_text(f"{LOCAL_POLICY}\naccess_log {crafted}\n")
    out = squidpy("logs", "-f", str(conf), "report")
    assert out.returncode == 0, out.stderr
    assert re.search(r"requests\s+28\n", out.stdout) and re.search(r"malformed lines\s+2\n", out.stdout)


def test_report_progress_bar_on_a_terminal(crafted):
    """A real pseudo-terminal on stderr, as when an admin runs it by hand."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "squidpy", "logs", "report", str(crafted)],
                            stdout=subprocess.PIPE, stderr=slave, env=ENV)
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0 and b"Reading" in seen and b"100%" in seen
    assert b"requests" in out


# ------------------------------------------------------------ the HTML page in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1"]

PROBE = """
<script>
addEventListener('load', () => {
  const charts = [...document.querySelectorAll('svg')].map(s => {
    const r = s.getBoundingClientRect();
    return {id: s.closest('figure') ? s.closest('figure').id : '', w: r.width, h: r.height,
            marks: s.querySelectorAll('rect').length};
  });
  parent.postMessage(JSON.stringify({charts, scrollWidth: document.documentElement.scrollWidth,
                                     innerWidth: innerWidth, fontSize: getComputedStyle(document.body).fontSize}), '*');
});
</script>
"""

# The page in a phone-sized frame (headless Chromium's window is at least 500 px wide); the
# instrumented copy inside reports its layout to this page, which --dump-dom then prints.
PHONE = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="probed.html" style="width:390px;height:844px;border:0"></iframe>
<script>addEventListener('message', e => {
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = e.data; document.body.appendChild(pre);
});</script></body></html>
"""


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


def png_pixels(path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes): width, height, rows of pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def count_colour(path, rgb: tuple[int, int, int]) -> int:
    width, bpp, rows = png_pixels(path)
    target = bytes(rgb)
    return sum(1 for row in rows for x in range(0, width * bpp, bpp) if row[x:x + 3] == target)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (the CI script installs it)")
def test_html_report_renders_its_charts_in_chromium_on_a_phone_and_a_desktop(crafted, tmp_path):
    page = tmp_path / "report.html"
    out = squidpy("logs", "report", "--html", str(page), "--min-requests", "1", str(crafted))
    assert out.returncode == 0, out.stderr
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.split("<body>")[0]
    # phone width: every chart laid out with a real size, nothing wider than the screen
    (tmp_path / "probed.html").write_text(html.replace("</body>", PROBE + "</body>"))
    phone = tmp_path / "phone.html"
    phone.write_text(PHONE)
    dom = chromium(tmp_path, "--window-size=800,900", "--virtual-time-budget=5000", "--dump-dom", phone.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S).group(1).replace("&quot;", '"'))
    charts = probe["charts"]
    ids = {c["id"] for c in charts}
    assert {"chart-requests", "chart-bytes", "chart-hits-requests", "chart-hits-bytes", "chart-domains",
            "chart-status", "chart-denied"} <= ids
    assert all(c["w"] > 100 and c["h"] > 5 for c in charts), charts
    assert all(c["marks"] > 0 for c in charts)
    requests_chart = next(c for c in charts if c["id"] == "chart-requests")
    assert requests_chart["marks"] == 3 and requests_chart["h"] > 100      # three hours, three columns
    assert probe["scrollWidth"] <= probe["innerWidth"] == 390
    assert float(probe["fontSize"].rstrip("px")) >= 14
    # desktop screenshot: the bars are really painted in their colours
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert count_colour(shot, (0x25, 0x63, 0xeb)) > 2000       # request columns, domain and client bars
    assert count_colour(shot, (0x16, 0xa3, 0x4a)) > 500        # hit ratio and 2xx share
    assert count_colour(shot, (0xdc, 0x26, 0x26)) > 100        # denied bars
    # and it prints: a PDF comes out of the print path
    pdf = tmp_path / "report.pdf"
    result = chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())
    assert result.returncode == 0 and pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000


def test_who_tried_to_reach_facebook(crafted):
    """The auditing recipe of docs/logs.md, on the crafted log."""
    out = squidpy("logs", "report", "--domain", "facebook.com", "--since", "2026-11-22", str(crafted))
    assert re.search(r"requests\s+3\n", out.stdout) and re.search(r"denied requests\s+3 \(100.0%\)", out.stdout)
    clients = re.search(r"Top 10 clients\n(.*?)\n\n", out.stdout, re.S).group(1)
    assert [l.split()[0] for l in clients.splitlines()[2:]] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    users = re.search(r"Top 10 users\n(.*?)\n\n", out.stdout, re.S).group(1)
    assert [l.split()[0] for l in users.splitlines()[2:]] == ["alice", "bob"]
    piped = subprocess.run([sys.executable, "-m", "squidpy", "logs", "tail", "-", "-n", "1000", "--domain",
                            "facebook.com", "--json"], input=crafted.read_bytes(), capture_output=True, env=ENV,
                           timeout=60)
    assert [json.loads(l)["client"] for l in piped.stdout.splitlines()] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
