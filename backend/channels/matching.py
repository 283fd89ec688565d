"""EPG matching: channel ↔ XMLTV channel by tvg-id, then by normalised names with rapidfuzz (pure, no I/O)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz, process

#: Scores of the id stages; name scores are rapidfuzz ratios (0-100) of the normalised names.
SCORE_ID = 100
SCORE_ID_FEED = 98
#: Name candidates below this are not shown, even as alternatives.
SHOW_FLOOR = 70
#: Points a name score gains when the country hints agree, and loses when they disagree.
COUNTRY_BONUS = 3
COUNTRY_PENALTY = 15
#: Points lost when the names carry different numbers ("Sport 1" vs "Sport 2").
NUMBER_PENALTY = 15
ALTERNATIVES = 3
#: Points lost when a word of one name has no counterpart in the other ("Sport Max" vs "Sport").
WORDS_PENALTY = 10
#: Two words are counterparts from this similarity on ("sport" and "sports").
WORD_SIMILARITY = 75
PROGRESS_EVERY = 500

# Tokens that describe the feed, not the channel: quality, codecs, frame rates, backup markers.
NOISE_TOKENS = frozenset(
    [
        "hd",
        "fhd",
        "uhd",
        "sd",
        "hq",
        "lq",
        "4k",
        "8k",
        "uhd4k",
        "hdr",
        "hevc",
        "h264",
        "h265",
        "x264",
        "x265",
        "1080p",
        "1080i",
        "720p",
        "576p",
        "576i",
        "480p",
        "2160p",
        "50fps",
        "60fps",
        "25fps",
        "30fps",
        "backup",
        "bkp",
        "alt",
        "geo",
        "blocked",
    ]
)
# Words too generic to tell channels apart: one name may have them and the other not.
WEAK_TOKENS = frozenset({"tv", "channel", "the", "network", "and"})
SYNONYMS = {"television": "tv", "intl": "international"}
NUMBER_WORDS = {
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
# Three-letter prefixes that name a country or region in provider naming ("USA: CNN").
COUNTRY3 = {
    "usa": "us",
    "gbr": "uk",
    "deu": "de",
    "ger": "de",
    "fra": "fr",
    "esp": "es",
    "ita": "it",
    "por": "pt",
    "nld": "nl",
    "bel": "be",
    "swe": "se",
    "nor": "no",
    "den": "dk",
    "fin": "fi",
    "pol": "pl",
    "tur": "tr",
    "rus": "ru",
    "can": "ca",
    "aus": "au",
    "ind": "in",
    "bra": "br",
    "mex": "mx",
    "arg": "ar",
    "lat": "lat",
}
COUNTRY_ALIASES = {"gb": "uk"}

_PREFIX = re.compile(r"^\W*?([A-Za-z]{2,3})\s*(?:[:|\]\)]|\s[-–—]\s)\W*")
_SUFFIX_COUNTRY = re.compile(r"[\(\[]\s*([A-Z]{2})\s*[\)\]]\s*$")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_PARENS = re.compile(r"\(([^)]*)\)")
_TIMESHIFT = re.compile(r"\+\s?(\d{1,2})(?:\s?(?:h|hr|hrs|hour|hours)\b)?(?!\d)", re.IGNORECASE)
_TIMESHIFT_WORD = re.compile(r"\bplus\s+(\d{1,2})\s*$", re.IGNORECASE)
_FLAG = re.compile("([\U0001f1e6-\U0001f1ff])([\U0001f1e6-\U0001f1ff])")
# Circled and parenthesised letters (Ⓢ Ⓖ Ⓨ ⒹⒼ) are status markers, not part of a name.
_ENCLOSED = re.compile("[\u2460-\u24ff\U0001f100-\U0001f1e5]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])")
_DIGITS = re.compile(r"\d+")
_ID_COUNTRY = re.compile(r"\.([A-Za-z]{2})$")


@dataclass(frozen=True, slots=True)
class Normalised:
    """A name reduced for comparison, with what was taken out of it."""

    key: str  # tokens without noise, sorted: what the fuzzy score compares
    plain: str  # tokens without noise, in order
    full: str  # every token, noise included, in order (tie-breaks prefer an exact full match)
    compact: str  # `plain` without spaces, so "ZDFneo" meets "ZDF neo"
    numbers: tuple[str, ...]  # the numeric tokens, sorted ("Sport 1" and "Sport 2" must not match)
    timeshift: str  # "" or "+1", "+2": a timeshift channel only matches the same timeshift
    country: str  # a country hint from a prefix, suffix or flag, or ""


def _fold(text: str) -> str:
    """Compatibility-decompose (ᴴᴰ → HD, full-width → ASCII), drop accents, case-fold."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _country(code: str) -> str:
    code = code.lower()
    if len(code) == 3:
        return COUNTRY3.get(code, "")
    return COUNTRY_ALIASES.get(code, code)


def _flag_country(text: str) -> str:
    found = _FLAG.search(text)
    if not found:
        return ""
    return _country("".join(chr(ord(c) - 0x1F1E6 + ord("a")) for c in found.groups()))


def _tokens(text: str) -> list[str]:
    # Letters, digits and combining marks (Devanagari vowel signs are marks) make words; the rest splits.
    folded = _fold(text.replace("&", " and "))
    spaced = "".join(ch if ch.isalnum() or unicodedata.category(ch)[0] == "M" else " " for ch in folded)
    return [NUMBER_WORDS.get(w) or SYNONYMS.get(w, w) for w in spaced.split()]


@lru_cache(maxsize=65536)
def normalise_name(name: str) -> Normalised:
    """Strip country prefixes, quality suffixes, brackets, punctuation and accents; keep +1 apart."""
    text = name.strip()
    country = _flag_country(text)
    text = _ENCLOSED.sub(" ", _FLAG.sub(" ", text)).strip()
    prefix = _PREFIX.match(text)
    if prefix is not None:
        code = prefix.group(1)
        mapped = _country(code)
        # Two letters are a country whatever the case; three only when they are a known code.
        if mapped and (len(code) == 2 or code.isupper()) and prefix.end() < len(text):
            country = country or mapped
            text = text[prefix.end() :]
    suffix = _SUFFIX_COUNTRY.search(text)
    if suffix is not None and suffix.start() > 0:
        country = country or _country(suffix.group(1))
        text = text[: suffix.start()]
    text = _BRACKETS.sub(" ", text)
    text = _PARENS.sub(lambda m: " " + m.group(1) + " ", text)
    timeshift = ""
    shift = _TIMESHIFT.search(text) or _TIMESHIFT_WORD.search(text)
    if shift is not None:
        timeshift = f"+{int(shift.group(1))}"
        text = text[: shift.start()] + " " + text[shift.end() :]
    tokens = _tokens(text)
    kept = [t for t in tokens if t not in NOISE_TOKENS] or tokens
    return Normalised(
        key=" ".join(sorted(kept)),
        plain=" ".join(kept),
        full=" ".join(tokens),
        compact="".join(kept),
        numbers=tuple(sorted(_DIGITS.findall("".join(kept)))),
        timeshift=timeshift,
        country=country,
    )


def country_of_xmltv_id(xmltv_id: str) -> str:
    """The country suffix of ids like "BBCOne.uk" or "6ter.fr@SD", or ""."""
    found = _ID_COUNTRY.search(xmltv_id.split("@", 1)[0])
    return _country(found.group(1)) if found else ""


def name_from_xmltv_id(xmltv_id: str) -> str:
    """A readable name from an id: "BBCOne.uk" → "BBC One", "bbc-news.uk" → "bbc news"."""
    base = _ID_COUNTRY.sub("", xmltv_id.split("@", 1)[0])
    return " ".join(_CAMEL.sub(" ", base).replace(".", " ").replace("-", " ").replace("_", " ").split())


def country_hints(texts: Iterable[str]) -> set[str]:
    """Countries named by prefixes, suffixes or flags in names and group titles."""
    out: set[str] = set()
    for text in texts:
        if text:
            found = normalise_name(text).country
            if found:
                out.add(found)
    return out


class Guide:
    """The guide channels with their id indexes and normalised names, built once per matching run."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.exact: dict[str, list[int]] = {}
        self.lower: dict[str, list[int]] = {}
        self.feed_base: dict[str, list[int]] = {}
        self.country: list[str] = []
        self.icon: list[str] = []
        # (timeshift, form) -> search key -> [(entry, display name, normalised)]; form is "key" or "compact".
        self.names: dict[tuple[str, str], dict[str, list[tuple[int, str, Normalised]]]] = {}
        for index, g in enumerate(entries):
            xmltv_id = str(g["xmltv_id"])
            self.exact.setdefault(xmltv_id, []).append(index)
            self.lower.setdefault(xmltv_id.casefold(), []).append(index)
            self.feed_base.setdefault(xmltv_id.split("@", 1)[0].casefold(), []).append(index)
            self.country.append(country_of_xmltv_id(xmltv_id))
            self.icon.append(str(g.get("icon") or ""))
            self._add_names(index, g)
        self.choices = {shift: list(keys) for shift, keys in self.names.items()}

    def _add_names(self, index: int, g: dict[str, Any]) -> None:
        names = [str(n) for n in (g.get("names") or []) if n and not str(n).strip().isdigit()]
        derived = name_from_xmltv_id(str(g["xmltv_id"]))
        if derived and not derived.isdigit():
            names.append(derived)
        seen: set[tuple[str, str, str]] = set()
        for name in names:
            norm = normalise_name(name)
            for form, key in (("key", norm.key), ("compact", norm.compact)):
                if key and (norm.timeshift, form, key) not in seen:
                    seen.add((norm.timeshift, form, key))
                    self.names.setdefault((norm.timeshift, form), {}).setdefault(key, []).append(
                        (index, name, norm)
                    )

    def preferred(self, entries: list[int]) -> int:
        """Of several guide channels with one id (in several guides), the one with programmes, oldest guide."""
        return max(
            entries,
            key=lambda e: (int(self.entries[e].get("programmes") or 0) > 0, -int(self.entries[e]["epg_id"])),
        )

    def by_id(self, tvg_ids: list[str]) -> tuple[int, str, str] | None:
        """(entry, method, reason) for the first tvg-id that is a guide id: exactly, by case, or by feed."""
        for tvg_id in tvg_ids:
            if tvg_id in self.exact:
                return (
                    self.preferred(self.exact[tvg_id]),
                    "tvg_id",
                    f"The stream's tvg-id “{tvg_id}” is this guide channel's id",
                )
        for tvg_id in tvg_ids:
            found = self.lower.get(tvg_id.casefold())
            if found:
                entry = self.preferred(found)
                other = self.entries[entry]["xmltv_id"]
                return (
                    entry,
                    "tvg_id_ci",
                    f"The stream's tvg-id “{tvg_id}” equals the guide id “{other}” apart from letter case",
                )
        for tvg_id in tvg_ids:
            found = self.feed_base.get(tvg_id.split("@", 1)[0].casefold())
            if found:
                entry = self.preferred(found)
                other = self.entries[entry]["xmltv_id"]
                reason = f"The stream's tvg-id “{tvg_id}” and the guide id “{other}” differ only in the feed after @"
                return entry, "tvg_id_feed", reason
        return None


@dataclass(slots=True)
class Candidate:
    """One guide channel considered for a channel by name, with everything that decides and explains it."""

    entry: int
    base: int
    score: int
    channel_name: str
    guide_name: str
    query: Normalised
    found: Normalised
    country_agrees: bool | None
    numbers_differ: bool
    words_differ: bool
    same_logo: bool
    claimed_by: str | None
    rank: tuple[Any, ...] = ()

    def ranking(self, guide: Guide) -> tuple[Any, ...]:
        g = guide.entries[self.entry]
        return (
            self.claimed_by is None,
            self.score,
            self.same_logo,
            self.query.full == self.found.full,
            self.country_agrees is True,
            int(g.get("programmes") or 0) > 0,
            -int(g["epg_id"]),
            str(g["xmltv_id"]),
        )

    def reason(self) -> str:
        text = f"Name “{self.channel_name}” ≈ guide name “{self.guide_name}”"
        if self.query.key == self.found.key:
            text += f" (both “{self.query.plain}” once normalised)"
        else:
            text += f" (“{self.query.plain}” vs “{self.found.plain}”: similarity {self.base})"
        if self.query.timeshift:
            text += f"; same timeshift {self.query.timeshift}"
        if self.country_agrees is True:
            text += "; same country"
        elif self.country_agrees is False:
            text += f"; different country (−{COUNTRY_PENALTY}, never applied automatically)"
        if self.numbers_differ:
            text += f"; different numbers (−{NUMBER_PENALTY}, never applied automatically)"
        if self.words_differ:
            text += f"; a word of one name is missing from the other (−{WORDS_PENALTY}, never applied automatically)"
        if self.same_logo:
            text += "; same logo"
        if self.claimed_by is not None:
            text += (
                f"; that guide channel belongs to tvg-id “{self.claimed_by}”, and this channel's playlist "
                "uses the guide's ids, so it is not applied automatically"
            )
        return text


def _suggestion(guide: Guide, entry: int, **extra: Any) -> dict[str, Any]:
    g = guide.entries[entry]
    names = [str(n) for n in (g.get("names") or [])]
    return {
        "epg_id": g["epg_id"],
        "epg_channel_id": g["xmltv_id"],
        "display_name": names[0] if names else g["xmltv_id"],
    } | extra


class _Claims:
    """Which guide channels another channel's tvg-id already names exactly (or but for case or feed)."""

    def __init__(self, guide: Guide, channels: Iterable[dict[str, Any]]) -> None:
        owners: dict[str, str] = {}
        for channel in channels:
            tvg_ids = [str(t) for t in channel.get("tvg_ids") or [] if t]
            found = guide.by_id(tvg_ids) if tvg_ids else None
            if found is not None:
                owners.setdefault(str(guide.entries[found[0]]["xmltv_id"]).casefold(), tvg_ids[0])
        # entry -> (owning tvg-id, its country); every copy of an id (in several guides) is owned.
        self.by_entry: dict[int, tuple[str, str]] = {}
        for key, owner in owners.items():
            for entry in guide.lower.get(key, []):
                self.by_entry[entry] = (owner, country_of_xmltv_id(owner))

    def owner(self, entry: int, id_countries: set[str]) -> str | None:
        """The tvg-id that owns `entry`, when the channel has a different tvg-id of the same country.

        Two guide-style ids of one country ("Sport2.pl" vs the owner "Sport.pl") are the
        provider saying these are different channels, however alike their names are.
        """
        found = self.by_entry.get(entry)
        if found is None or not found[1] or found[1] not in id_countries:
            return None
        return found[0]


@lru_cache(maxsize=65536)
def _words_differ(a: str, b: str) -> bool:
    """Whether a word (not a number or a generic word) of one name has no close word in the other."""
    words_a = [w for w in a.split() if w not in WEAK_TOKENS and not w.isdigit()]
    words_b = [w for w in b.split() if w not in WEAK_TOKENS and not w.isdigit()]
    for mine, theirs in ((words_a, words_b), (words_b, words_a)):
        for word in mine:
            if not any(fuzz.ratio(word, other) >= WORD_SIMILARITY for other in theirs):
                return True
    return False


def _candidates(
    guide: Guide, claims: _Claims, channel: dict[str, Any], cache: dict[Any, Any], floor: int
) -> list[Candidate]:
    hints = {_country(str(c)) for c in channel.get("countries") or [] if c} | country_hints(
        channel.get("hints") or []
    )
    hints.discard("")
    logo = str(channel.get("logo") or "")
    id_countries = {country_of_xmltv_id(str(t)) for t in channel.get("tvg_ids") or [] if t}
    best: dict[int, Candidate] = {}
    for name in dict.fromkeys(str(n) for n in channel.get("names") or [] if n and str(n).strip()):
        query = normalise_name(name)
        if not query.key:
            continue
        countries = hints | ({query.country} if query.country else set())
        scores: dict[tuple[str, str], int] = {}
        # Sorted words find reordered names; the compact form finds "ZDFneo" for "ZDF neo".
        for form, text in (("key", query.key), ("compact", query.compact)):
            choices = guide.choices.get((query.timeshift, form))
            if not choices:
                continue
            cache_key = (query.timeshift, form, text)
            if cache_key not in cache:
                found = process.extract(
                    text, choices, scorer=fuzz.ratio, limit=8, score_cutoff=floor - COUNTRY_BONUS
                )
                cache[cache_key] = [(key, round(score)) for key, score, _index in found]
            for key, base in cache[cache_key]:
                scores[(form, key)] = base
        for (form, key), base in scores.items():
            for entry, guide_name, norm in guide.names[(query.timeshift, form)][key]:
                g_country = norm.country or guide.country[entry]
                agrees = (g_country in countries) if (g_country and countries) else None
                differ = query.numbers != norm.numbers
                extra = query.compact != norm.compact and _words_differ(query.plain, norm.plain)
                score = base + (COUNTRY_BONUS if agrees else 0) - (COUNTRY_PENALTY if agrees is False else 0)
                score -= (NUMBER_PENALTY if differ else 0) + (WORDS_PENALTY if extra else 0)
                if score < floor:
                    continue
                cand = Candidate(
                    entry, base, min(100, score), name, guide_name, query, norm, agrees, differ, extra,
                    bool(logo) and logo == guide.icon[entry], claims.owner(entry, id_countries),
                )  # fmt: skip
                cand.rank = cand.ranking(guide)
                current = best.get(entry)
                if current is None or cand.rank > current.rank:
                    best[entry] = cand
    return sorted(best.values(), key=lambda c: c.rank, reverse=True)


def _by_name(guide: Guide, ranked: list[Candidate], threshold: int) -> dict[str, Any]:
    top = ranked[0]
    top_id = str(guide.entries[top.entry]["xmltv_id"]).casefold()
    rivals = [
        c
        for c in ranked[1:]
        if c.rank[:5] == top.rank[:5] and str(guide.entries[c.entry]["xmltv_id"]).casefold() != top_id
    ]
    reason = top.reason()
    if rivals:
        others = ", ".join(f"“{guide.entries[c.entry]['xmltv_id']}”" for c in rivals[:3])
        reason += f"; equally close to {others}, so it is not applied automatically"
    apply = (
        top.score >= threshold
        and not rivals
        and top.country_agrees is not False
        and not top.numbers_differ
        and not top.words_differ
        and top.claimed_by is None
    )
    suggestion = _suggestion(
        guide, top.entry, score=top.score, method="name", reason=reason, ambiguous=bool(rivals)
    )
    return suggestion | {"display_name": top.guide_name, "apply": apply}


def match_channels(
    channels: list[dict[str, Any]],
    guide_entries: list[dict[str, Any]],
    threshold: int,
    context: list[dict[str, Any]] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Suggest a guide channel for each channel.

    `channels`: [{"id", "names", "tvg_ids", "hints" (group titles), "countries", "logo", "namespace"}].
    `guide_entries`: [{"epg_id", "xmltv_id", "names" (display names), "icon", "programmes"}].
    `context`: the lineup's other channels ({"tvg_ids", "namespace"}), whose tvg-ids also claim guide
    channels. Returns one item per channel: {"channel_id", "suggestion" or None, "alternatives"}; a
    suggestion has epg_id, epg_channel_id, display_name, score, method, reason, ambiguous and `apply`
    (whether an automatic run maps it: score at or above `threshold` and nothing against it).
    """
    guide = Guide(guide_entries)
    claims = _Claims(guide, [*channels, *(context or [])])
    cache: dict[Any, Any] = {}
    floor = min(SHOW_FLOOR, threshold)
    out: list[dict[str, Any]] = []
    for done, channel in enumerate(channels):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(100.0 * done / max(1, len(channels)), f"Matched {done} of {len(channels)} channels")
        item: dict[str, Any] = {"channel_id": channel["id"], "suggestion": None, "alternatives": []}
        found = guide.by_id([str(t) for t in channel.get("tvg_ids") or [] if t])
        if found is not None:
            entry, method, reason = found
            score = SCORE_ID_FEED if method == "tvg_id_feed" else SCORE_ID
            item["suggestion"] = _suggestion(
                guide, entry, score=score, method=method, reason=reason, ambiguous=False
            )
            item["suggestion"]["apply"] = True
        else:
            ranked = _candidates(guide, claims, channel, cache, floor)
            if ranked:
                item["suggestion"] = _by_name(guide, ranked, threshold)
            # Alternatives help the admin decide; a suggestion that applies needs none.
            if ranked and not item["suggestion"]["apply"]:
                item["alternatives"] = [
                    _suggestion(
                        guide, c.entry, score=c.score, method="name", reason=c.reason(), ambiguous=False
                    )
                    | {"display_name": c.guide_name, "apply": False}
                    for c in ranked[1 : 1 + ALTERNATIVES]
                ]
        out.append(item)
    if progress is not None:
        progress(100.0, f"Matched {len(channels)} channels")
    return out


def match_file(
    job_path: str, result_path: str, progress: Callable[[float, str], None] | None = None
) -> dict[str, int]:
    """Child-process entry: read a job from a JSON file, write the suggestions to another (JSON lines).

    Files instead of the pipe keep big lineups out of one huge JSON line, and let the parent write
    and read them in a worker thread.
    """
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    results = match_channels(
        job["channels"], job["guide"], int(job["threshold"]), job.get("context"), progress
    )
    # One result per line: the parent reads them one at a time, so no single json call holds its GIL
    # (and its event loop) for the whole answer, which runs to megabytes for big lineups.
    with open(result_path, "w", encoding="utf-8") as f:
        for result in results:
            f.write(json.dumps(result, ensure_ascii=False))
            f.write("\n")
    return {"channels": len(results), "suggested": sum(1 for r in results if r["suggestion"] is not None)}
