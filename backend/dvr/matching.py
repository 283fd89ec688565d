"""Title matching for recurring rules; a tiny module so the child process that runs it starts fast."""

from __future__ import annotations

import re


def match_titles(rules: list[list[str]], titles: list[str]) -> list[list[int]]:
    """For each [pattern, mode], the indices of the matching titles (case-insensitive).

    Pure, so it can run in a child process (see rules.INLINE_MATCH_LIMIT).
    """
    folded = [t.casefold() for t in titles]
    out: list[list[int]] = []
    for pattern, mode in rules:
        if mode == "regex":
            rx = re.compile(pattern, re.IGNORECASE)
            out.append([i for i, t in enumerate(titles) if rx.search(t)])
        else:
            needle = pattern.casefold().strip()
            out.append([i for i, t in enumerate(folded) if needle in t])
    return out
