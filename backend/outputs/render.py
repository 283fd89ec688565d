"""Client lineups (M3U, HDHomeRun lineup.json) as streamed bodies, each channel's entry remembered by its inputs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Sequence

from backend.outputs import formats
from backend.outputs.service import ItemContext, OutputChannel, playlist_item

#: Contexts (output kind, settings, base URL, stream key) whose entries are kept; the least recently
#: used goes first. A household has a few users behind one or two base URLs.
MAX_CONTEXTS = 8
#: A streamed body hands a piece to the server once this much is ready...
PIECE_BYTES = 256 * 1024
#: ...or once this many entries had to be rendered, so the loop gets a turn during a cold render.
PIECE_RENDERS = 250


class EntryMemo:
    """The rendered entries of the last lineups served, per context.

    A channel's entry is a pure function of the context and the channel's `OutputChannel` tuple
    (every value it is made from). Each entry is kept with that tuple and reused only when the
    tuple read now is equal to it, so a reused entry is always exactly what rendering would give:
    any change, made by this process, a job's child process, another replica or by hand in the
    database, changes the tuple read for that channel and simply misses. There is nothing to
    invalidate and nothing can be stale. The lineup is still read on every request; what is saved
    is the formatting.

    Each render keeps only the entries it used, so memory follows the current lineup (for 5,000
    channels about 4 MB per context: the tuples and the encoded entries), not its history.
    """

    def __init__(self, max_contexts: int = MAX_CONTEXTS) -> None:
        self._max_contexts = max_contexts
        self._contexts: OrderedDict[Hashable, dict[int, tuple[OutputChannel, bytes]]] = OrderedDict()

    async def body(
        self,
        context: Hashable,
        channels: Sequence[OutputChannel],
        render: Callable[[OutputChannel], str | None],
        *,
        head: str = "",
        separator: str = "",
        tail: str = "",
    ) -> AsyncIterator[bytes]:
        """head, then the entries (a None from `render` leaves a channel out) joined by separator, then tail."""
        known = self._contexts.get(context) or {}
        used: dict[int, tuple[OutputChannel, bytes]] = {}
        sep = separator.encode()
        parts: list[bytes] = [head.encode()]
        size = renders = 0
        first = True
        for channel in channels:
            # Looked up by id and then compared: hashing every string of the tuple as a key would
            # read them twice (hash, then the equality check a hit makes anyway).
            seen = known.get(channel[0])
            if seen is not None and seen[0] == channel:
                entry = seen[1]
            else:
                text = render(channel)
                entry = b"" if text is None else text.encode()
                renders += 1
            used[channel[0]] = (channel, entry)
            if entry:
                if not first:
                    parts.append(sep)
                first = False
                parts.append(entry)
                size += len(entry)
            if size >= PIECE_BYTES or renders >= PIECE_RENDERS:
                yield b"".join(parts)
                parts, size, renders = [], 0, 0
        parts.append(tail.encode())
        # Kept only once the whole lineup was rendered: a client hanging up half way leaves the old set.
        self._contexts[context] = used
        self._contexts.move_to_end(context)
        while len(self._contexts) > self._max_contexts:
            self._contexts.popitem(last=False)
        yield b"".join(parts)


def m3u_body(
    memo: EntryMemo, channels: Sequence[OutputChannel], context: ItemContext, xmltv_url: str
) -> AsyncIterator[bytes]:
    def entry(channel: OutputChannel) -> str | None:
        item = playlist_item(channel, context)
        return None if item is None else formats.m3u_entry(item)

    return memo.body(("m3u", context), channels, entry, head=formats.m3u_header(xmltv_url))


def hdhr_lineup_body(
    memo: EntryMemo, channels: Sequence[OutputChannel], context: ItemContext
) -> AsyncIterator[bytes]:
    def entry(channel: OutputChannel) -> str | None:
        item = playlist_item(channel, context)
        return None if item is None else formats.hdhr_lineup_entry(item)

    return memo.body(("hdhr_lineup", context), channels, entry, head="[", separator=",", tail="]")
