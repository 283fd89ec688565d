"""The first-run wizard's steps and its progress, stored as one readable setting value."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Step slugs in order, with their titles.
STEPS: tuple[tuple[str, str], ...] = (
    ("playlist", "Add a playlist"),
    ("epg", "Add a guide"),
    ("channels", "Create channels"),
    ("match", "Match guides"),
    ("tvheadend", "Connect TVHeadend"),
    ("publish", "Publish"),
)
STEP_SLUGS = tuple(slug for slug, _title in STEPS)
MARKS = ("done", "skipped")
#: The whole wizard's end states: finished (all steps passed) or dismissed (the user skipped it all).
ENDINGS = ("finished", "dismissed")


@dataclass
class WizardProgress:
    """Which steps are done or skipped, and whether the wizard ended."""

    marks: dict[str, str] = field(default_factory=dict)
    ending: str | None = None

    def mark(self, slug: str, how: str) -> None:
        self.marks[slug] = how
        if all(s in self.marks for s in STEP_SLUGS):
            self.ending = self.ending or "finished"

    @property
    def active(self) -> bool:
        return self.ending is None

    def next_step(self) -> str | None:
        for slug in STEP_SLUGS:
            if slug not in self.marks:
                return slug
        return None

    def encode(self) -> str:
        parts = [f"{slug}={self.marks[slug]}" for slug in STEP_SLUGS if slug in self.marks]
        if self.ending:
            parts.append(self.ending)
        return " ".join(parts)


def parse_progress(value: str | None) -> WizardProgress:
    """Read the stored value; unknown words are ignored so a hand edit cannot break the wizard."""
    progress = WizardProgress()
    for word in (value or "").split():
        if word in ENDINGS:
            progress.ending = word
            continue
        slug, _, how = word.partition("=")
        if slug in STEP_SLUGS and how in MARKS:
            progress.marks[slug] = how
    return progress


def validate_progress(value: str) -> str | None:
    """Settings validator: only words the wizard writes are accepted."""
    for word in value.split():
        slug, _, how = word.partition("=")
        if word not in ENDINGS and not (slug in STEP_SLUGS and how in MARKS):
            return f"unknown wizard mark {word!r}"
    return None
