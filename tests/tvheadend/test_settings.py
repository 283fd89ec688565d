"""TVHeadend connection settings: validation, the password encrypted at rest and masked, the client built from them."""

from __future__ import annotations

from typing import Any

import aiohttp

from backend.settings.models import Setting
from backend.tvheadend.service import client_from_settings
from tests.conftest import ApiClient

SECRET = "tvh-Secret-42"


async def test_defaults_and_definitions(admin: ApiClient, streamer: ApiClient) -> None:
    body = await (await admin.get("/tic-api/settings")).get_json()
    values, definitions = body["values"], body["definitions"]
    assert values["tvh_url"] == "" and values["tvh_username"] == "" and values["tvh_password"] == ""
    assert values["tvh_timeout_seconds"] == 15
    assert definitions["tvh_password"]["secret"] is True
    assert definitions["tvh_url"]["secret"] is False
    assert "HTTP root" in definitions["tvh_url"]["description"]
    assert (await streamer.get("/tic-api/settings")).status_code == 403
    assert (
        await streamer.patch("/tic-api/settings", json={"tvh_url": "http://x/tic-tvh"})
    ).status_code == 403


BAD_URLS = [
    ("ftp://tvheadend:9981/tic-tvh", "http:// or https://"),
    ("tvheadend:9981/tic-tvh", "http:// or https://"),
    ("http:///tic-tvh", "must name a host"),
    (f"http://admin:{SECRET}@tvheadend:9981/tic-tvh", "user name or password"),
    ("http://admin@tvheadend:9981/tic-tvh", "user name or password"),
    ("http://tvheadend:9981/tic-tvh?x=1", "query string"),
    ("http://tvheadend:9981/tic-tvh#frag", "fragment"),
]
GOOD_URLS = [
    "http://tvheadend:9981/tic-tvh",
    "https://tvh.example.org/tic-tvh/",
    "http://[::1]:9981/tic-tvh",
    "",
]


async def test_url_and_timeout_validation(admin: ApiClient) -> None:
    for url, problem in BAD_URLS:
        resp = await admin.patch("/tic-api/settings", json={"tvh_url": url})
        assert resp.status_code == 400, url
        body = await resp.get_json()
        assert problem in body["fields"]["tvh_url"], url
        # A URL with credentials is never echoed back.
        assert SECRET not in await resp.get_data(as_text=True)
    for url in GOOD_URLS:
        resp = await admin.patch("/tic-api/settings", json={"tvh_url": url})
        assert resp.status_code == 200, (url, await resp.get_json())
    for bad in (0, 301, "15"):
        resp = await admin.patch("/tic-api/settings", json={"tvh_timeout_seconds": bad})
        assert resp.status_code == 400, bad
    assert (await admin.patch("/tic-api/settings", json={"tvh_timeout_seconds": 5})).status_code == 200


async def test_password_is_encrypted_at_rest_and_never_shown(admin: ApiClient, svc: Any) -> None:
    resp = await admin.patch("/tic-api/settings", json={"tvh_username": "tic", "tvh_password": SECRET})
    assert resp.status_code == 200
    assert SECRET not in await resp.get_data(as_text=True)
    async with svc.db.session() as session:
        row = await session.get(Setting, "tvh_password")
    assert row is not None and SECRET not in str(row.value)
    assert svc.keyring.decrypt(str(row.value).encode()) == SECRET
    shown = await (await admin.get("/tic-api/settings")).get_json()
    assert shown["values"]["tvh_password"] == "********"
    # The settings page shows the mask, not the password; sending the mask back keeps the password.
    page = await (await admin.get("/settings")).get_data(as_text=True)
    assert SECRET not in page and 'name="tvh_password"' in page
    resp = await admin.patch("/tic-api/settings", json={"tvh_password": "********"})
    assert (await resp.get_json())["changed"] == []
    async with svc.db.session() as session:
        row = await session.get(Setting, "tvh_password")
    assert row is not None and svc.keyring.decrypt(str(row.value).encode()) == SECRET


async def test_client_from_settings(admin: ApiClient, svc: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with svc.db.session() as session:
            assert await client_from_settings(session, svc.keyring, http) is None
        await admin.patch(
            "/tic-api/settings",
            json={"tvh_url": "http://tvheadend:9981/tic-tvh/", "tvh_username": "tic", "tvh_password": SECRET},
        )
        async with svc.db.session() as session:
            client = await client_from_settings(session, svc.keyring, http)
        assert client is not None
        assert client.base_url == "http://tvheadend:9981/tic-tvh"
        assert client.auth_mode == "basic"
