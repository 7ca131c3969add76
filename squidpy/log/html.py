"""The HTML page of `squidpy logs report --html` (pure: a Report in, one string out).

One self-contained file: inline CSS, charts drawn as inline SVG, no script,
no font, nothing fetched, so it opens offline and from a mail attachment.
Chart text is HTML (it reflows on a phone); the SVG draws only the marks,
and every chart has a text equivalent in its table.  It prints: sections do
not split across pages and the bars keep their colours.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from squidpy.log.report import SITES_PER_USER, Report, Section, human_bytes, local_time, percent, sections

BAR = "#2563eb"
HIT = "#16a34a"
MISS = "#cbd5e1"
DENIED = "#dc2626"
STATUS_COLOURS = {"2xx": "#16a34a", "3xx": "#0891b2", "4xx": "#d97706", "5xx": "#dc2626", "other": "#6b7280"}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827;
       margin: 0 auto; max-width: 64rem; padding: 1rem; background: #fff; }
h1 { font-size: 1.5rem; margin: .5rem 0; }
h2 { font-size: 1.15rem; margin: 2rem 0 .75rem; padding-bottom: .25rem; border-bottom: 1px solid #e5e7eb; }
p.meta { color: #4b5563; margin: 0 0 1rem; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(9.5rem, 1fr)); gap: .75rem; }
.card { border: 1px solid #e5e7eb; border-radius: .5rem; padding: .6rem .75rem; }
.card .k { font-size: .8rem; color: #4b5563; }
.card .v { font-size: 1.35rem; font-weight: 600; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #f1f5f9; text-align: right; white-space: nowrap; }
th { color: #374151; font-weight: 600; border-bottom-color: #d1d5db; }
th:first-child, td:first-child { text-align: left; white-space: normal; overflow-wrap: anywhere; }
td.line { text-align: left; white-space: normal; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .8rem; }
.note { color: #6b7280; font-size: .85rem; }
figure { margin: 0 0 1rem; }
figcaption { font-weight: 600; margin-bottom: .4rem; }
.bars .row { margin: .45rem 0; }
.bars .label { display: flex; justify-content: space-between; gap: 1rem; font-size: .9rem; }
.bars .label span:first-child { overflow-wrap: anywhere; }
.bars .label span:last-child { white-space: nowrap; color: #374151; }
svg { display: block; }
svg.bar { width: 100%; height: .7rem; }
svg.stack { width: 100%; height: 1.4rem; }
svg.columns { width: 100%; height: 11rem; }
.axis { display: flex; justify-content: space-between; gap: 1rem; font-size: .8rem; color: #4b5563; }
.legend { display: flex; flex-wrap: wrap; gap: .25rem 1rem; font-size: .85rem; margin: .3rem 0; }
.legend i { display: inline-block; width: .8rem; height: .8rem; border-radius: .15rem; margin-right: .3rem;
            vertical-align: -.1rem; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1.5rem; }
details { margin: .3rem 0; }
summary { cursor: pointer; overflow-wrap: anywhere; }
footer { margin-top: 2rem; color: #6b7280; font-size: .8rem; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  section, figure, .card { break-inside: avoid; }
  .table-wrap { overflow: visible; }
  h2 { break-after: avoid; }
}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _bar(fraction: float, colour: str, label: str) -> str:
    width = max(0.0, min(1.0, fraction)) * 1000
    return (f'<svg class="bar" viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" aria-label="{esc(label)}">'
            f'<rect x="0" y="0" width="1000" height="10" fill="#f1f5f9"/>'
            f'<rect x="0" y="0" width="{width:.1f}" height="10" fill="{colour}"/></svg>')


def bar_chart(title: str, items: list[tuple[str, float, str]], colour: str = BAR, ident: str = "") -> str:
    """Horizontal bars: (label, value, value as text); the longest bar is the largest value."""
    if not items:
        return f'<figure class="bars" id="{esc(ident)}"><figcaption>{esc(title)}</figcaption><p class="note">none</p></figure>'
    top = max(v for _, v, _ in items) or 1
    rows = []
    for label, value, shown in items:
        rows.append(f'<div class="row"><div class="label"><span>{esc(label)}</span><span>{esc(shown)}</span></div>'
                    f'{_bar(value / top, colour, f"{label}: {shown}")}</div>')
    return f'<figure class="bars chart" id="{esc(ident)}"><figcaption>{esc(title)}</figcaption>{"".join(rows)}</figure>'


def stacked(title: str, parts: list[tuple[str, float, str]], ident: str = "") -> str:
    """One 100% bar split into parts (label, value, colour), with a legend."""
    total = sum(v for _, v, _ in parts)
    rects, legend, x = [], [], 0.0
    for label, value, colour in parts:
        width = value / total * 1000 if total else 0
        if width:
            rects.append(f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="20" fill="{colour}"/>')
        x += width
        share = percent(value / total) if total else "-"
        legend.append(f'<span><i style="background:{colour}"></i>{esc(label)} {share}</span>')
    if not rects:
        rects.append('<rect x="0" y="0" width="1000" height="20" fill="#f1f5f9"/>')
    return (f'<figure class="chart" id="{esc(ident)}"><figcaption>{esc(title)}</figcaption>'
            f'<svg class="stack" viewBox="0 0 1000 20" preserveAspectRatio="none" role="img" aria-label="{esc(title)}">'
            f'{"".join(rects)}</svg><div class="legend">{"".join(legend)}</div></figure>')


def columns(title: str, buckets: list[tuple[str, float]], shown_max: str, colour: str = BAR, ident: str = "") -> str:
    """A column per bucket (traffic over time), axis labels in HTML below."""
    if not buckets:
        return f'<figure id="{esc(ident)}"><figcaption>{esc(title)}</figcaption><p class="note">no traffic</p></figure>'
    n = len(buckets)
    top = max(v for _, v in buckets) or 1
    width = 1000 / n
    gap = width * 0.15 if n < 200 else 0
    rects = []
    for i, (label, value) in enumerate(buckets):
        h = value / top * 200
        if h > 0:
            rects.append(f'<rect x="{i * width + gap / 2:.2f}" y="{200 - h:.2f}" width="{width - gap:.2f}" '
                         f'height="{h:.2f}" fill="{colour}"><title>{esc(label)}: {value:,.0f}</title></rect>')
    grid = "".join(f'<line x1="0" x2="1000" y1="{y}" y2="{y}" stroke="#e5e7eb" stroke-width="1" '
                   f'vector-effect="non-scaling-stroke"/>' for y in (0, 50, 100, 150, 200))
    return (f'<figure class="chart" id="{esc(ident)}"><figcaption>{esc(title)}</figcaption>'
            f'<div class="axis"><span>peak {esc(shown_max)}</span></div>'
            f'<svg class="columns" viewBox="0 0 1000 200" preserveAspectRatio="none" role="img" '
            f'aria-label="{esc(title)}">{grid}{"".join(rects)}</svg>'
            f'<div class="axis"><span>{esc(buckets[0][0])}</span><span>{esc(buckets[-1][0])}</span></div></figure>')


def _table(section: Section) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in section["headers"])
    line_table = section["id"] == "malformed"
    body = []
    for row in section["rows"]:
        cells = [f'<td class="line">{esc(c)}</td>' if line_table and i == 1 else f"<td>{esc(c)}</td>"
                 for i, c in enumerate(row)]
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(section["headers"])}" class="note">none</td></tr>')
    note = f'<p class="note">{esc(section["note"])}</p>' if section.get("note") else ""
    return (f'<div class="table-wrap"><table id="table-{esc(section["id"])}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>{note}')


def _user_details(report: Report, top: int) -> str:
    """Each top user's sites, folded (a <details> opens without any script)."""
    users = report.users.top(top)
    sites = report.sites_of([u for u, _ in users], SITES_PER_USER)
    out = ['<div class="users-detail">']
    for user, row in users:
        cells = "".join(f"<tr><td>{esc(d)}</td><td>{r[0]:,}</td><td>{esc(human_bytes(r[1]))}</td></tr>"
                        for d, r in sites.get(user, ()))
        out.append(f'<details><summary>{esc(user)}: {row[0]:,} requests, {esc(human_bytes(row[1]))}'
                   f'{f", {row[2]:,} denied" if row[2] else ""}</summary><div class="table-wrap"><table>'
                   f"<thead><tr><th>site</th><th>requests</th><th>bytes</th></tr></thead><tbody>{cells}</tbody>"
                   f"</table></div></details>")
    out.append("</div>")
    return "".join(out)


def _status_classes(report: Report) -> list[tuple[str, float, str]]:
    counts = {k: 0 for k in STATUS_COLOURS}
    for status, n in report.status.items():
        key = f"{status // 100}xx" if 200 <= status < 600 else "other"
        counts[key] += n
    return [(k, v, STATUS_COLOURS[k]) for k, v in counts.items() if v]


def render_html(report: Report, top: int = 10, min_requests: int = 5, sources: Sequence[str] = (),
                generated: float | None = None) -> str:
    data = {s["id"]: s for s in sections(report, top, min_requests)}
    unit, buckets = report.traffic()
    fmt = "%Y-%m-%d %H:%M" if unit == "hour" else "%Y-%m-%d"
    labelled = [(time.strftime(fmt, time.localtime(s)), req, size) for s, req, size in buckets]
    peak_req = max((r for _, r, _ in labelled), default=0)
    peak_bytes = max((b for _, _, b in labelled), default=0)
    cards = [
        ("Requests", f"{report.requests:,}"), ("Bytes sent", human_bytes(report.bytes)),
        ("Clients", f"{len(report.clients.rows) + report.clients.pruned:,}"),
        ("Denied", f"{report.denied:,}"), ("Hit ratio (requests)", percent(report.hit_ratio_requests)),
        ("Hit ratio (bytes)", percent(report.hit_ratio_bytes)),
    ]
    domains = report.served_domains(top)
    total = report.requests or 1
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>squidpy access log report</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>Access log report</h1>",
        f'<p class="meta">{esc(local_time(report.first))} to {esc(local_time(report.last))}'
        + (f" &middot; {esc(', '.join(sources))}" if sources else "") + "</p></header>",
        '<section id="summary"><div class="cards">'
        + "".join(f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in cards)
        + "</div></section>",
        f'<section id="traffic"><h2>Traffic over time (per {unit})</h2>',
        columns(f"Requests per {unit}", [(label, req) for label, req, _ in labelled], f"{peak_req:,} requests",
                BAR, "chart-requests"),
        columns(f"Bytes per {unit}", [(label, size) for label, _, size in labelled], human_bytes(peak_bytes),
                "#7c3aed", "chart-bytes"),
        "</section>",
        '<section id="cache"><h2>Cache hit ratio</h2><div class="grid2">',
        stacked("By requests", [("hits", report.hit_requests, HIT),
                                ("misses", report.cacheable_requests - report.hit_requests, MISS)], "chart-hits-requests"),
        stacked("By bytes", [("hits", report.hit_bytes, HIT),
                             ("misses", report.cacheable_bytes - report.hit_bytes, MISS)], "chart-hits-bytes"),
        "</div>", _table(data["cache"]), "</section>",
        f'<section id="domains"><h2>Top {top} domains</h2>',
        bar_chart("Requests served per domain", [(d, r[6], f"{r[6]:,} ({percent(r[6] / total)})") for d, r in domains],
                  BAR, "chart-domains"),
        _table(data["domains"]), "</section>",
        '<section id="status"><h2>Status and result codes</h2>',
        stacked("Status classes", _status_classes(report), "chart-status"),
        '<div class="grid2"><div>', _table(data["status"]), "</div><div>", _table(data["results"]), "</div></div></section>",
        f'<section id="clients"><h2>Top {top} clients</h2>',
        bar_chart("Requests per client", [(c, r[0], f"{r[0]:,}") for c, r in report.clients.top(top)], BAR, "chart-clients"),
        _table(data["clients"]), "</section>",
        f'<section id="users"><h2>Top {top} users</h2>',
        bar_chart("Requests per user", [(u, r[0], f"{r[0]:,} ({human_bytes(r[1])})") for u, r in report.users.top(top)],
                  BAR, "chart-users"),
        _table(data["users"]), _user_details(report, top),
        '<div class="grid2"><div>', _table(data["denied-users"]), "</div></div></section>",
        '<section id="denied"><h2>Denied requests</h2>',
        bar_chart("Denied per domain", [(d, r[2], f"{r[2]:,}") for d, r in report.denied_by(report.domains, top)],
                  DENIED, "chart-denied"),
        '<div class="grid2"><div>', _table(data["denied-clients"]), "</div><div>", _table(data["denied-domains"]),
        "</div></div></section>",
        f'<section id="connect"><h2>Top {top} CONNECT destinations</h2>', _table(data["connect"]),
        "<h3>CONNECTs without a tunnel (denied or failed)</h3>", _table(data["connect-refused"]), "</section>",
        '<section id="slowest"><h2>Slowest domains</h2>', _table(data["slowest"]), "</section>",
        f'<section id="traffic-table"><h2>Traffic per {unit}</h2>', _table(data["traffic"]), "</section>",
    ]
    if "malformed" in data:
        parts += [f'<section id="malformed"><h2>Malformed lines: {report.malformed.count:,}</h2>',
                  _table(data["malformed"]), "</section>"]
    if report.approximate:
        parts.append(f'<p class="note">Approximate tables (too many distinct keys to keep them all): '
                     f'{esc(", ".join(report.approximate))}.</p>')
    stamp = local_time(generated if generated is not None else time.time())
    parts.append(f"<footer>Generated by squidpy logs report on {esc(stamp)}.</footer></body></html>")
    return "\n".join(parts) + "\n"
