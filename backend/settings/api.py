"""JSON API for runtime settings: read all (secrets masked) and patch some."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from backend.edge import services
from backend.errors import Invalid
from backend.settings import service
from backend.settings.hooks import run_change_hooks

bp = Blueprint("settings", __name__, url_prefix="/tic-api/settings")


@bp.get("")
async def get_settings() -> dict[str, Any]:
    """All settings with their current values; secrets are masked."""
    svc = services()
    async with svc.db.session() as session:
        values = await service.get_settings(session, svc.keyring)
    return {
        "values": service.public_view(values),
        "definitions": {
            d.key: {
                "type": d.type.__name__,
                "default": service.MASK if d.secret and d.default else d.default,
                "description": d.description,
                "secret": d.secret,
                "choices": list(d.choices) if d.choices else None,
            }
            for d in service.REGISTRY.values()
        },
    }


@bp.patch("")
async def update_settings() -> dict[str, Any]:
    """Change settings: a JSON object of key -> value. Unknown keys and wrong types are a 400."""
    svc = services()
    body = await request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid("Send a JSON object of setting names and values", code="INVALID_JSON")
    async with svc.db.transaction() as session:
        changed = await service.update_settings(session, svc.keyring, body)
        values = await service.get_settings(session, svc.keyring)
    await run_change_hooks(svc, changed)
    return {"values": service.public_view(values), "changed": changed}
