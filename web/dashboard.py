"""The owner's dashboard: `GET /dashboard` (server-rendered HTML: the filter, the key figures and
every table), `GET /dashboard/data.json` (the figures the page's charts draw, and the tests read),
`GET /dashboard/data.csv?section=<key>` (one table), and the static files under `/static/` (the
page's script and style, Chart.js vendored in `static/vendor/`: no request leaves the host).

One filter in the URL drives them all: `?profile=<profile id>|all&period=today|7d|30d`."""

from __future__ import annotations

import csv
import html
import io
import json
import mimetypes
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select

from celeryconfig import QUEUES
from db.models import Profile
from db.session import session_scope
from pipeline.dashboard import DEFAULT_PERIOD, PERIODS, dashboard_data
from pipeline.profile_settings import settings_for
from settings import get_settings

STATIC_ROOT = (Path(__file__).resolve().parent / "static").resolve()
ALL = "all"
# Everything the page loads comes from this host; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
                                "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
Response = tuple[str, list[tuple[str, str]], bytes]


class FilterError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _filter(environ: dict[str, Any]) -> tuple[str, str]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    profile = (query.get("profile", [""])[0].strip() or ALL)
    period = query.get("period", [""])[0].strip() or DEFAULT_PERIOD
    if period not in PERIODS:
        raise FilterError("400 Bad Request", f"period must be one of {', '.join(PERIODS)}")
    return profile, period


def figures(environ: dict[str, Any], now: datetime | None = None) -> tuple[dict[str, Any], list[Profile]]:
    """The dashboard's data for the request's filter, and every profile (for the filter's list)."""
    profile_key, period = _filter(environ)
    settings = get_settings()
    with session_scope() as session:
        profiles = list(session.scalars(select(Profile).order_by(Profile.id)))
        chosen = None
        if profile_key != ALL:
            chosen = next((profile for profile in profiles if profile.profile_id == profile_key), None)
            if chosen is None:
                raise FilterError("404 Not Found", f"no profile {profile_key!r}")
        timezone = settings_for(chosen, settings).timezone if chosen is not None else settings.timezone
        data = dashboard_data(session, now or datetime.now(UTC), period=period, timezone=timezone,
                              profile_id=chosen.id if chosen is not None else None, profile_key=profile_key,
                              queues=QUEUES, intervals=settings.follow_up_intervals, prices=settings.model_prices)
    return data, profiles


def data_view(environ: dict[str, Any]) -> Response:
    try:
        data, _profiles = figures(environ)
    except FilterError as exc:
        return _json(exc.status, {"error": str(exc)})
    return _json("200 OK", data)


def csv_view(environ: dict[str, Any]) -> Response:
    wanted = parse_qs(environ.get("QUERY_STRING", "")).get("section", [""])[0]
    try:
        data, _profiles = figures(environ)
    except FilterError as exc:
        return _json(exc.status, {"error": str(exc)})
    section = next((item for item in data["sections"] if item["key"] == wanted), None)
    if section is None:
        keys = ", ".join(item["key"] for item in data["sections"])
        return _json("404 Not Found", {"error": f"no section {wanted!r}; one of {keys}"})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(section["table"]["columns"])
    writer.writerows([["" if cell is None else cell for cell in row] for row in section["table"]["rows"]])
    name = "-".join(re.sub(r"[^A-Za-z0-9_-]+", "_", part)
                    for part in ("dashboard", wanted, data["filter"]["period"], data["filter"]["profile"]))
    body = out.getvalue().encode("utf-8")
    return "200 OK", [("Content-Type", "text/csv; charset=utf-8"), ("Content-Length", str(len(body))),
                      ("Content-Disposition", f'attachment; filename="{name}.csv"'),
                      ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")], body


def page_view(environ: dict[str, Any]) -> Response:
    try:
        data, profiles = figures(environ)
    except FilterError as exc:
        body = (f"<!doctype html><meta charset=utf-8><title>Dashboard</title><p>{html.escape(str(exc))} "
                "<a href=/dashboard>Back to the dashboard</a>").encode()
        return exc.status, [("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS], body
    body = render_page(data, profiles).encode("utf-8")
    return "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                      ("Cache-Control", "no-store"), *SECURITY_HEADERS], body


def static_view(path: str) -> Response:
    """A file under web/static (`path` after `/static/`); nothing outside it, whatever the path says."""
    try:
        target = (STATIC_ROOT / path).resolve()
    except (ValueError, OSError):  # a NUL byte, a name too long
        return _json("404 Not Found", {"error": "no such file"})
    if not target.is_relative_to(STATIC_ROOT) or not target.is_file() or any(
            part.startswith(".") for part in target.relative_to(STATIC_ROOT).parts):
        return _json("404 Not Found", {"error": "no such file"})
    body = target.read_bytes()
    kind = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain", "": "text/plain",
            ".png": "image/png", ".svg": "image/svg+xml"}.get(target.suffix) \
        or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    charset = "; charset=utf-8" if kind.startswith("text/") else ""
    return "200 OK", [("Content-Type", kind + charset), ("Content-Length", str(len(body))),
                      ("Cache-Control", "public, max-age=3600"), ("X-Content-Type-Options", "nosniff")], body


def _json(status: str, body: dict[str, Any]) -> Response:
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    return status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data))),
                    ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")], data


# ------------------------------------------------------------------------------------------ HTML
def show(value: Any, unit: str = "") -> str:
    """A figure as the page writes it."""
    if value is None:
        return "—"
    if unit == "s":
        seconds = float(value)
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
    if unit == "USD":
        return f"${float(value):.4f}"
    return str(value)


def change(current: Any, previous: Any, unit: str = "") -> str:
    if current is None or previous is None:
        return ""
    difference = float(current) - float(previous)
    if abs(difference) < 1e-9:
        return "same"
    sign = "+" if difference > 0 else "−"
    amount = show(abs(difference), unit) if unit else (f"{abs(difference):g}")
    return f"{sign}{amount}"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _figure_html(figure: dict[str, Any], css: str) -> str:
    unit = figure["unit"]
    delta = change(figure["current"], figure["previous"], unit)
    return (f'<div class="{css}" data-figure="{_e(figure["key"])}" '
            f'data-current="{_e(json.dumps(figure["current"]))}" data-previous="{_e(json.dumps(figure["previous"]))}">'
            f'<span class="label">{_e(figure["label"])}</span>'
            f'<span class="value">{_e(show(figure["current"], unit))}</span>'
            f'<span class="previous">previous: {_e(show(figure["previous"], unit))}'
            f'{f" ({_e(delta)})" if delta else ""}</span></div>')


def _table_html(section: dict[str, Any], query: str) -> str:
    table = section["table"]
    head = "".join(f'<th scope="col">{_e(column)}</th>' for column in table["columns"])
    if table["rows"]:
        body = "".join("<tr>" + "".join(
            (f'<th scope="row">{_e(show(cell))}</th>' if index == 0 else f"<td>{_e(show(cell))}</td>")
            for index, cell in enumerate(row)) + "</tr>" for row in table["rows"])
    else:
        body = f'<tr class="no-data-row"><td colspan="{len(table["columns"])}">no data yet</td></tr>'
    return (f'<details class="table"><summary>Table</summary><div class="table-wrap">'
            f'<table data-table="{_e(section["key"])}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'</div><a class="csv" href="/dashboard/data.csv?{_e(query)}&amp;section={_e(section["key"])}" download>'
            f'Download CSV</a></details>')


def _day(moment: str, timezone: str, *, end: bool = False) -> str:
    """The local day of a period's start, or of its (exclusive) end's last second."""
    instant = datetime.fromisoformat(moment) - (timedelta(seconds=1) if end else timedelta())
    return instant.astimezone(ZoneInfo(timezone)).strftime("%d %b %Y")


def render_page(data: dict[str, Any], profiles: list[Profile]) -> str:
    period, chosen = data["period"], data["filter"]
    query = urlencode({"profile": chosen["profile"], "period": chosen["period"]})

    def option(value: str, label: str, selected: bool) -> str:
        return f'<option value="{_e(value)}"{" selected" if selected else ""}>{_e(label)}</option>'

    options = [option(ALL, "All profiles", chosen["profile"] == ALL)]
    options += [option(profile.profile_id, f"{profile.name or profile.profile_id} ({profile.profile_id})",
                       profile.profile_id == chosen["profile"]) for profile in profiles]
    periods = "".join(option(name, label, name == chosen["period"]) for name, (label, *_rest) in PERIODS.items())
    timezone = period["timezone"]

    def span(part: dict[str, str]) -> str:
        first, last = _day(part["start"], timezone), _day(part["end"], timezone, end=True)
        return first if first == last else f"{first} – {last}"

    summary = "".join(_figure_html(figure, "tile") for figure in data["summary"])
    sections = []
    for section in data["sections"]:
        section_figures = "".join(_figure_html(figure, "figure") for figure in section["figures"]
                                  if section["figures_shown"])
        sections.append(
            f'<section class="card" id="section-{_e(section["key"])}" data-section="{_e(section["key"])}">'
            f'<h2>{_e(section["title"])}</h2><p class="note">{_e(section["note"])}</p>'
            f'{f"<div class=figures>{section_figures}</div>" if section_figures else ""}'
            f'<div class="chart-box"><canvas id="chart-{_e(section["key"])}" role="img" '
            f'aria-label="{_e(section["title"])}"></canvas>'
            f'{"<p class=no-data>no data yet</p>" if section["empty"] else ""}</div>'
            f'{_table_html(section, query)}</section>')
    generated = datetime.fromisoformat(data["generated_at"]).astimezone(ZoneInfo(timezone))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dashboard · {_e(period["label"])}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/vendor/chart.umd.js" defer></script>
<script src="/static/dashboard.js" defer></script>
</head>
<body data-data-url="/dashboard/data.json?{_e(query)}">
<header>
<h1>Dashboard</h1>
<form class="filter" method="get" action="/dashboard">
<label>Profile <select name="profile" id="profile">{"".join(options)}</select></label>
<label>Period <select name="period" id="period">{periods}</select></label>
<button type="submit">Show</button>
</form>
<p class="period" id="period-text">{_e(period["label"])}: {_e(span(period["current"]))}, against
{_e(span(period["previous"]))} · {_e(timezone)} · updated {_e(generated.strftime("%H:%M"))}</p>
</header>
<main>
<section class="summary" aria-label="The period at a glance">{summary}</section>
{"".join(sections)}
<p class="load-error" id="load-error" hidden>The charts could not be loaded; the tables above are current.</p>
</main>
</body>
</html>
"""
