"""The Grafana dashboard and the alert rules of docs/monitoring.md: valid, querying only
metrics /metrics has, checked by promtool, and run by a real Prometheus scraping a real
squidpy on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from squidpy.mgr.prometheus import metric_names
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "etc" / "grafana" / "squidpy-dashboard.json"
ALERTS = ROOT / "etc" / "prometheus" / "squidpy-alerts.yml"
ALERT_TESTS = ROOT / "tests" / "promtool" / "squidpy-alerts-test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMETHEUS_OWN = {"up"}        # what Prometheus itself records about a scrape


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return exprs


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables given values, as Grafana sends it."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(squidpy_[a-z0-9_]+|up)\b", expr))


def test_the_dashboard_is_valid_json_querying_only_metrics_squidpy_has():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "squidpy" and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    known = metric_names() | PROMETHEUS_OWN
    exprs = dashboard_exprs()
    assert len(exprs) > 30
    for expr in exprs:
        used = metrics_in(expr)
        assert used, expr
        assert used <= known, f"{expr}: {used - known} is not a metric /metrics has"
    families = {name.removesuffix("_total").removesuffix("_bucket") for name in known if name.startswith("squidpy_")}
    shown = {name.removesuffix("_total").removesuffix("_bucket") for e in exprs for name in metrics_in(e)}
    assert families - shown - {"squidpy_info", "squidpy_request_duration_seconds_sum",
                                "squidpy_request_duration_seconds_count", "squidpy_request_duration_seconds",
                                "squidpy_dns_lookup_duration_seconds_sum", "squidpy_dns_lookup_duration_seconds_count",
                                "squidpy_dns_lookup_duration_seconds", "squidpy_ipcache_entries",
                                "squidpy_fqdncache_entries", "squidpy_helper_requests", "squidpy_helper_restarts",
                                "squidpy_delay_pool_pauses"} == set()


def test_the_alert_rules_parse_and_query_only_metrics_squidpy_has():
    out = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 9 rules found" in out.stdout
    known = metric_names() | PROMETHEUS_OWN
    exprs = re.findall(r"^\s+expr: (.*(?:\n\s{10,}\S.*)*)", ALERTS.read_text(), re.M)
    assert len(exprs) == 9
    for expr in exprs:
        assert metrics_in(expr) and metrics_in(expr) <= known, expr


def test_the_alerts_fire_when_they_should(tmp_path):
    """promtool's unit tests for rules: synthetic series in, the expected alerts out."""
    out = subprocess.run([PROMTOOL, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_dashboard_expression_is_promql(tmp_path):
    """promtool parses each expression (Grafana's variables filled in) as a recording rule."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs()):
        rules += [f"      - record: squidpy_dashboard_{i}", f"        expr: {json.dumps(concrete(expr))}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(rules) + "\n")
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_metrics_pass_promtools_lint(make_proxy, origin):
    proxy = make_proxy()
    urllib.request.urlopen(urllib.request.Request(origin.url("/size/10")), timeout=5).read()
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as reply:
        text = reply.read()
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture
def prometheus_scraping(tmp_path, origin):
    """A real Prometheus (Debian's) scraping a real squidpy's metrics_port every second."""
    proxy = ProxyProcess(tmp_path / "proxy", "acl local src 127.0.0.0/8\nhttp_access allow localhost manager\n"
                         "http_access deny manager\nhttp_access allow local\nhttp_access deny all\n"
                         "metrics_port 127.0.0.1:0\n")
    metrics = int(wait_for(lambda: re.search(r"Accepting metrics connections at 127\.0\.0\.1:(\d+)",
                                             proxy.read_cache_log()), 10).group(1))
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      f"rule_files:\n  - {ALERTS}\n"
                      "scrape_configs:\n  - job_name: squidpy\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{metrics}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    server = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{web}", "--web.enable-lifecycle"],
                              stdout=log, stderr=log)
    try:
        for i in range(20):       # traffic: misses, hits and a denial, over a few scrapes
            path = "/obj/prom-hit?cc=max-age%3D600&size=300" if i % 2 else f"/size/{200 + i}"
            subprocess.run(["curl", "-s", "-o", "/dev/null", "-x", proxy.url, origin.url(path)], timeout=10)
        yield proxy, web
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()
        proxy.stop()


def test_a_real_prometheus_runs_every_dashboard_query(prometheus_scraping):
    proxy, web = prometheus_scraping

    def scraped_twice():
        try:
            result = query(web, 'count_over_time(up{job="squidpy"}[1m])')["data"]["result"]
        except OSError:
            return False
        return result and float(result[0]["value"][1]) >= 3
    assert wait_for(scraped_twice, 30), "Prometheus did not scrape squidpy"
    assert query(web, 'up{job="squidpy"}')["data"]["result"][0]["value"][1] == "1"
    empty = []
    for expr in dashboard_exprs():
        answer = query(web, concrete(expr))
        assert answer["status"] == "success", (expr, answer)
        if not answer["data"]["result"]:
            empty.append(expr)
    # only what needs helpers or delay pools running may have nothing to show here
    assert all("helper" in e or "delay_pool" in e or "denied" in e or "changes(" in e for e in empty), empty
    requests = query(web, 'sum(squidpy_requests_total{job="squidpy"})')["data"]["result"]
    assert float(requests[0]["value"][1]) >= 20
    hits = query(web, 'sum(squidpy_requests_total{result="TCP_MEM_HIT"})')["data"]["result"]
    assert float(hits[0]["value"][1]) >= 9
    assert proxy.log_line("/metrics") is not None
