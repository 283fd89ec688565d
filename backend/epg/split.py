"""Reading one big XMLTV file as two halves at once: where to cut it, and the second half's process."""

from __future__ import annotations

import gzip
import lzma
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: Guides smaller than this are read in one piece: a second process would cost more than it saves
#: (the epg_split_min_mb setting).
SPLIT_MIN_BYTES = 32 * 1024 * 1024
#: How far into the file the root <tv> start tag may be (after the declaration and any DOCTYPE).
_PROLOGUE_MAX = 1024 * 1024
#: How far past the middle the cut may move to reach the start of a <programme>.
_SEEK_MAX = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
_TV_START = re.compile(rb"<tv(?:\s[^>]*)?>")
_PROGRAMME = re.compile(rb">\s*(<programme[\s>])")


@dataclass(frozen=True, slots=True)
class Plan:
    """A cut of a plain XMLTV file into [0, cut) + "</tv>" and prologue + padding + [cut, size)."""

    path: str
    prologue: bytes
    cut: int
    size: int
    #: Newlines to put after the prologue so the second half's line numbers are the file's own.
    padding: int


def is_compressed(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(6)
    return head.startswith(b"\x1f\x8b") or head == b"\xfd7zXZ\x00"


def decompress(path: Path, dest: Path) -> Path:
    """Write the plain XML of a gzip or xz file to `dest` (the halves need random access)."""
    with path.open("rb") as f:
        head = f.read(6)
    opener: Callable[..., Any] = gzip.open if head.startswith(b"\x1f\x8b") else lzma.open
    with opener(path, "rb") as source, dest.open("wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
    return dest


def plan(path: Path, min_bytes: int = SPLIT_MIN_BYTES) -> Plan | None:
    """Where to cut a plain guide in two, or None to read it whole (small, or no safe place found).

    The cut is just before a <programme> that follows a closing '>', a little past the middle. A
    cut that lands somewhere odd (inside a comment or CDATA) makes one half fail to parse; the
    caller then reads the file whole, so the outcome is always that of a single reading.
    """
    size = path.stat().st_size
    if size < min_bytes or (os.cpu_count() or 1) < 2:
        return None
    with path.open("rb") as f:
        head = f.read(_PROLOGUE_MAX)
        tv = _TV_START.search(head)
        if tv is None:
            return None
        prologue = head[: tv.end()]
        f.seek(size // 2)
        window = f.read(_SEEK_MAX)
    found = _PROGRAMME.search(window)
    if found is None:
        return None
    cut = size // 2 + found.start(1)
    newlines = 0
    with path.open("rb") as f:
        remaining = cut
        while remaining:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                return None
            newlines += chunk.count(b"\n")
            remaining -= len(chunk)
    return Plan(str(path), prologue, cut, size, newlines - prologue.count(b"\n"))


class PartReader:
    """A byte range of a file as a readable stream, with bytes put before and after it."""

    def __init__(self, path: str, start: int, end: int, before: bytes, after: bytes) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._file.seek(start)
        self._left = end - start
        self._before = before
        self._after = after
        #: Bytes of the file itself read so far, for progress.
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        if self._before:
            data, self._before = self._before[:size], self._before[size:]
            return data
        if self._left > 0:
            data = self._file.read(min(size, self._left))
            self._left -= len(data)
            self.count += len(data)
            if data:
                return data
            self._left = 0
        data, self._after = self._after[:size], self._after[size:]
        return data

    def close(self) -> None:
        self._file.close()


def first_half(p: Plan) -> PartReader:
    return PartReader(p.path, 0, p.cut, b"", b"\n</tv>\n")


def second_half(p: Plan) -> PartReader:
    return PartReader(p.path, p.cut, p.size, p.prologue + b"\n" * p.padding, b"")


def start_second_half(target: Callable[..., None], *args: Any) -> tuple[Any, Connection]:
    """Start the second half's process (spawned: a clean interpreter, not a fork of this one)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(sender, os.getpid(), *args), daemon=True)
    process.start()
    sender.close()
    return process, receiver
