"""Settings the admin UI defines: the first-run wizard's progress."""

from __future__ import annotations

from backend.settings.service import SettingDef, define
from backend.ui.wizard_state import validate_progress

WIZARD_PROGRESS = define(
    SettingDef(
        "ui_wizard_progress",
        str,
        "",
        "First-run wizard progress (steps done or skipped). Empty it to run the wizard again.",
        validate=validate_progress,
    )
)
