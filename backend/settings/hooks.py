"""What happens after settings change: domains register callbacks (e.g. queue a TVH configure)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

ChangeHook = Callable[[Any, list[str]], Awaitable[None]]
HOOKS: list[ChangeHook] = []


def on_settings_changed(hook: ChangeHook) -> ChangeHook:
    HOOKS.append(hook)
    return hook


async def run_change_hooks(svc: Any, changed: list[str]) -> None:
    if not changed:
        return
    if "broker_paused" in changed:
        async with svc.db.session() as session:
            from backend.settings.service import get_setting

            paused = await get_setting(session, svc.keyring, "broker_paused")
        await (svc.broker.pause() if paused else svc.broker.resume())
    for hook in HOOKS:
        await hook(svc, changed)
