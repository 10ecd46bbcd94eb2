"""What each deploy step did, so a second run can show (and tests can check) that it changed nothing."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Change(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Outcome:
    change: Change
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.change.value}: {self.detail}" if self.detail else self.change.value


def updated_or_unchanged(what: str, updates: list[str]) -> Outcome:
    """UPDATED naming the ``updates`` made to ``what``, or UNCHANGED when there were none."""
    if updates:
        return Outcome(Change.UPDATED, f"{what}: {', '.join(updates)}")
    return Outcome(Change.UNCHANGED, what)
