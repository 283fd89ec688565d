"""Helpers shared by the edges (API blueprints, pages, proxy): services, client address, paging."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from quart import Response, current_app, request

from backend.errors import Invalid
from backend.runtime import AppServices
from backend.tasks.offload import run_blocking

API_PREFIXES = ("/tic-api/", "/metrics", "/openapi.json")

#: Path patterns whose request bodies may be as large as the upload limit (file uploads, the TVH proxy).
#: Every other body is capped at Config.max_json_bytes while it is read, chunked or not.
LARGE_BODY_PATHS: list[re.Pattern[str]] = []


def allow_large_bodies(pattern: str) -> None:
    LARGE_BODY_PATHS.append(re.compile(pattern))


def body_limit(path: str, small: int, large: int) -> int:
    return large if any(p.match(path) for p in LARGE_BODY_PATHS) else small


def services() -> AppServices:
    svc: AppServices = current_app.extensions["tic"]
    return svc


def wants_json() -> bool:
    """API paths always answer JSON; pages answer HTML."""
    return request.path.startswith(API_PREFIXES)


def client_ip() -> str:
    trusted = services().config.trusted_proxies
    if trusted > 0:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        if len(forwarded) >= trusted:
            return forwarded[-trusted]
    return request.remote_addr or "unknown"


def page_args(default_limit: int = 50, max_limit: int = 500) -> tuple[int, int]:
    """limit/offset from the query string, validated."""
    try:
        limit = int(request.args.get("limit", default_limit))
        offset = int(request.args.get("offset", 0))
    except ValueError as exc:
        raise Invalid("limit and offset must be whole numbers", fields={"limit": "integer"}) from exc
    if not 1 <= limit <= max_limit:
        raise Invalid(f"limit must be between 1 and {max_limit}", fields={"limit": "out of range"})
    if offset < 0:
        raise Invalid("offset must not be negative", fields={"offset": "out of range"})
    return limit, offset


def listing(items: list[Any], total: int) -> dict[str, Any]:
    return {"items": items, "total": total}


# -- uploads -------------------------------------------------------------------------------------------

_UPLOAD_BATCH = 1024 * 1024


async def receive_upload(
    final: Path, *, default_name: str, kind: str, sniff: Callable[[Path], str | None], code: str
) -> tuple[str, int]:
    """Stream the request's file (multipart field `file`, or the raw body) into `final`, atomically.

    The bytes go to a part file beside `final`, which replaces it only when it is not empty and `sniff`
    (run off the loop on the part file) finds nothing wrong, so a bad upload keeps the previous good
    file. Returns the client's file name and the size; raises Invalid with `code` when `sniff` objects.
    """
    part = final.with_name(f"{final.name}.{uuid.uuid4().hex[:8]}.part")
    await run_blocking(lambda: final.parent.mkdir(parents=True, exist_ok=True))
    try:
        filename, size = await _receive_to(part, default_name, kind)
        if size == 0:
            raise Invalid(
                "The uploaded file is empty", code="UPLOAD_EMPTY", fields={"file": "The file is empty"}
            )
        problem = await run_blocking(sniff, part)
        if problem is not None:
            raise Invalid(f"The uploaded file is not {kind}: {problem}", code=code, fields={"file": problem})
        await run_blocking(part.replace, final)
    finally:
        await run_blocking(part.unlink, True)
    return filename, size


async def _receive_to(part: Path, default_name: str, kind: str) -> tuple[str, int]:
    if request.mimetype == "multipart/form-data":
        # Quart spools multipart files to a temporary file as they arrive; copy that, off the loop.
        files = await request.files
        upload = files.get("file")
        if upload is None:
            raise Invalid(f"Send {kind} as the multipart field 'file'", fields={"file": "Choose a file"})
        size = await run_blocking(_copy_stream, upload.stream, part)
        return upload.filename or default_name, size
    size = 0
    batch = bytearray()
    f = await run_blocking(part.open, "wb")
    try:
        async for chunk in request.body:
            size += len(chunk)
            batch += chunk
            if len(batch) >= _UPLOAD_BATCH:
                data, batch = bytes(batch), bytearray()
                await run_blocking(f.write, data)
        if batch:
            await run_blocking(f.write, bytes(batch))
    finally:
        await run_blocking(f.close)
    return request.args.get("filename", default_name), size


def _copy_stream(stream: BinaryIO, part: Path) -> int:
    with part.open("wb") as out:
        shutil.copyfileobj(stream, out, _UPLOAD_BATCH)
        return out.tell()


# -- big JSON answers ------------------------------------------------------------------------------------

#: List items encoded between two returns to the event loop.
ENCODE_SLICE = 250


async def json_in_slices(
    payload: dict[str, Any], key: str = "items", per_slice: int = ENCODE_SLICE
) -> Response:
    """Encode an answer whose `key` holds thousands of items a slice at a time, yielding in between.

    One json.dumps (or one pydantic validation) of a few megabytes holds the GIL for its whole run, in a
    worker thread as much as here; slices keep every pause of the loop short. Routes using this
    document their schema with `document_response` instead of validating the answer.
    """
    items = payload[key]
    head = json.dumps({k: v for k, v in payload.items() if k != key}, ensure_ascii=False)[:-1]
    parts = [head, ", " if head != "{" else "", json.dumps(key), ": ["]
    for start in range(0, len(items), per_slice):
        if start:
            parts.append(",")
            await asyncio.sleep(0)
        parts.append(
            ",".join(json.dumps(item, ensure_ascii=False) for item in items[start : start + per_slice])
        )
    parts.append("]}")
    return Response("".join(parts), content_type="application/json; charset=utf-8")
