"""The playlists API: CRUD and validation, secrets, the stream browser, connection tests, scheduling."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import update

from backend.db import utcnow
from backend.playlists.m3u import M3uParser
from backend.playlists.models import PlaylistSource
from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider, corpus_path
from tests.playlists.conftest import all_streams, create_playlist, json_of, playlist, run_import, wait_task


async def test_create_read_update_delete(admin: ApiClient, provider: FakeProvider) -> None:
    created = await create_playlist(
        admin,
        name=" My provider ",
        url="https://example.com/get.php?username=u&password=p",
        user_agent="VLC/3.0",
        headers={"Referer": "https://example.com/"},
        connection_limit=2,
        refresh_interval_minutes=360,
    )
    assert created["name"] == "My provider" and created["position"] == 0
    assert created["last_import_status"] is None and created["stream_count"] == 0
    assert created["created_at"].endswith("Z")
    second = await create_playlist(admin, name="Second", kind="m3u_file")
    assert second["position"] == 1 and second["url"] is None
    listing = await json_of(await admin.get("/tic-api/playlists?limit=1"), 200)
    assert listing["total"] == 2 and [p["id"] for p in listing["items"]] == [created["id"]]
    changed = await json_of(
        await admin.patch(
            f"/tic-api/playlists/{created['id']}", json={"enabled": False, "connection_limit": None}
        ),
        200,
    )
    assert (changed["enabled"], changed["connection_limit"], changed["user_agent"]) == (
        False,
        None,
        "VLC/3.0",
    )
    assert (await admin.delete(f"/tic-api/playlists/{created['id']}")).status_code == 204
    assert (await json_of(await admin.get(f"/tic-api/playlists/{created['id']}"), 404))[
        "code"
    ] == "PLAYLIST_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "", "kind": "m3u_url", "url": "http://h/x"}, {"name"}),
        ({"name": "x", "kind": "m3u_url"}, {"url"}),
        ({"name": "x", "kind": "m3u_url", "url": "ftp://h/x"}, {"url"}),
        ({"name": "x", "kind": "m3u_url", "url": "file:///etc/passwd"}, {"url"}),
        ({"name": "x", "kind": "xtream"}, {"xc_server", "xc_username", "xc_password"}),
        (
            {"name": "x", "kind": "xtream", "xc_server": "ftp://h", "xc_username": "u", "xc_password": "p"},
            {"xc_server"},
        ),
        ({"name": "x", "kind": "m3u_file", "user_agent": "a\r\nX-Evil: 1"}, {"user_agent"}),
        ({"name": "x", "kind": "m3u_file", "headers": {"Bad Name": "v"}}, {"headers"}),
        ({"name": "x", "kind": "m3u_file", "headers": {"X-A": "v\nX-B: w"}}, {"headers"}),
        ({"name": "x", "kind": "m3u_file", "refresh_interval_minutes": 1}, {"refresh_interval_minutes"}),
        ({"name": "x", "kind": "m3u_file", "connection_limit": 0}, {"connection_limit"}),
    ],
)
async def test_validation_names_every_bad_field(
    admin: ApiClient, body: dict[str, Any], fields: set[str]
) -> None:
    error = await json_of(await admin.post("/tic-api/playlists", json=body), 400)
    assert error["code"] == "PLAYLIST_INVALID"
    assert set(error["fields"]) == fields


async def test_wrong_types_and_unknown_fields_are_rejected(admin: ApiClient) -> None:
    error = await json_of(
        await admin.post(
            "/tic-api/playlists", json={"name": "x", "kind": "rss", "connection_limit": "2", "x": 1}
        ),
        400,
    )
    assert {"kind", "connection_limit", "x"} <= set(error["fields"])


async def test_names_are_unique_ignoring_case(admin: ApiClient) -> None:
    await create_playlist(admin, name="Provider", kind="m3u_file")
    error = await json_of(
        await admin.post("/tic-api/playlists", json={"name": "PROVIDER", "kind": "m3u_file"}), 409
    )
    assert error["code"] == "PLAYLIST_NAME_TAKEN" and "name" in error["fields"]
    other = await create_playlist(admin, name="Other", kind="m3u_file")
    error = await json_of(
        await admin.patch(f"/tic-api/playlists/{other['id']}", json={"name": "provider"}), 409
    )
    assert error["code"] == "PLAYLIST_NAME_TAKEN"


async def test_xtream_password_is_stored_encrypted_and_never_returned(admin: ApiClient, svc: Any) -> None:
    created = await create_playlist(
        admin, kind="xtream", xc_server="prov.example:8080/", xc_username="alice", xc_password="s3cret-pw"
    )
    assert created["xc_server"] == "http://prov.example:8080"
    assert created["xc_password"] == "********"
    async with svc.db.session() as session:
        row = await session.get(PlaylistSource, created["id"])
        assert b"s3cret-pw" not in row.xc_password_enc
        assert svc.keyring.decrypt(row.xc_password_enc) == "s3cret-pw"
    # Sending the mask back, or leaving the password out, keeps it; a new one replaces it.
    for patch in ({"xc_password": "********"}, {"xc_username": "alice2"}):
        body = await json_of(await admin.patch(f"/tic-api/playlists/{created['id']}", json=patch), 200)
        assert body["xc_password"] == "********"
    await json_of(
        await admin.patch(f"/tic-api/playlists/{created['id']}", json={"xc_password": "new-pw"}), 200
    )
    async with svc.db.session() as session:
        row = await session.get(PlaylistSource, created["id"])
        assert svc.keyring.decrypt(row.xc_password_enc) == "new-pw"
    everything = str(await json_of(await admin.get("/tic-api/playlists"), 200))
    assert "new-pw" not in everything and "s3cret-pw" not in everything
    # Switching to another kind drops the password.
    switched = await json_of(
        await admin.patch(
            f"/tic-api/playlists/{created['id']}", json={"kind": "m3u_url", "url": "http://h/x"}
        ),
        200,
    )
    assert switched["xc_password"] is None and switched["xc_server"] is None


async def test_only_admins_reach_the_playlists_api(streamer: ApiClient, admin: ApiClient) -> None:
    source = await create_playlist(admin, kind="m3u_file")
    for method, path in (
        ("GET", "/tic-api/playlists"),
        ("GET", f"/tic-api/playlists/{source['id']}/streams"),
        ("GET", "/tic-api/streams"),
        ("POST", f"/tic-api/playlists/update/{source['id']}"),
        ("DELETE", f"/tic-api/playlists/{source['id']}"),
    ):
        resp = await streamer.request(method, path)
        assert resp.status_code == 403, (method, path)


async def test_writes_need_the_csrf_token(admin: ApiClient) -> None:
    resp = await admin.client.post("/tic-api/playlists", json={"name": "x", "kind": "m3u_file"})
    assert resp.status_code == 403


async def test_update_is_deduplicated_per_playlist(
    admin: ApiClient, provider: FakeProvider, svc: Any
) -> None:
    provider.add_corpus_file("/a.m3u", "m3u/ipytv__m3u_plus.m3u")
    source = await create_playlist(admin, url=provider.url("/a.m3u"))
    await svc.broker.pause()
    first = await json_of(await admin.post(f"/tic-api/playlists/update/{source['id']}"), 202)
    again = await json_of(await admin.post(f"/tic-api/playlists/update/{source['id']}"), 202)
    assert first == again
    await svc.broker.resume()
    task = await wait_task(admin, first["task_id"])
    assert task["status"] == "succeeded" and task["key"] == f"playlist:{source['id']}"
    assert (await json_of(await admin.post("/tic-api/playlists/update/999"), 404))[
        "code"
    ] == "PLAYLIST_NOT_FOUND"


# -- the stream browser ----------------------------------------------------------------------------


@pytest.fixture
async def two_playlists(admin: ApiClient, provider: FakeProvider) -> tuple[dict[str, Any], dict[str, Any]]:
    provider.add_corpus_file("/fr.m3u", "m3u/freetv-iptv__playlist_france.m3u8")
    provider.add_corpus_file("/org.m3u", "m3u/ipytv__iptv-org-index-2022.m3u")
    france = await create_playlist(admin, name="France", url=provider.url("/fr.m3u"))
    org = await create_playlist(admin, name="Org", url=provider.url("/org.m3u"))
    await run_import(admin, france["id"])
    await run_import(admin, org["id"])
    return france, org


async def test_paging_is_complete_and_in_playlist_order(
    admin: ApiClient, two_playlists: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _france, org = two_playlists
    seen: list[int] = []
    lines: list[int] = []
    while True:
        page = await json_of(
            await admin.get(f"/tic-api/playlists/{org['id']}/streams?limit=400&offset={len(seen)}"), 200
        )
        assert page["total"] == 4601
        if not page["items"]:
            break
        assert len(page["items"]) <= 400
        seen += [s["id"] for s in page["items"]]
        lines += [s["line_no"] for s in page["items"]]
    assert len(seen) == len(set(seen)) == 4601
    assert lines == sorted(lines)
    for query in ("limit=0", "limit=501", "offset=-1", "limit=x"):
        resp = await admin.get(f"/tic-api/playlists/{org['id']}/streams?{query}")
        assert resp.status_code == 400, query
    assert (await json_of(await admin.get("/tic-api/playlists/999/streams"), 404))[
        "code"
    ] == "PLAYLIST_NOT_FOUND"


SEARCHES = [
    ("senat", ["Public Sénat"]),
    ("SÉNAT", ["Public Sénat"]),
    ("equipe", ["L'Équipe ⒹⒼ", "L'Équipe Ⓨ"]),
    ("l'ÉQUIPE  ⓨ", ["L'Équipe Ⓨ"]),
    ("cherie", ["RMC Life (ex-Chérie 25)"]),
    ("100%", []),
    ("_", []),
]


async def test_search_ignores_case_and_accents(
    admin: ApiClient, two_playlists: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    france, _org = two_playlists
    for query, names in SEARCHES:
        page = await json_of(
            await admin.get(f"/tic-api/playlists/{france['id']}/streams", query_string={"q": query}), 200
        )
        assert [s["name"] for s in page["items"]] == names, query
        assert page["total"] == len(names)


async def test_search_across_playlists_and_by_playlist(
    admin: ApiClient, two_playlists: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    france, org = two_playlists
    everywhere = await json_of(
        await admin.get("/tic-api/streams", query_string={"q": "france 24", "limit": 500}), 200
    )
    playlists = Counter(s["playlist_id"] for s in everywhere["items"])
    assert playlists[france["id"]] >= 1 and playlists[org["id"]] >= 1
    assert all("france 24" in s["name"].lower() for s in everywhere["items"])
    only_org = await json_of(
        await admin.get("/tic-api/streams", query_string={"q": "france 24", "playlist_id": org["id"]}), 200
    )
    assert only_org["total"] == playlists[org["id"]]
    one = everywhere["items"][0]
    assert await json_of(await admin.get(f"/tic-api/streams/{one['id']}"), 200) == one
    assert (await json_of(await admin.get("/tic-api/streams/0"), 404))["code"] == "STREAM_NOT_FOUND"


async def test_groups_with_counts_and_group_filter(
    admin: ApiClient, two_playlists: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _france, org = two_playlists
    entries = list(M3uParser().feed_bytes([corpus_path("m3u/ipytv__iptv-org-index-2022.m3u").read_bytes()]))
    expected = Counter(e.group for e in entries)
    groups = await json_of(await admin.get(f"/tic-api/playlists/{org['id']}/groups"), 200)
    assert {g["name"]: g["count"] for g in groups["items"]} == dict(expected)
    assert groups["total"] == len(expected)
    assert groups["items"][-1] == {"name": None, "count": 3028}
    names = [g["name"] for g in groups["items"][:-1]]
    assert names == sorted(names, key=str.casefold)
    news = await json_of(await admin.get(f"/tic-api/playlists/{org['id']}/streams?group=News&limit=500"), 200)
    assert news["total"] == expected["News"] and {s["group_title"] for s in news["items"]} == {"News"}
    ungrouped = await json_of(await admin.get(f"/tic-api/playlists/{org['id']}/streams?group=&limit=5"), 200)
    assert ungrouped["total"] == 3028 and all(s["group_title"] is None for s in ungrouped["items"])
    searched = await json_of(await admin.get(f"/tic-api/playlists/{org['id']}/streams?group=News&q=cnn"), 200)
    assert searched["items"] and all("cnn" in s["name"].lower() for s in searched["items"])
    everywhere = await json_of(await admin.get("/tic-api/streams/groups"), 200)
    assert {g["name"]: g["count"] for g in everywhere["items"]}["France"] == 32 + expected["France"]


# -- connection test -------------------------------------------------------------------------------


async def test_connection_test_for_m3u_urls(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/ok.m3u", "m3u/aptv__iptv.m3u")
    provider.fault("/login.m3u", "html_login")
    cases = [
        ("/ok.m3u", True, None, "it looks like an M3U playlist"),
        ("/login.m3u", False, "PLAYLIST_INVALID", "Reached the URL, but the provider returned an HTML page"),
        ("/missing.m3u?password=s3cret", False, "UPSTREAM_NOT_FOUND", "HTTP 404"),
    ]
    for path, ok, code, words in cases:
        body = await json_of(
            await admin.post("/tic-api/playlists/test", json={"kind": "m3u_url", "url": provider.url(path)}),
            200,
        )
        assert (body["ok"], body["code"]) == (ok, code), body
        assert words in body["message"] and "s3cret" not in body["message"]
    body = await json_of(
        await admin.post("/tic-api/playlists/test", json={"kind": "m3u_url", "url": "x"}), 200
    )
    assert body["ok"] is False and body["details"]["fields"] == {"url": "Must be an http:// or https:// URL"}


async def test_connection_test_for_xtream_uses_the_stored_password(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_xtream("alice", "s3cret-pw", live_streams=[{"name": "One"}])
    source = await create_playlist(
        admin, kind="xtream", xc_server=provider.url(""), xc_username="alice", xc_password="s3cret-pw"
    )
    test = {"kind": "xtream", "xc_server": provider.url(""), "xc_username": "alice"}
    body = await json_of(
        await admin.post("/tic-api/playlists/test", json={**test, "playlist_id": source["id"]}), 200
    )
    assert body["ok"] is True and body["details"]["status"] == "Active"
    assert body["message"].startswith("Logged in: account Active, expires 20")
    body = await json_of(
        await admin.post("/tic-api/playlists/test", json={**test, "xc_password": "wrong"}), 200
    )
    assert (body["ok"], body["code"]) == (False, "XTREAM_AUTH_FAILED")
    body = await json_of(await admin.post("/tic-api/playlists/test", json=test), 200)
    assert body["ok"] is False and "xc_password" in body["details"]["fields"]


# -- scheduled refresh -----------------------------------------------------------------------------


async def test_due_playlists_are_queued_by_the_periodic_job(
    admin: ApiClient, provider: FakeProvider, svc: Any
) -> None:
    provider.add_corpus_file("/a.m3u", "m3u/ipytv__m3u_plus.m3u")
    due = await create_playlist(admin, name="due", url=provider.url("/a.m3u"), refresh_interval_minutes=60)
    await create_playlist(admin, name="manual", url=provider.url("/a.m3u"))
    await create_playlist(
        admin, name="disabled", url=provider.url("/a.m3u"), refresh_interval_minutes=60, enabled=False
    )

    async def tick() -> dict[str, Any]:
        queued = await svc.broker.enqueue("refresh_due_playlists")
        return await wait_task(admin, queued.task_id)

    assert (await tick())["message"] == "Queued 1 playlist refresh(es)"
    tasks = await json_of(await admin.get("/tic-api/tasks?name=refresh_playlist"), 200)
    (run,) = tasks["items"] + tasks["queue"]
    assert run["key"] == f"playlist:{due['id']}" and run["requested_by"] == "scheduler"
    assert (await wait_task(admin, run["id"]))["status"] == "succeeded"
    assert (await playlist(admin, due["id"]))["stream_count"] == 4
    # Just imported: not due again until the interval has passed.
    assert (await tick())["message"] == "No playlist is due for a refresh"
    async with svc.db.transaction() as session:
        await session.execute(
            update(PlaylistSource)
            .where(PlaylistSource.id == due["id"])
            .values(last_import_at=utcnow().replace(year=2020))
        )
    assert (await tick())["message"] == "Queued 1 playlist refresh(es)"


async def test_deleting_a_playlist_removes_its_streams(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/a.m3u", "m3u/ipytv__m3u_plus.m3u")
    source = await create_playlist(admin, url=provider.url("/a.m3u"))
    await run_import(admin, source["id"])
    assert len(await all_streams(admin, source["id"])) == 4
    assert (await admin.delete(f"/tic-api/playlists/{source['id']}")).status_code == 204
    assert (await json_of(await admin.get("/tic-api/streams"), 200))["total"] == 0


async def test_credentials_in_urls_and_headers_are_never_shown_back(
    admin: ApiClient, provider: FakeProvider, svc: Any
) -> None:
    provider.add_corpus_file("/ok.m3u", "m3u/aptv__iptv.m3u")
    secret_url = provider.url("/ok.m3u?username=u&password=s3cret")
    created = await create_playlist(
        admin, url=secret_url, headers={"Authorization": "Bearer tok-123", "Referer": "http://r/"}
    )
    shown = await json_of(await admin.get(f"/tic-api/playlists/{created['id']}"), 200)
    assert shown["url"] == provider.url("/ok.m3u?username=***&password=***")
    assert shown["headers"] == {"Authorization": "********", "Referer": "http://r/"}
    page = await (await admin.get(f"/playlists/{created['id']}")).get_data(as_text=True)
    assert "password=***" in page and "s3cret" not in page and "tok-123" not in page
    # Sending back what the API showed (as an edit form does) keeps the stored secrets.
    await json_of(
        await admin.patch(
            f"/tic-api/playlists/{created['id']}",
            json={"name": "Renamed", "url": shown["url"], "headers": shown["headers"]},
        ),
        200,
    )
    async with svc.db.session() as session:
        row = await session.get(PlaylistSource, created["id"])
        assert row.url == secret_url and row.headers["Authorization"] == "Bearer tok-123"
    # The connection test of the saved source uses the stored values too.
    provider.requests.clear()
    body = await json_of(
        await admin.post(
            "/tic-api/playlists/test",
            json={
                "playlist_id": created["id"],
                "kind": "m3u_url",
                "url": shown["url"],
                "headers": shown["headers"],
            },
        ),
        200,
    )
    assert body["ok"] is True, body
    assert provider.requests[-1].headers["Authorization"] == "Bearer tok-123"
