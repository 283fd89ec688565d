"""Channel number plans: free numbers, shift-down to make room, reordering (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

MIN_NUMBER = 1
MAX_NUMBER = 999_999


def allocate(taken: set[int], start: int, count: int) -> list[int]:
    """`count` numbers from `start` upwards, skipping the taken ones."""
    out: list[int] = []
    number = start
    while len(out) < count:
        if number not in taken:
            out.append(number)
        number += 1
    return out


def next_number(taken: Iterable[int]) -> int:
    """One past the highest number in use (1 for an empty lineup)."""
    return max(taken, default=MIN_NUMBER - 1) + 1


def conflicts(others: Mapping[int, int], start: int, count: int) -> list[int]:
    """The numbers in [start, start + count) that channels other than the moving ones hold."""
    block = range(start, start + count)
    return sorted(number for number in others.values() if number in block)


def shift_down(others: Mapping[int, int], start: int, count: int) -> dict[int, int]:
    """Moves (channel id -> new number) that free [start, start + count) by pushing channels down.

    Only the run of channels that would collide moves, each by as little as it must: the first
    gap at or after the block absorbs the shift, so channels beyond it keep their numbers.
    """
    moves: dict[int, int] = {}
    cursor = start + count
    for number, channel_id in sorted((n, c) for c, n in others.items() if n >= start):
        if number >= cursor:
            break
        moves[channel_id] = cursor
        cursor += 1
    return moves


def place_block(
    numbers: Mapping[int, int], ids: Sequence[int], start: int, *, shift: bool
) -> tuple[dict[int, int], list[int]]:
    """Give `ids` the numbers start, start+1, ... in that order.

    Returns (moves, conflicting numbers). With `shift`, channels in the way are pushed down and
    there are no conflicts; without it, nothing moves when a number in the block is taken.
    """
    selected = set(ids)
    others = {cid: n for cid, n in numbers.items() if cid not in selected}
    taken = conflicts(others, start, len(ids))
    if taken and not shift:
        return {}, taken
    moves = shift_down(others, start, len(ids)) if taken else {}
    for offset, cid in enumerate(ids):
        if numbers.get(cid) != start + offset:
            moves[cid] = start + offset
    return moves, []


def reorder(numbers: Mapping[int, int], ids: Sequence[int]) -> dict[int, int]:
    """The channels in `ids` take their own numbers, sorted, in the order given (a drag reorder)."""
    slots = sorted(numbers[cid] for cid in ids)
    return {cid: slot for cid, slot in zip(ids, slots, strict=True) if numbers[cid] != slot}


def fits(start: int, count: int) -> bool:
    return start >= MIN_NUMBER and start + count - 1 <= MAX_NUMBER
