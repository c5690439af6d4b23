"""The login in front of the operations surfaces (web/auth.py, web/users.py) and the web app's routes
called in-process: which need a login, what /health/live answers, the static files (no path leaves
web/static), the CSV download, and a page that loads nothing from elsewhere."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import ROOT
from settings import SettingsError, get_settings, load_settings, reset_settings_cache
from tests.support.env import BASE_ENV, DASHBOARD_HASH, DASHBOARD_PASSWORD, DASHBOARD_USER
from web import auth
from web.app import application
from web.auth import MAX_FAILURES_PER_ADDRESS, LoginGuard, hash_password, parse_basic, verify_password

PASSWORD = "correct horse battery staple"
OWNER_HASH = hash_password(PASSWORD)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(path: str, authorization: str = "", query: str = "", method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    """One request to the WSGI app, in this process, from 192.0.2.10."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "192.0.2.10",
               "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.fixture()
def owner(redis_client: Any) -> Iterator[str]:
    """The login of the tests' DASHBOARD_USERS (tests/support/env.py); no failure counted afterwards."""
    yield basic(DASHBOARD_USER, DASHBOARD_PASSWORD)
    for counter in redis_client.scan_iter("assistant:login-failures:*"):
        redis_client.delete(counter)


def test_passwords_are_stored_as_salted_scrypt_hashes() -> None:
    again = hash_password(PASSWORD)
    assert again != OWNER_HASH and again.startswith("scrypt:16384:8:1:")  # a new salt each time
    assert verify_password(PASSWORD, OWNER_HASH) and verify_password(PASSWORD, again)
    assert not verify_password(PASSWORD + "!", OWNER_HASH)
    assert not verify_password(PASSWORD, "scrypt:not-a-hash") and not verify_password(PASSWORD, "")
    assert parse_basic(basic("owner", "pa:ss")) == ("owner", "pa:ss")
    assert parse_basic("Bearer abc") is None and parse_basic("Basic %%%") is None
    assert verify_password(DASHBOARD_PASSWORD, DASHBOARD_HASH)  # the tests' own login is a real hash
    settings = load_settings({**BASE_ENV, "DASHBOARD_USERS": f"owner:{OWNER_HASH}, accountant:{again}"})
    assert [name for name, _hash in settings.dashboard_users] == ["owner", "accountant"]
    assert OWNER_HASH not in repr(settings) and settings.redacted()["DASHBOARD_USERS"] == "***"
    with pytest.raises(SettingsError) as refused:
        load_settings({**BASE_ENV, "DASHBOARD_USERS": "owner:plaintext-password"})
    assert "plaintext-password" not in str(refused.value) and "python -m web.users add" in str(refused.value)


def test_the_cli_reads_the_password_from_stdin_and_prints_the_entry() -> None:
    done = subprocess.run([sys.executable, "-m", "web.users", "add", "owner"], cwd=ROOT, input=PASSWORD + "\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    name, _, password_hash = done.stdout.strip().partition(":")
    assert name == "owner" and verify_password(PASSWORD, password_hash) and PASSWORD not in done.stdout
    assert "DASHBOARD_USERS" in done.stderr
    short = subprocess.run([sys.executable, "-m", "web.users", "add", "owner"], cwd=ROOT, input="short\n",
                           capture_output=True, text=True, timeout=60)
    assert short.returncode != 0 and "at least" in short.stderr


@pytest.mark.usefixtures("database")
def test_the_operations_routes_need_a_login_and_the_liveness_probe_does_not(owner: str) -> None:
    status, _headers, body = call("/health/live")
    assert status == "200 OK" and json.loads(body) == {"status": "alive"}
    for path, query in [("/health", ""), ("/stats", ""), ("/dashboard", ""), ("/dashboard/data.json", ""),
                        ("/dashboard/data.csv", "section=funnel")]:
        status, headers, _body = call(path, query=query)
        assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Basic realm="), path
        status, _headers, _body = call(path, owner, query)
        assert status in {"200 OK", "503 Service Unavailable"}, (path, status)  # /health: no beat runs here
    # The webhooks keep their own secrets; a login is neither asked for nor enough.
    assert call("/webhooks/wappi", owner, method="POST")[0] == "400 Bad Request"


@pytest.mark.usefixtures("database")
def test_the_page_loads_nothing_from_elsewhere_and_the_tables_download_as_csv(owner: str) -> None:
    status, headers, body = call("/dashboard", owner, "period=7d")
    assert status == "200 OK" and "default-src 'none'" in headers["Content-Security-Policy"]
    page = body.decode()
    for address in re.findall(r'(?:src|href|action)="([^"]*)"', page):
        assert address.startswith(("/", "data:")), address
    assert '<option value="7d" selected>' in page and "/static/vendor/chart.umd.js" in page
    status, headers, body = call("/dashboard/data.csv", owner, "section=funnel&period=7d")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/csv")
    assert 'filename="dashboard-funnel-7d-all.csv"' in headers["Content-Disposition"]
    lines = body.decode().splitlines()
    assert lines[0] == "Step,This period,Previous period" and len(lines) == 6
    assert lines[1].startswith("Contacts who wrote,")
    assert call("/dashboard/data.csv", owner, "section=nothing")[0] == "404 Not Found"
    assert call("/dashboard/data.json", owner, "period=year")[0] == "400 Bad Request"
    assert call("/dashboard/data.json", owner, "profile=no-such-profile")[0] == "404 Not Found"


def test_static_files_are_served_from_web_static_only() -> None:
    status, headers, body = call("/static/vendor/chart.umd.js")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/javascript")
    assert body.startswith(b"/*!\n * Chart.js v") and b"sourceMappingURL" not in body
    assert call("/static/dashboard.css")[0] == "200 OK"
    for escape in ["../app.py", "../../settings.py", "vendor/../../auth.py", "/etc/passwd", "vendor", "a\x00b"]:
        assert call(f"/static/{escape}")[0] == "404 Not Found", escape


def test_failed_logins_are_logged_slowed_and_then_refused(redis_client: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    guard = LoginGuard([("owner", OWNER_HASH)], redis_client, delay=0.2)
    address = "198.51.100.7"
    auth._verified.clear()  # no login remembered from another test: each one below is checked
    try:
        caplog.set_level(logging.WARNING, logger="web.auth")
        assert guard.check("", address).status == "401 Unauthorized"  # no login yet: not a failure
        started = time.monotonic()
        failed = guard.check(basic("owner", "guess-number-one"), address)
        assert failed.user is None and failed.status == "401 Unauthorized"
        assert time.monotonic() - started >= 0.2
        assert guard.check(basic("owner", PASSWORD), address).user == "owner"  # and clears the address's count
        guard.delay = 0.0
        for attempt in range(MAX_FAILURES_PER_ADDRESS):
            assert guard.check(basic("nobody", f"guess-{attempt}"), address).status == "401 Unauthorized"
        locked = guard.check(basic("owner", "another-guess"), address)
        assert locked.status == "429 Too Many Requests" and 0 < locked.retry_after <= auth.FAILURE_WINDOW
        # A locked-out address is refused before any password is checked; another address is not.
        assert guard.check(basic("owner", PASSWORD + "x"), address).status == "429 Too Many Requests"
        assert guard.check(basic("owner", PASSWORD), "198.51.100.8").user == "owner"
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "failed login for user 'owner' from 198.51.100.7" in logged and "too many failed logins" in logged
        assert "guess" not in logged and PASSWORD not in logged
    finally:
        for counter in redis_client.scan_iter("assistant:login-failures:*"):
            redis_client.delete(counter)


def test_with_no_users_configured_nobody_logs_in(monkeypatch: pytest.MonkeyPatch, owner: str) -> None:
    monkeypatch.setenv("DASHBOARD_USERS", "")
    reset_settings_cache()
    try:
        assert get_settings().dashboard_users == ()
        status, headers, _body = call("/health", owner)
        assert status == "401 Unauthorized" and "WWW-Authenticate" in headers
    finally:
        monkeypatch.undo()
        reset_settings_cache()
