"""An Xtream Codes account whose exp_date has passed: the import stops with XTREAM_ACCOUNT_EXPIRED, says
what to do, and the streams of the last good import stay exactly as they were."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider
from tests.playlists.conftest import all_streams, create_playlist, json_of, playlist, run_import

PASSWORD = "s3cret-pw"
STREAMS = [{"name": "One", "epg_channel_id": "one.tv"}, {"name": "Two", "epg_channel_id": "two.tv"}]
DAY = 86400


async def xtream_source(admin: ApiClient, provider: FakeProvider) -> dict[str, Any]:
    """A source for the account "alice", imported once while the account is valid."""
    provider.add_xtream("alice", PASSWORD, categories=[{"category_name": "News"}], live_streams=STREAMS)
    source = await create_playlist(
        admin, kind="xtream", xc_server=provider.url(""), xc_username="alice", xc_password=PASSWORD
    )
    await run_import(admin, source["id"])
    return source


def expire(provider: FakeProvider, exp_date: int | str) -> None:
    """The same login, now with another expiry date (and one stream fewer, so a wrongly applied import shows)."""
    provider.add_xtream("alice", PASSWORD, live_streams=STREAMS[:1], exp_date=exp_date)


@pytest.mark.parametrize(
    "exp_date",
    [
        pytest.param(int(time.time()) - 3 * DAY, id="three days ago"),
        # Panels send the Unix time as a string; some as a float-looking one.
        pytest.param(str(int(time.time()) - 400 * DAY), id="over a year ago as a string"),
        pytest.param(f"{int(time.time()) - 120}.0", id="two minutes ago as a float string"),
    ],
)
async def test_expired_account_fails_clearly_and_keeps_the_streams(
    admin: ApiClient, provider: FakeProvider, exp_date: int | str
) -> None:
    source = await xtream_source(admin, provider)
    before = await all_streams(admin, source["id"])
    assert len(before) == 2
    expire(provider, exp_date)
    asked_before = len(provider.request_urls)

    task = await run_import(admin, source["id"], status="failed")

    day = datetime.fromtimestamp(int(float(exp_date)), UTC).strftime("%Y-%m-%d")
    error = task["error"]
    assert error.endswith("[XTREAM_ACCOUNT_EXPIRED]"), error
    assert f"expired on {day}" in error and "renew it with the provider" in error, error
    assert PASSWORD not in error and PASSWORD not in task["message"]
    # An expired account is not a passing fault: one attempt, no retries queued.
    assert task["attempts"] == 1
    # Nothing past the account check is fetched from an account that has expired.
    asked = provider.request_urls[asked_before:]
    assert asked and not any("get_live_streams" in url or "get_live_categories" in url for url in asked)
    after = await playlist(admin, source["id"])
    assert after["last_import_status"] == "failed"
    assert after["last_import_error"] == error
    assert after["stream_count"] == 2
    assert await all_streams(admin, source["id"]) == before


@pytest.mark.parametrize(
    ("exp_date", "streams"),
    [
        # Still valid for an hour: imported as usual.
        pytest.param(int(time.time()) + 3600, 1, id="expires in an hour"),
        # "", "0" and "null" are how panels say an account never expires.
        pytest.param("", 1, id="empty"),
        pytest.param("0", 1, id="zero"),
        pytest.param("null", 1, id="null string"),
    ],
)
async def test_accounts_that_have_not_expired_import(
    admin: ApiClient, provider: FakeProvider, exp_date: int | str, streams: int
) -> None:
    source = await xtream_source(admin, provider)
    expire(provider, exp_date)

    task = await run_import(admin, source["id"])

    assert task["error"] is None
    after = await playlist(admin, source["id"])
    assert after["last_import_status"] == "succeeded" and after["stream_count"] == streams
    assert [s["name"] for s in await all_streams(admin, source["id"])] == ["One"]


async def test_connection_test_reports_the_expiry(admin: ApiClient, provider: FakeProvider) -> None:
    """The "test connection" button gives the same code and advice before anything is saved."""
    past = int(time.time()) - 10 * DAY
    provider.add_xtream("alice", PASSWORD, live_streams=STREAMS, exp_date=past)
    body = {"kind": "xtream", "xc_server": provider.url(""), "xc_username": "alice", "xc_password": PASSWORD}

    expired = await json_of(await admin.post("/tic-api/playlists/test", json=body), 200)

    assert expired["ok"] is False and expired["code"] == "XTREAM_ACCOUNT_EXPIRED"
    day = datetime.fromtimestamp(past, UTC).strftime("%Y-%m-%d")
    assert f"expired on {day}" in expired["message"] and "renew it with the provider" in expired["message"]
    assert PASSWORD not in str(expired)

    future = int(time.time()) + 10 * DAY
    provider.add_xtream("alice", PASSWORD, live_streams=STREAMS, exp_date=future)
    valid = await json_of(await admin.post("/tic-api/playlists/test", json=body), 200)
    assert valid["ok"] is True, valid
    expires_at = datetime.fromtimestamp(future, UTC).isoformat().replace("+00:00", "Z")
    assert valid["details"]["expires_at"] == expires_at
