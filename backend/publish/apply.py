"""Applying a plan to TVHeadend: bounded concurrency, batched saves and deletes, waiting for scans."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.publish.plan import READ_PAGE_SIZE, Op, RecordKey
from backend.tvheadend.client import TvheadendClient, TvheadendError

log = logging.getLogger(__name__)

#: idnode/save and idnode/delete take lists; this many objects go in one call.
SAVE_BATCH = 50
DELETE_BATCH = 100
#: Errors about one object (it vanished, or TVHeadend rejected its arguments): skip it and go on.
#: Anything else (unreachable, timed out, refused credentials, 5xx) stops the run.
OBJECT_ERRORS = frozenset({"TVH_BAD_REQUEST", "TVH_NOT_FOUND"})

Progress = Callable[[str], Awaitable[None]]


@dataclass
class ApplyStats:
    writes: int = 0
    reads: int = 0
    applied: list[Op] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: (kind, key) -> (uuid, field digests) of every object created or updated in this run.
    written: dict[RecordKey, tuple[str, dict[str, str]]] = field(default_factory=dict)
    #: Muxes created in this run, whose scans are worth waiting for.
    new_muxes: set[str] = field(default_factory=set)


class Applier:
    """Runs ops against one TVHeadend with at most `concurrency` calls in flight.

    The first error that is not about a single object stops new calls; calls already in flight finish
    (their results are recorded, so nothing they created is lost or duplicated), then it is raised.
    """

    def __init__(self, client: TvheadendClient, concurrency: int, stats: ApplyStats) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.stats = stats
        self._fatal: BaseException | None = None

    async def run(self, ops: Sequence[Op], claims: dict[RecordKey, str]) -> None:
        deletes = [op for op in ops if op.action == "delete"]
        updates = [op for op in ops if op.action == "update"]
        creates = [op for op in ops if op.action == "create"]
        jobs: list[Callable[[], Awaitable[None]]] = []
        for kind in ("channel", "mux", "network", "tag"):
            batch = [op for op in deletes if op.kind == kind]
            for i in range(0, len(batch), DELETE_BATCH):
                jobs.append(self._delete_job(batch[i : i + DELETE_BATCH]))
        await self._pool(jobs)
        jobs = []
        for kind in ("tag", "network", "mux", "channel"):
            batch = [op for op in updates if op.kind == kind]
            for i in range(0, len(batch), SAVE_BATCH):
                jobs.append(self._save_job(batch[i : i + SAVE_BATCH]))
        jobs += [self._create_job(op, claims) for op in creates]
        await self._pool(jobs)

    async def _pool(self, jobs: list[Callable[[], Awaitable[None]]]) -> None:
        queue = list(reversed(jobs))

        async def worker() -> None:
            while queue and self._fatal is None:
                job = queue.pop()
                await job()

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(jobs)))))
        if self._fatal is not None:
            raise self._fatal

    async def _call(self, ops: Sequence[Op], call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one TVHeadend write; None when it failed for object-level reasons (recorded)."""
        try:
            result = await call()
        except TvheadendError as exc:
            self.stats.writes += 1
            if exc.code in OBJECT_ERRORS:
                for op in ops:
                    self.stats.failed.append({**op.to_dict(), "error": exc.message, "code": exc.code})
                log.warning("TVHeadend rejected %s %s '%s': %s", ops[0].action, ops[0].kind, ops[0].name, exc)
                return None
            if self._fatal is None:
                self._fatal = exc
            return None
        self.stats.writes += 1
        return result if result is not None else True

    def _delete_job(self, ops: list[Op]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            uuids = [op.uuid for op in ops if op.uuid]
            # A list (not a single uuid) so that objects already gone are skipped instead of failing.
            if await self._call(ops, lambda: self.client.idnode_delete(uuids)) is not None:
                self.stats.applied += ops

        return job

    def _save_job(self, ops: list[Op]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            nodes = [{"uuid": op.uuid, **_clean(op.fields)} for op in ops]
            if await self._call(ops, lambda: self.client.idnode_save(nodes)) is not None:
                self.stats.applied += ops
                for op in ops:
                    if op.key is not None and op.uuid is not None:
                        self.stats.written[(op.kind, op.key)] = (op.uuid, op.digests)

        return job

    def _create_job(self, op: Op, claims: dict[RecordKey, str]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            conf = _clean(op.fields)
            client = self.client
            call: Callable[[], Awaitable[str]]
            if op.kind == "tag":
                call = lambda: client.channeltag_create(conf)  # noqa: E731
            elif op.kind == "network":
                call = lambda: client.network_create("iptv_network", conf)  # noqa: E731
            elif op.kind == "mux":
                network = claims.get(("network", op.parent_key or ""))
                if network is None:
                    self.stats.failed.append(
                        {**op.to_dict(), "error": "its network could not be created", "code": "NO_NETWORK"}
                    )
                    return
                call = lambda: client.mux_create(network, conf)  # noqa: E731
            else:
                call = lambda: client.channel_create(conf)  # noqa: E731
            uuid = await self._call([op], call)
            if isinstance(uuid, str):
                op.uuid = uuid
                self.stats.applied.append(op)
                if op.key is not None:
                    claims[(op.kind, op.key)] = uuid
                    self.stats.written[(op.kind, op.key)] = (uuid, op.digests)
                if op.kind == "mux":
                    self.stats.new_muxes.add(uuid)

        return job


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop placeholders for objects that do not exist yet (a tag whose create failed)."""
    out = dict(fields)
    for key in ("tags", "services"):
        if isinstance(out.get(key), list):
            out[key] = [v for v in out[key] if not str(v).startswith("new:")]
    return out


async def wait_for_scans(
    client: TvheadendClient,
    muxes: set[str],
    timeout: float,
    interval: float,
    stats: ApplyStats,
    progress: Progress | None = None,
) -> set[str]:
    """Wait until TVHeadend has scanned `muxes` (or `timeout` passes); returns those still unscanned."""
    pending = set(muxes)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while pending and time.monotonic() < deadline:
        # Short first waits (a scan can take well under a second), then at most `interval` apart.
        await asyncio.sleep(min(delay, interval, max(0.0, deadline - time.monotonic())))
        delay *= 2
        rows = await client.grid(
            "mpegts/mux/grid",
            {"hidemode": "none", "list": "uuid,scan_state,scan_result,num_svc"},
            page_size=READ_PAGE_SIZE,
        )
        stats.reads += max(1, -(-len(rows) // READ_PAGE_SIZE))
        seen = {row["uuid"]: row for row in rows}
        for uuid in list(pending):
            found = seen.get(uuid)
            if found is None or _scanned(found):
                pending.discard(uuid)
        if progress is not None:
            await progress(f"Waiting for TVHeadend to scan {len(pending)} of {len(muxes)} new mux(es)")
    return pending


def _scanned(row: dict[str, Any]) -> bool:
    """Scan finished (idle with a result), or a service already showed up."""
    idle_with_result = int(row.get("scan_state") or 0) == 0 and int(row.get("scan_result") or 0) != 0
    return idle_with_result or int(row.get("num_svc") or 0) > 0
