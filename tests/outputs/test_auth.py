"""Stream-key auth on every client output route: wrong, missing and disabled keys look alike; failures are limited."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.outputs.conftest import Lineup

# (method, path with {key} and {pid}); query-string routes carry the key as ?stream_key=.
OUTPUT_ROUTES = [
    ("GET", "/tic-api/playlist/combined.m3u?stream_key={key}"),
    ("GET", "/tic-api/playlist/{pid}.m3u?stream_key={key}"),
    ("GET", "/tic-api/epg/xmltv.xml?stream_key={key}"),
    ("GET", "/tic-api/epg/xmltv.xml.gz?stream_key={key}"),
    ("GET", "/tic-api/hdhr_device/{key}/combined/discover.json"),
    ("GET", "/tic-api/hdhr_device/{key}/{pid}/lineup.json"),
    ("GET", "/tic-api/hdhr_device/{key}/combined/lineup_status.json"),
    ("GET", "/tic-api/hdhr_device/{key}/combined/device.xml"),
    ("POST", "/tic-api/hdhr_device/{key}/combined/lineup.post"),
]
LIMIT = 20  # stream-key failures allowed per address in five minutes (backend.runtime.Limiters)


def test_every_output_route_is_covered_here(app: Any) -> None:
    stream_rules = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if getattr(app.view_functions[rule.endpoint], "_tic_auth", None) == "stream_key"
        and rule.rule.startswith(("/tic-api/playlist", "/tic-api/epg", "/tic-api/hdhr_device"))
    }
    covered = {
        path.split("?")[0]
        .replace("{key}", "<stream_key>")
        .replace("{pid}.m3u", "<int:playlist_id>.m3u")
        .replace("/{pid}/", "/<target>/")
        .replace("/combined/", "/<target>/")
        for _, path in OUTPUT_ROUTES
    }
    assert stream_rules == covered


async def disabled_users_key(admin: ApiClient) -> str:
    created = await admin.post(
        "/tic-api/users", json={"username": "gone", "password": "gone-password", "role": "streamer"}
    )
    user_id = (await created.get_json())["id"]
    key = (await (await admin.get(f"/tic-api/users/{user_id}/stream-key")).get_json())["stream_key"]
    assert (await admin.patch(f"/tic-api/users/{user_id}", json={"enabled": False})).status_code == 200
    return str(key)


@pytest.mark.parametrize(("method", "template"), OUTPUT_ROUTES)
async def test_keys_are_checked_and_failures_rate_limited(
    app: Any, admin: ApiClient, lineup: Lineup, stream_key: str, method: str, template: str
) -> None:
    playlist = await lineup.playlist("P")
    await lineup.channel(1, "One", sources=["http://p.invalid/1"])
    client = app.test_client()

    def path(key: str) -> str:
        return template.format(key=key, pid=playlist.id)

    good = await client.open(path(stream_key), method=method)
    assert good.status_code in (200, 503), await good.get_data(as_text=True)  # 503: guide not built yet

    failures = 0
    # A logged-in admin without the key is refused too: outputs take stream keys only.
    if "?stream_key=" in template:
        bare = await admin.request(method, path(stream_key).split("?")[0])
        assert bare.status_code == 401
        failures += 1

    unknown = await client.open(path("not-a-key-" + "x" * 22), method=method)
    disabled = await client.open(path(await disabled_users_key(admin)), method=method)
    assert unknown.status_code == disabled.status_code == 401
    # Same answer whether or not the key belongs to a (disabled) user: nothing to enumerate.
    assert await unknown.get_json() == await disabled.get_json()
    assert (await unknown.get_json())["code"] == "BAD_STREAM_KEY"
    failures += 2

    left = LIMIT - failures
    statuses = [(await client.open(path(f"guess-{i}"), method=method)).status_code for i in range(left)]
    assert statuses == [401] * left
    limited = await client.open(path("one-too-many"), method=method)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    # While limited, even the right key waits.
    assert (await client.open(path(stream_key), method=method)).status_code == 429
