"""Which routes this app has, so pages link only to features that are installed (domains land independently)."""

from __future__ import annotations

from quart import current_app
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from backend.auth.guard import route_policy
from backend.auth.models import ADMIN


def route_endpoint(path: str, method: str = "GET") -> str | None:
    """The endpoint serving `method path`, or None when the app has no such route."""
    adapter = current_app.url_map.bind("localhost")
    try:
        endpoint, _args = adapter.match(path, method=method)
    except (HTTPException, RequestRedirect):
        return None
    return str(endpoint)


def has_route(path: str, method: str = "GET") -> bool:
    return route_endpoint(path, method) is not None


def user_may_open(path: str, role: str) -> bool:
    """Whether a user of `role` passes the route's auth policy (so the nav never links to a 403)."""
    endpoint = route_endpoint(path)
    if endpoint is None:
        return False
    policy = route_policy(current_app.view_functions, endpoint)
    return policy in ("public", "user") or role == ADMIN
