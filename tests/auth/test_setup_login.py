"""First-run setup, login/logout, CSRF, roles, API tokens, rate limits and stream keys through the HTTP API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.auth.models import ApiToken, AuthSession, User
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, ApiClient, login


async def test_fresh_install_requires_setup(client: Any) -> None:
    resp = await client.get("/tic-api/users")
    assert resp.status_code == 503
    assert (await resp.get_json())["code"] == "SETUP_REQUIRED"
    page = await client.get("/")
    assert page.status_code == 302 and page.headers["Location"] == "/setup"
    assert (await client.get("/login")).headers["Location"] == "/setup"
    setup = await client.get("/setup")
    assert setup.status_code == 200
    assert "Create admin" in await setup.get_data(as_text=True)


async def test_setup_creates_admin_once_with_hashed_password(client: Any, svc: Any) -> None:
    resp = await client.post("/tic-api/setup", json={"username": "root", "password": "short"})
    assert resp.status_code == 400
    assert "password" in (await resp.get_json())["fields"]
    resp = await client.post("/tic-api/setup", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert resp.status_code == 201
    body = await resp.get_json()
    assert body["role"] == "admin" and body["created_at"].endswith("Z")
    again = await client.post("/tic-api/setup", json={"username": "second", "password": ADMIN_PASSWORD})
    assert again.status_code == 409
    async with svc.db.session() as session:
        user = (await session.execute(select(User))).scalar_one()
    assert user.password_hash.startswith("$argon2id$")
    assert ADMIN_PASSWORD not in user.password_hash


async def test_setup_page_form_flow(client: Any) -> None:
    page = await client.get("/setup")
    html = await page.get_data(as_text=True)
    token = html.split('name="csrf_token" value="')[1].split('"')[0]
    bad = await client.post(
        "/setup", form={"csrf_token": "wrong", "username": "a", "password": "x", "password2": "x"}
    )
    assert bad.status_code == 403
    mismatch = await client.post(
        "/setup",
        form={"csrf_token": token, "username": "boss", "password": "longenough1", "password2": "other123"},
    )
    assert mismatch.status_code == 400
    assert "differ" in await mismatch.get_data(as_text=True)
    ok = await client.post(
        "/setup",
        form={"csrf_token": token, "username": "boss", "password": "longenough1", "password2": "longenough1"},
    )
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    # A new install with an empty lineup starts on the welcome wizard, not the (empty) dashboard.
    dash = await client.get("/")
    assert dash.status_code == 302 and dash.headers["Location"] == "/welcome"
    welcome = await client.get("/welcome", follow_redirects=True)
    assert welcome.status_code == 200


async def test_login_logout_and_session_cookie(app: Any, admin: ApiClient) -> None:
    client = app.test_client()
    bad = await client.post("/tic-api/auth/login", json={"username": ADMIN_USER, "password": "nope-nope"})
    assert bad.status_code == 401
    assert (await bad.get_json())["code"] == "BAD_CREDENTIALS"
    resp = await client.post("/tic-api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert resp.status_code == 200
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csrf = (await resp.get_json())["csrf_token"]
    assert (await client.get("/tic-api/auth/me")).status_code == 200
    out = await client.post("/tic-api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200
    assert (await client.get("/tic-api/auth/me")).status_code == 401


async def test_sessions_are_stored_hashed(admin: ApiClient, svc: Any) -> None:
    async with svc.db.session() as session:
        rows = (await session.execute(select(AuthSession))).scalars().all()
    assert rows
    cookie_values = [c.value for c in admin.client.cookie_jar]
    for row in rows:
        assert row.token_hash not in cookie_values
        assert len(row.token_hash) == 64


async def test_csrf_required_for_cookie_writes(admin: ApiClient) -> None:
    no_token = await admin.client.post("/tic-api/users", json={"username": "x1", "password": "password1"})
    assert no_token.status_code == 403
    assert (await no_token.get_json())["code"] == "CSRF_FAILED"
    wrong = await admin.client.post(
        "/tic-api/users", json={"username": "x1", "password": "password1"}, headers={"X-CSRF-Token": "forged"}
    )
    assert wrong.status_code == 403
    ok = await admin.post("/tic-api/users", json={"username": "x1", "password": "password1"})
    assert ok.status_code == 201


async def test_streamer_cannot_use_admin_api(streamer: ApiClient) -> None:
    for method, path in [
        ("GET", "/tic-api/users"),
        ("GET", "/tic-api/tasks"),
        ("PATCH", "/tic-api/settings"),
    ]:
        resp = await streamer.request(method, path, json={})
        assert resp.status_code == 403, path
        assert (await resp.get_json())["code"] == "ADMIN_REQUIRED"
    me = await streamer.get("/tic-api/users/self")
    assert me.status_code == 200 and (await me.get_json())["role"] == "streamer"
    page = await streamer.get("/")
    assert page.status_code == 302 and page.headers["Location"] == "/account"
    assert (await streamer.get("/users")).status_code == 403


async def test_api_tokens(app: Any, admin: ApiClient, svc: Any) -> None:
    resp = await admin.post("/tic-api/auth/tokens", json={"name": "backup script"})
    assert resp.status_code == 201
    created = await resp.get_json()
    token = created["token"]
    bare = app.test_client()
    ok = await bare.get("/tic-api/users", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and (await ok.get_json())["total"] == 1
    # Bearer requests carry no cookie, so they need no CSRF header.
    write = await bare.post(
        "/tic-api/users",
        json={"username": "script-made", "password": "password1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert write.status_code == 201
    listed = await (await admin.get("/tic-api/auth/tokens")).get_json()
    assert listed["total"] == 1 and "token" not in listed["items"][0]
    async with svc.db.session() as session:
        row = (await session.execute(select(ApiToken))).scalar_one()
    assert row.token_hash != token
    assert (await admin.delete(f"/tic-api/auth/tokens/{created['id']}")).status_code == 204
    revoked = await bare.get("/tic-api/users", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401
    assert (
        await bare.get("/tic-api/users", headers={"Authorization": "Bearer tic_garbage"})
    ).status_code == 401


async def test_login_rate_limited_per_user(app: Any, admin: ApiClient) -> None:
    client = app.test_client()
    codes = []
    for _ in range(7):
        resp = await client.post(
            "/tic-api/auth/login", json={"username": ADMIN_USER, "password": "wrong-pass"}
        )
        codes.append(resp.status_code)
    assert codes[:5] == [401] * 5
    assert codes[5] == 429
    limited = await client.post(
        "/tic-api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    )
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0


async def test_login_rate_limited_per_ip(app: Any, admin: ApiClient) -> None:
    client = app.test_client()
    statuses = []
    for i in range(12):
        resp = await client.post(
            "/tic-api/auth/login", json={"username": f"ghost{i}", "password": "wrong-pass"}
        )
        statuses.append(resp.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]


async def test_stream_key_rotation_and_storage(admin: ApiClient, streamer: ApiClient, svc: Any) -> None:
    own = await (await streamer.get("/tic-api/users/self/stream-key")).get_json()
    key = own["stream_key"]
    assert len(key) >= 22  # at least 128 bits in URL-safe base64
    async with svc.db.session() as session:
        user = (await session.execute(select(User).where(User.username == "viewer"))).scalar_one()
    assert key not in user.stream_key_hash and key.encode() not in user.stream_key_enc
    rotated = await (await streamer.post("/tic-api/users/self/rotate-stream-key")).get_json()
    assert rotated["stream_key"] != key
    by_admin = await admin.post(f"/tic-api/users/{streamer.user['id']}/rotate-stream-key")
    assert by_admin.status_code == 200
    new = (await by_admin.get_json())["stream_key"]
    seen = await (await streamer.get("/tic-api/users/self/stream-key")).get_json()
    assert seen["stream_key"] == new != rotated["stream_key"]
    denied = await streamer.post(f"/tic-api/users/{admin.user['id']}/rotate-stream-key")
    assert denied.status_code == 403


async def test_password_change_ends_sessions(app: Any, admin: ApiClient, streamer: ApiClient) -> None:
    resp = await admin.patch(f"/tic-api/users/{streamer.user['id']}", json={"password": "brand-new-pass"})
    assert resp.status_code == 200
    assert (await streamer.get("/tic-api/users/self")).status_code == 401
    await login(app, "viewer", "brand-new-pass")


async def test_last_admin_is_protected(admin: ApiClient) -> None:
    resp = await admin.patch(f"/tic-api/users/{admin.user['id']}", json={"role": "streamer"})
    assert resp.status_code == 409 and (await resp.get_json())["code"] == "LAST_ADMIN"
    assert (await admin.delete(f"/tic-api/users/{admin.user['id']}")).status_code == 409


async def test_secret_key_file_is_private(svc: Any) -> None:
    path = svc.config.data_dir / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
