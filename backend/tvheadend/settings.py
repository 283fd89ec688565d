"""TVHeadend connection settings: the URL with its HTTP root, the login TIC uses, and the timeout."""

from __future__ import annotations

from yarl import URL

from backend.settings.service import SettingDef, define


def tvh_url_problem(value: str) -> str | None:
    """Why `value` is not a usable TVHeadend URL, or None. Empty means "not configured" and is fine.

    The message never repeats the URL, since a URL with credentials in it must not end up in a reply.
    """
    if not value:
        return None
    try:
        url = URL(value)
    except (ValueError, TypeError):
        return "not a valid URL"
    if url.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not url.host:
        return "must name a host, e.g. http://tvheadend:9981/tic-tvh"
    if url.user is not None or url.password is not None:
        return "must not contain a user name or password; use the TVHeadend username and password settings"
    if url.query_string or url.fragment:
        return "must not have a query string or fragment"
    return None


TVH_URL = define(
    SettingDef(
        "tvh_url",
        str,
        "",
        "TVHeadend URL including its HTTP root, e.g. http://tvheadend:9981/tic-tvh (empty: not used).",
        validate=tvh_url_problem,
    )
)
TVH_USERNAME = define(
    SettingDef(
        "tvh_username",
        str,
        "",
        "TVHeadend user TIC logs in as (needs admin, web interface, streaming and DVR rights).",
    )
)
TVH_PASSWORD = define(
    SettingDef("tvh_password", str, "", "Password of that TVHeadend user (stored encrypted).", secret=True)
)
TVH_TIMEOUT = define(
    SettingDef(
        "tvh_timeout_seconds",
        int,
        15,
        "Seconds to wait for TVHeadend to connect and answer.",
        minimum=1,
        maximum=300,
    )
)
