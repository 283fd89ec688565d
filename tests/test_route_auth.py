"""Walks the app's URL map: every route must refuse callers without the right login."""

from __future__ import annotations

from typing import Any

from backend.auth.guard import route_policy
from tests.conftest import ApiClient

# Routes that are deliberately reachable without a login. Adding one here is a security decision.
PUBLIC_ALLOWLIST = {
    "/setup",
    "/login",
    "/tic-api/setup",
    "/tic-api/auth/login",
    "/tic-api/health",
    "/tic-api/version",
    "/metrics",  # checks admin auth itself unless metrics_public is on; see test_metrics_need_admin
    "/docs",
    "/openapi.json",
    "/static/<path:filename>",
    # Channel logos for IPTV clients: only already-cached images, served sandboxed; see tests/channels.
    "/tic-api/logos/<int:channel_id>",
}


def sample_path(rule: Any) -> str:
    path = rule.rule
    for arg in rule.arguments:
        if arg not in rule._converters:  # a default filled in by the route, not part of the URL
            continue
        conv = rule._converters[arg].__class__.__name__
        value = "1" if conv == "IntegerConverter" else "sample"
        for pattern in (f"<int:{arg}>", f"<path:{arg}>", f"<string:{arg}>", f"<{arg}>"):
            path = path.replace(pattern, value)
    return path


def routes(app: Any) -> list[tuple[str, str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            policy = route_policy(app.view_functions, rule.endpoint)
            out.append((method, rule.rule, sample_path(rule), policy))
    return out


async def test_public_routes_are_only_the_allowlisted_ones(app: Any) -> None:
    public = {rule for _m, rule, _p, policy in routes(app) if policy == "public"}
    assert public == PUBLIC_ALLOWLIST


async def test_every_route_refuses_anonymous_callers(app: Any, admin: ApiClient) -> None:
    anon = app.test_client()
    checked = 0
    for method, rule, path, policy in routes(app):
        if policy == "public":
            continue
        resp = await anon.open(path, method=method, json={} if method != "GET" else None)
        if path.startswith(("/tic-api/", "/metrics")):
            assert resp.status_code == 401, f"{method} {rule} answered {resp.status_code} without auth"
            assert "code" in await resp.get_json()
        else:
            assert resp.status_code == 302, f"{method} {rule} answered {resp.status_code} without auth"
            assert resp.headers["Location"].startswith("/login")
        checked += 1
    assert checked >= 40


async def test_admin_routes_refuse_streamers(app: Any, streamer: ApiClient) -> None:
    checked = 0
    for method, rule, path, policy in routes(app):
        if policy not in ("admin", "admin_same_origin"):
            continue
        resp = await streamer.request(method, path, json={} if method != "GET" else None)
        assert resp.status_code == 403, f"{method} {rule} let a streamer through ({resp.status_code})"
        checked += 1
    assert checked >= 30


async def test_metrics_need_admin(app: Any, admin: ApiClient, streamer: ApiClient) -> None:
    anon = app.test_client()
    assert (await anon.get("/metrics")).status_code == 401
    assert (await streamer.get("/metrics")).status_code == 403
    ok = await admin.get("/metrics")
    assert ok.status_code == 200
    text = await ok.get_data(as_text=True)
    assert "tic_http_requests_total" in text and "tic_event_loop_lag_seconds" in text
    assert (await admin.patch("/tic-api/settings", json={"metrics_public": True})).status_code == 200
    assert (await anon.get("/metrics")).status_code == 200
