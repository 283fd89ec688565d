"""The worker's rows: the shortcut for simple entries gives exactly the rows of the general path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.playlists.m3u import Extinf, M3uEntry, M3uParser
from backend.playlists.worker import RowWriter
from tests.fakes.upstream import CORPUS_DIR, GEN_CORPUS

BASE = "http://provider.example/lists/main.m3u"


class _Rows:
    """A RowWriter's sink that keeps the rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows += rows

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class _Counting(RowWriter):
    """A RowWriter that counts which path each entry took."""

    simple_count = 0
    entry_count = 0

    def simple(self, info: Extinf, url: str) -> None:
        self.simple_count += 1
        super().simple(info, url)

    def entry(self, entry: M3uEntry) -> None:
        self.entry_count += 1
        super().entry(entry)


def _both(
    data: bytes, chunk: int = 1 << 20
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], _Counting]:
    """Rows through the parser's sink (shortcut included) and rows from whole M3uEntry records."""
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    fast_rows = _Rows()
    fast = _Counting(7, fast_rows, None)  # type: ignore[arg-type]
    parser = M3uParser(BASE, sink=fast)
    for piece in chunks:
        assert parser.push(piece) == []
    assert parser.finish() == []
    fast.finish()
    slow_rows = _Rows()
    slow = RowWriter(7, slow_rows, None)  # type: ignore[arg-type]
    slow.add(M3uParser(BASE).feed_bytes(chunks), lambda: 0.0)
    slow.finish()
    assert slow.duplicates == fast.duplicates
    return fast_rows.rows, slow_rows.rows, fast


@pytest.mark.parametrize("name", sorted(p.name for p in (CORPUS_DIR / "m3u").iterdir()))
def test_corpus_rows_are_the_same_both_ways(name: str) -> None:
    fast, slow, writer = _both((CORPUS_DIR / "m3u" / name).read_bytes())
    assert fast == slow
    assert writer.simple_count + writer.entry_count == len(slow)


def test_generated_rows_are_the_same_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "gen.m3u"
    subprocess.run(
        [sys.executable, str(GEN_CORPUS), "m3u", "--entries", "20000", "--seed", "5", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    # Odd chunk sizes put line ends and UTF-8 sequences across chunk boundaries.
    fast, slow, writer = _both(out.read_bytes(), chunk=65_537)
    assert fast == slow and len(slow) == 20_000
    # Most entries of such a playlist are simple; the rest (headers, catchup, options) are not.
    assert 15_000 < writer.simple_count < 20_000 and writer.entry_count > 500


@pytest.mark.parametrize(
    "text",
    [
        # Folded attributes with surrounding spaces, empty values, logo only in `logo`, channel-number.
        '#EXTINF:-1 tvg-id=" a " tvg-name="" logo="http://l/x.png" channel-number="7",\nhttp://h/1',
        '#EXTINF:-1 tvg-logo="" logo="https://l/y.png" tvg-chno=" 3" group-title="",N\nhttp://h/2',
        '#EXTINF:-1 tvg-logo="javascript:alert(1)" x-custom="1" group-title=" G ",N\nhttp://h/3',
        # No name: tvg-name, then tvg-id, then the URL's last path segment.
        '#EXTINF:-1 tvg-name="From Name",\nhttp://h/4\n#EXTINF:-1 tvg-id="id.x",\nhttp://h/5',
        "#EXTINF:-1,\nhttp://h/path/chan%20six.m3u8?token=1",
        # Durations other than -1 go into extra; VOD by path and by extension; Xtream ids.
        '#EXTINF:120.5 tvg-id="m",Movie\nhttp://h/movie/u/p/77.mp4',
        "#EXTINF:0,Series\nhttp://h/series/u/p/78.mkv\n#EXTINF:-1,File\nhttp://h/files/a.mkv?x=1",
        "#EXTINF:-1,Live\nhttp://h/u/p/79\n#EXTINF:-1,Live\nhttp://h/live/u/p/79.ts",
        # Copies of one URL, a key too long for its column, overlong values cut to their widths.
        "#EXTINF:-1,A\nhttp://h/same\n#EXTINF:-1,B\nhttp://h/same\n#EXTINF:-1,A\nhttp://h/same",
        f"#EXTINF:-1,Long\nhttp://h/{'x' * 300}",
        f'#EXTINF:-1 tvg-id="{"i" * 300}" tvg-chno="{"9" * 40}" group-title="{"g" * 300}",{"n" * 600}\nhttp://h/6',
        # Accents and case for search_name.
        '#EXTINF:-1 group-title="Télé",  Été  À  LA  Une \nhttps://h/7',
        # Not simple: header and catchup attributes, options, #EXTGRP, |suffix, quotes, other schemes.
        '#EXTINF:-1 http-user-agent="UA" catchup="default",H\nhttp://h/8',
        "#EXTINF:-1,V\n#EXTVLCOPT:http-referrer=http://r/\n#KODIPROP:k=v\n#EXTGRP:Grp\nhttp://h/9",
        '#EXTINF:-1,S\nhttp://h/10|User-Agent=X\n#EXTINF:-1,Q\n"http://h/11"\n#EXTINF:-1,R\nrtmp://h/12',
        "#EXTINF:-1,Rel\nrelative/13.ts",
    ],
)
def test_edge_cases_are_the_same_both_ways(text: str) -> None:
    fast, slow, _writer = _both(("#EXTM3U\n" + text + "\n").encode())
    assert fast == slow and slow


def test_header_defaults_make_entries_not_simple() -> None:
    text = '#EXTM3U http-user-agent="Box/1" catchup="shift"\n#EXTINF:-1,A\nhttp://h/1\n'
    fast, slow, writer = _both(text.encode())
    assert fast == slow and writer.simple_count == 0
