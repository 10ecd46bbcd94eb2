"""Non-blocking admission: take units of a bounded resource or be told no at once (backpressure)."""

from __future__ import annotations


class Budget:
    """A counter with a ceiling, used from one event loop (no lock needed)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0

    def try_take(self, units: int = 1) -> bool:
        # One oversized ask is admitted when nothing else is in use, so a large but legal request still runs.
        if self.used and self.used + units > self.capacity:
            return False
        self.used += units
        return True

    def give_back(self, units: int = 1) -> None:
        self.used -= units
