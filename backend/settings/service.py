"""Typed settings with defaults in code and values in the database; the one way to read or write them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import utcnow
from backend.errors import Invalid
from backend.keys import Keyring
from backend.settings.models import Setting

MASK = "********"


@dataclass(frozen=True)
class SettingDef:
    key: str
    type: type
    default: Any
    description: str
    secret: bool = False
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    validate: Callable[[Any], str | None] | None = None


REGISTRY: dict[str, SettingDef] = {}


def define(setting: SettingDef) -> SettingDef:
    """Register a setting; domains call this at import time for their own keys."""
    REGISTRY[setting.key] = setting
    return setting


for _d in (
    SettingDef(
        "task_history_days", int, 14, "Days of finished task history to keep.", minimum=1, maximum=365
    ),
    SettingDef("task_timeout_seconds", int, 3600, "Default time limit for one background task.", minimum=10),
    SettingDef("broker_paused", bool, False, "Whether the task queue is paused (survives restarts)."),
    SettingDef(
        "download_max_bytes",
        int,
        2 * 1024 * 1024 * 1024,
        "Largest playlist or guide download accepted, in bytes.",
        minimum=1024,
    ),
    SettingDef("download_connect_timeout", int, 15, "Seconds to wait to connect to a provider.", minimum=1),
    SettingDef("download_read_timeout", int, 60, "Seconds to wait for data from a provider.", minimum=1),
    SettingDef(
        "user_agent",
        str,
        "TIC/0.1 (+https://github.com/tic)",
        "Default User-Agent for provider downloads.",
    ),
    SettingDef("public_base_url", str, "", "Base URL clients use to reach TIC (for generated links)."),
    SettingDef("metrics_public", bool, False, "Serve /metrics without authentication."),
):
    define(_d)


def _coerce(defn: SettingDef, value: Any) -> Any:
    if value is None:
        if defn.nullable:
            return None
        raise Invalid(f"{defn.key} cannot be empty", fields={defn.key: "required"})
    if defn.type is bool:
        if not isinstance(value, bool):
            raise Invalid(f"{defn.key} must be true or false", fields={defn.key: "expected a boolean"})
        return value
    if defn.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{defn.key} must be a whole number", fields={defn.key: "expected an integer"})
    elif defn.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{defn.key} must be a number", fields={defn.key: "expected a number"})
        value = float(value)
    elif defn.type is str:
        if not isinstance(value, str):
            raise Invalid(f"{defn.key} must be text", fields={defn.key: "expected a string"})
        value = value.strip()
    if defn.minimum is not None and value < defn.minimum:
        raise Invalid(f"{defn.key} must be at least {defn.minimum}", fields={defn.key: "too small"})
    if defn.maximum is not None and value > defn.maximum:
        raise Invalid(f"{defn.key} must be at most {defn.maximum}", fields={defn.key: "too large"})
    if defn.choices is not None and value not in defn.choices:
        raise Invalid(
            f"{defn.key} must be one of {', '.join(defn.choices)}", fields={defn.key: "not an allowed value"}
        )
    if defn.validate is not None:
        problem = defn.validate(value)
        if problem:
            raise Invalid(f"{defn.key}: {problem}", fields={defn.key: problem})
    return value


async def get_settings(session: AsyncSession, keyring: Keyring) -> dict[str, Any]:
    """All settings, decrypted, with defaults filled in."""
    rows = (await session.execute(select(Setting))).scalars().all()
    stored = {row.key: row.value for row in rows}
    values: dict[str, Any] = {}
    for key, defn in REGISTRY.items():
        if key in stored:
            raw = stored[key]
            values[key] = keyring.decrypt(raw.encode()) if defn.secret and raw else raw
        else:
            values[key] = defn.default
    return values


async def get_setting(session: AsyncSession, keyring: Keyring, key: str) -> Any:
    defn = REGISTRY[key]
    row = await session.get(Setting, key)
    if row is None:
        return defn.default
    if defn.secret and row.value:
        return keyring.decrypt(row.value.encode())
    return row.value


async def update_settings(session: AsyncSession, keyring: Keyring, changes: Mapping[str, Any]) -> list[str]:
    """Validate and store changes; returns the keys whose value changed. Unknown keys are a 400."""
    unknown = sorted(k for k in changes if k not in REGISTRY)
    if unknown:
        raise Invalid(
            f"Unknown setting(s): {', '.join(unknown)}", fields={k: "unknown setting" for k in unknown}
        )
    current = await get_settings(session, keyring)
    changed: list[str] = []
    for key, raw in changes.items():
        defn = REGISTRY[key]
        if defn.secret and raw == MASK:
            # The UI sends the mask back when the user did not touch the field.
            continue
        value = _coerce(defn, raw)
        if current.get(key) == value:
            continue
        stored: Any = keyring.encrypt(value).decode() if defn.secret and value else value
        row = await session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=stored, updated_at=utcnow()))
        else:
            row.value = stored
            row.updated_at = utcnow()
        changed.append(key)
    return changed


def public_view(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as the API shows them: secrets masked, never returned in full."""
    shown: dict[str, Any] = {}
    for key, value in values.items():
        defn = REGISTRY.get(key)
        if defn is not None and defn.secret:
            shown[key] = MASK if value else ""
        else:
            shown[key] = value
    return shown
