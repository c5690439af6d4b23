"""The owner's dashboard in a real browser, after real traffic through the workers and the emulators.

Chromium and chromedriver are the Debian packages (`scripts/services.sh` installs them), driven by
Selenium offline: the binaries are named, so Selenium downloads nothing. The page loads with no
console error and no failed request, and asks nothing of another host; each chart draws exactly the
figures of `/dashboard/data.json`, which are the counts this test computes from the database's rows
in Python; the tables and the tiles show the same; the profile and period filters change them; a
phone-wide screen has no horizontal scroll; without a login the page is refused. Screenshots of the
desktop and phone layouts go to the test's tmp path, and to docs/ (the README shows them) with
UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from db.models import Contact, FollowUp, Message, ModelUsage, Outbox, Profile
from db.session import session_scope
from devstack import ROOT, WorkerPool, free_port, wait_for
from domain.states import Author, Direction, FollowUpStatus, MessageStatus, OutboxKind, OutboxStatus, StopReason
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tasks import app
from tests.support.db import empty_tables, rows
from tests.support.emulators import reset_emulators
from tests.support.env import DASHBOARD_PASSWORD, DASHBOARD_USER, PROFILE_ID
from tests.support.idle import wait_idle
from tests.support.polling import first_start, run_poll
from web.dashboard import show

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ALMATY = ZoneInfo("Asia/Almaty")
SECOND = "c3d4e5f6-a7b8"  # a second WhatsApp number, for the profile filter
LOGIN = (DASHBOARD_USER, DASHBOARD_PASSWORD)
DOCS = ROOT / "docs"


def screenshot_targets(tmp_path: Path, name: str) -> list[Path]:
    """The test's artifact, and the README's copy in docs/ when UPDATE_SCREENSHOTS=1 asks for it (a
    plain `make test` leaves the tree as it was)."""
    return [tmp_path / name, *([DOCS / name] if os.environ.get("UPDATE_SCREENSHOTS") == "1" else [])]


def next_tuesday(hour: int) -> datetime:
    """The next Tuesday at least a day ahead, at that hour in Almaty."""
    day = datetime.now(ALMATY).date() + timedelta(days=1)
    while day.weekday() != 1:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=ALMATY)


@pytest.fixture(scope="module")
def traffic(workers: WorkerPool, wappi: WappiEmulator, gemini: GeminiEmulator, redis_client: Any) -> Iterator[None]:
    """Two WhatsApp profiles' customers answered by the workers: on the first, a lead, a lead whose
    call is booked, a lead whose call time is refused and a supplier (not a lead); on the second,
    one lead. Then one health sample taken by the worker's task. And, written directly (the
    workers cannot go back in time), a customer of three days ago and a follow-up chain he
    answered: what the 7-day period adds to today's."""
    empty_tables()
    for redis_key in redis_client.scan_iter("assistant:*"):
        redis_client.delete(redis_key)
    reset_emulators(wappi, gemini)
    if SECOND not in wappi.profile_ids:
        wappi.add_profile(SECOND)
    with session_scope() as session:
        session.add(Profile(profile_id=SECOND, name="Цветы", active=True))
    first_start()
    wait_for(lambda: len(rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL")) == 2,
             message="both profiles' first poll")
    customers = {
        "77300000001": "Здравствуйте! Хочу заказать торт на день рождения, сколько стоит?",
        "77300000002": f"Хочу заказать торт, позвоните {next_tuesday(15):%Y-%m-%d %H:%M}",
        "77300000003": f"Хочу заказать торт, позвоните {next_tuesday(20):%Y-%m-%d %H:%M}",
        "77300000004": "Добрый день, мы поставщик муки, предлагаем сотрудничество",
    }
    for phone, text in customers.items():
        wappi.customer_message(PROFILE_ID, phone, text)
    wappi.customer_message(SECOND, "77300000005", "Сколько стоит букет роз с доставкой?")
    run_poll()
    wait_for(lambda: len(wappi.sent_messages(PROFILE_ID)) == 3 and len(wappi.sent_messages(SECOND)) == 1,
             timeout=90, message="the four replies")
    wait_idle()
    app.send_task("pipeline.sample_health", queue="poll")
    wait_for(lambda: rows("SELECT 1 FROM health_samples"), message="a health sample")
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    with session_scope() as session:
        profile_id = session.scalars(select(Profile.id).where(Profile.profile_id == PROFILE_ID)).one()
        earlier = Contact(profile_id=profile_id, phone="77300000009", chat_id="77300000009@c.us", is_client=True)
        session.add(earlier)
        session.flush()
        session.add(Message(profile_id=profile_id, contact_id=earlier.id, provider_message_id="earlier-1",
                            direction=Direction.IN, author=Author.CUSTOMER, text="Хочу торт", created_at=three_days_ago,
                            sent_at=three_days_ago, status=MessageStatus.ANSWERED))
        chain = FollowUp(contact_id=earlier.id, status=FollowUpStatus.STOPPED, touch_number=1, anchor_at=three_days_ago,
                         stop_reason=StopReason.CLIENT_RESPONDED, updated_at=three_days_ago + timedelta(days=1))
        session.add(chain)
        session.flush()
        touched = three_days_ago + timedelta(hours=24)
        for key, kind, sent in [("earlier-reply", OutboxKind.REPLY, three_days_ago + timedelta(seconds=40)),
                                (f"follow_up:{chain.id}:1", OutboxKind.FOLLOW_UP, touched)]:
            session.add(Outbox(profile_id=profile_id, contact_id=earlier.id, idempotency_key=key, kind=kind, body="…",
                               status=OutboxStatus.SENT, sent_at=sent, created_at=sent))
        session.add(ModelUsage(purpose="follow_up", model="gemini-3.8-flash", contact_id=earlier.id,
                               prompt_tokens=900, output_tokens=100, total_tokens=1000,
                               created_at=touched))
    yield
    empty_tables()


@pytest.fixture(scope="module")
def site(traffic: None, workers: WorkerPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web process, as `python -m web` serves it, with the tests' DASHBOARD_USERS."""
    processes = WorkerPool(tmp_path_factory.mktemp("dashboard-web"))
    yield processes.start_web(free_port())
    processes.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is not installed: `bash scripts/services.sh` installs chromium and chromium-driver")
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Network.enable", {})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(driver: webdriver.Chrome, login: tuple[str, str] | None = LOGIN) -> None:
    """Every request of the page carries the login (as a browser does once the owner typed it)."""
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(login).encode()).decode()} if login else {}
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def screen(driver: webdriver.Chrome, width: int, height: int, *, mobile: bool = False) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def open_page(driver: webdriver.Chrome, url: str) -> list[dict[str, Any]]:
    """Load the page, wait until its charts are drawn; the network events of the load."""
    driver.get_log("performance")
    driver.get_log("browser")
    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    assert driver.execute_script("return document.body.dataset.ready") == "yes"
    return network(driver)


def network(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]


def assert_clean_load(driver: webdriver.Chrome, events: list[dict[str, Any]], site: str) -> None:
    """No console error, no failed request, nothing asked of another host."""
    errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requested = [event["params"]["request"]["url"] for event in events
                 if event["method"] == "Network.requestWillBeSent"]
    assert requested and all(url.startswith((site, "data:")) for url in requested), requested
    statuses = {event["params"]["response"]["url"]: event["params"]["response"]["status"]
                for event in events if event["method"] == "Network.responseReceived"}
    assert all(status < 400 for status in statuses.values()), statuses
    assert [event for event in events if event["method"] == "Network.loadingFailed"] == []
    assert any(url.startswith(f"{site}/dashboard/data.json") for url in statuses)


def page_charts(driver: webdriver.Chrome) -> dict[str, Any]:
    return dict(driver.execute_script("""
        const charts = {};
        document.querySelectorAll('canvas[id^="chart-"]').forEach((canvas) => {
          const chart = Chart.getChart(canvas);
          charts[canvas.id.slice(6)] = {type: chart.config.type, labels: chart.data.labels,
            datasets: chart.data.datasets.map((dataset) => ({label: dataset.label, data: dataset.data}))};
        });
        return charts;"""))


def page_tables(driver: webdriver.Chrome) -> dict[str, Any]:
    return dict(driver.execute_script("""
        const tables = {};
        document.querySelectorAll('table[data-table]').forEach((table) => {
          tables[table.dataset.table] = Array.from(table.tBodies[0].rows).map(
            (row) => Array.from(row.cells).map((cell) => cell.textContent));
        });
        return tables;"""))


def page_tiles(driver: webdriver.Chrome) -> list[Any]:
    return list(driver.execute_script("""
        return Array.from(document.querySelectorAll('.summary .tile')).map((tile) =>
          [tile.dataset.figure, JSON.parse(tile.dataset.current), JSON.parse(tile.dataset.previous)]);"""))


def data_json(site: str, query: str) -> dict[str, Any]:
    response = requests.get(f"{site}/dashboard/data.json?{query}", auth=LOGIN, timeout=30)
    response.raise_for_status()
    return dict(response.json())


def section(data: dict[str, Any], key: str) -> dict[str, Any]:
    return next(item for item in data["sections"] if item["key"] == key)


def chart_data(data: dict[str, Any], key: str, label: str) -> list[Any]:
    return next(item["data"] for item in section(data, key)["chart"]["datasets"] if item["label"] == label)


def assert_page_shows(driver: webdriver.Chrome, data: dict[str, Any]) -> None:
    """Each chart draws the figures of data.json; each table and tile shows them."""
    charts = page_charts(driver)
    assert set(charts) == {item["key"] for item in data["sections"]}
    for item in data["sections"]:
        drawn = charts[item["key"]]
        assert drawn["labels"] == item["chart"]["labels"], item["key"]
        assert drawn["datasets"] == [{"label": dataset["label"], "data": dataset["data"]}
                                     for dataset in item["chart"]["datasets"]], item["key"]
    tables = page_tables(driver)
    for item in data["sections"]:
        expected = [[show(cell) for cell in row] for row in item["table"]["rows"]] or [["no data yet"]]
        assert tables[item["key"]] == expected, item["key"]
    assert page_tiles(driver) == [[figure["key"], figure["current"], figure["previous"]]
                                  for figure in data["summary"]]


def counted(data: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    """The figures of data.json's current period, counted here from the rows in Python."""
    start = datetime.fromisoformat(data["period"]["current"]["start"])
    end = datetime.fromisoformat(data["period"]["current"]["end"])

    def within(moment: datetime | None) -> bool:
        return moment is not None and start <= moment < end

    contacts = {row.id: row for row in rows("SELECT c.id, c.is_client, p.profile_id FROM contacts c "
                                            "JOIN profiles p ON p.id = c.profile_id")}
    mine = {contact for contact, row in contacts.items() if profile is None or row.profile_id == profile}
    inbound = [row for row in rows("SELECT contact_id, created_at, call_requested_at FROM messages "
                                   "WHERE direction = 'in' AND status <> 'history'")
               if within(row.created_at) and row.contact_id in mine]
    replies = [row for row in rows("SELECT contact_id, sent_at FROM outbox WHERE kind = 'reply' AND status = 'sent'")
               if within(row.sent_at) and row.contact_id in mine]
    booked = {row.contact_id for row in rows("SELECT contact_id, created_at FROM scheduled_calls")
              if within(row.created_at)}
    asked = {row.contact_id for row in rows("SELECT contact_id, call_requested_at FROM messages")
             if within(row.call_requested_at)} | booked
    wrote = {row.contact_id for row in inbound}
    leads = {contact for contact in wrote if contacts[contact].is_client is True}
    answered = leads & {row.contact_id for row in replies}
    usage: Counter[str] = Counter()
    for row in rows("SELECT purpose, total_tokens, contact_id, created_at FROM model_usage"):
        if within(row.created_at) and row.contact_id in mine:
            usage[row.purpose] += row.total_tokens
    by_hour = Counter(row.created_at.astimezone(ALMATY).hour for row in inbound)
    return {"funnel": [len(wrote), len(leads), len(answered), len(answered & asked), len(answered & asked & booked)],
            "inbound_by_hour": by_hour, "replies": len(replies), "tokens": usage}


def test_the_page_draws_the_figures_of_data_json_which_are_the_databases(
        browser: webdriver.Chrome, site: str, tmp_path: Path) -> None:
    log_in(browser)
    screen(browser, 1280, 900)
    events = open_page(browser, f"{site}/dashboard")
    assert_clean_load(browser, events, site)
    data = data_json(site, "profile=all&period=today")
    assert_page_shows(browser, data)
    # data.json's figures are the rows': counted here, independently of its SQL.
    truth = counted(data)
    assert chart_data(data, "funnel", "This period") == truth["funnel"] == [5, 4, 4, 2, 1]
    inbound = chart_data(data, "activity", "Inbound messages")
    assert {hour: count for hour, count in enumerate(inbound) if count} == dict(truth["inbound_by_hour"])
    assert sum(count or 0 for count in chart_data(data, "activity", "Replies sent")) == truth["replies"] == 4
    tokens = {dataset["label"]: sum(value or 0 for value in dataset["data"])
              for dataset in section(data, "model_usage")["chart"]["datasets"]}
    assert tokens["classify"] == truth["tokens"]["classify"] > 0 and tokens["respond"] == truth["tokens"]["reply"] > 0
    samples = rows("SELECT queue_depths, dead_letters FROM health_samples")
    health = section(data, "health")
    assert len(health["table"]["rows"]) == len(samples) >= 1 and not health["empty"]
    assert health["table"]["rows"][-1][-1] == samples[-1].dead_letters
    profiles = {row[0]: row for row in section(data, "profiles")["table"]["rows"]}
    assert profiles[PROFILE_ID][3] == "ok" and profiles[PROFILE_ID][5] == 4 and profiles[SECOND][5] == 1
    assert browser.find_element(By.CSS_SELECTOR, "#section-follow_ups .no-data").text == "no data yet"
    for target in screenshot_targets(tmp_path, "dashboard.png"):
        save_full_page(browser, target)


def test_the_profile_and_period_filters_change_the_figures(browser: webdriver.Chrome, site: str) -> None:
    log_in(browser)
    screen(browser, 1280, 900)
    open_page(browser, f"{site}/dashboard")
    every = data_json(site, "profile=all&period=today")
    Select(browser.find_element(By.ID, "profile")).select_by_value(SECOND)  # the page reloads itself
    WebDriverWait(browser, 20).until(lambda d: f"profile={SECOND}" in d.current_url
                                     and d.execute_script("return document.body.dataset.ready") == "yes")
    second = data_json(site, f"profile={SECOND}&period=today")
    assert_page_shows(browser, second)
    assert chart_data(second, "funnel", "This period") == counted(second, SECOND)["funnel"] == [1, 1, 1, 0, 0]
    assert chart_data(second, "funnel", "This period") != chart_data(every, "funnel", "This period")
    assert [row[0] for row in section(second, "profiles")["table"]["rows"]] == [SECOND]

    Select(browser.find_element(By.ID, "profile")).select_by_value(PROFILE_ID)
    WebDriverWait(browser, 20).until(lambda d: f"profile={PROFILE_ID}" in d.current_url
                                     and d.execute_script("return document.body.dataset.ready") == "yes")
    Select(browser.find_element(By.ID, "period")).select_by_value("7d")
    WebDriverWait(browser, 20).until(lambda d: "period=7d" in d.current_url
                                     and d.execute_script("return document.body.dataset.ready") == "yes")
    week = data_json(site, f"profile={PROFILE_ID}&period=7d")
    assert_page_shows(browser, week)
    today = data_json(site, f"profile={PROFILE_ID}&period=today")
    # The customer of three days ago and the follow-up he answered are in the week, not in today.
    assert chart_data(week, "funnel", "This period") == counted(week, PROFILE_ID)["funnel"] == [5, 4, 4, 2, 1]
    assert chart_data(today, "funnel", "This period") == [4, 3, 3, 2, 1]
    assert len(section(week, "activity")["chart"]["labels"]) == 7
    assert chart_data(week, "follow_ups", "Touches sent")[0] == 1
    assert chart_data(week, "follow_ups", "Replies won")[0] == 1
    assert sum(chart_data(today, "follow_ups", "Touches sent")) == 0
    assert browser.find_element(By.CSS_SELECTOR, "#period option[selected]").get_attribute("value") == "7d"


def test_on_a_phone_the_page_has_no_horizontal_scroll(browser: webdriver.Chrome, site: str, tmp_path: Path) -> None:
    log_in(browser)
    screen(browser, 390, 844, mobile=True)
    try:
        events = open_page(browser, f"{site}/dashboard")
        assert_clean_load(browser, events, site)
        width, scroll_width = browser.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]")
        assert width == 390 and scroll_width <= width
        widest = browser.execute_script("""
            return Math.max(...Array.from(document.querySelectorAll('body *'))
              .filter((element) => !element.closest('.table-wrap'))
              .map((element) => element.getBoundingClientRect().right));""")
        assert widest <= width + 0.5
        for target in screenshot_targets(tmp_path, "dashboard-phone.png"):
            save_full_page(browser, target)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_without_a_login_the_page_is_refused(browser: webdriver.Chrome, site: str) -> None:
    log_in(browser, None)
    browser.get_log("performance")
    browser.get(f"{site}/dashboard")
    statuses = [event["params"]["response"]["status"] for event in network(browser)
                if event["method"] == "Network.responseReceived"
                and event["params"]["response"]["url"] == f"{site}/dashboard"]
    assert statuses == [401]
    assert browser.find_elements(By.TAG_NAME, "canvas") == []
    log_in(browser, (DASHBOARD_USER, "not-the-password"))
    browser.get_log("performance")
    browser.get(f"{site}/dashboard/data.json")
    assert [event["params"]["response"]["status"] for event in network(browser)
            if event["method"] == "Network.responseReceived"
            and event["params"]["response"]["url"] == f"{site}/dashboard/data.json"] == [401]
    assert requests.get(f"{site}/dashboard/data.json", timeout=10).status_code == 401
    assert requests.get(f"{site}/health/live", timeout=10).status_code == 200


def save_full_page(driver: webdriver.Chrome, target: Path) -> None:
    """A PNG of the whole page, not only the window."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(shot["data"]))
