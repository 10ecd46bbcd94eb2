"""Figures the reliability suite measures (cases tried, recovery times, memory), printed when the run ends.

A module of its own so the tests and conftest's summary hook import one and the same dict.
"""

FIGURES: dict[str, object] = {}
