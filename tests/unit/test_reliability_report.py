"""The reliability report's records: a goal's verdict and bound, the older ``FIGURES[name] = value`` form reported as
a measurement, and both written as Markdown and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.figures import FIGURES, Figure, Goal, hold, record
from tests.support.reliability_report import Run, write

WITHIN_A_SECOND = Goal("s", at_most=1, bound=5)


@pytest.fixture(autouse=True)
def no_figures() -> Iterator[None]:
    """Each test starts with none; the run's own figures (when the whole suite runs) come back after."""
    kept = dict(FIGURES)
    FIGURES.clear()
    yield
    FIGURES.clear()
    FIGURES.update(kept)


def test_a_goal_judges_the_figure_and_its_bound_fails_the_test() -> None:
    assert record("kill -> 503", 0.2, WITHIN_A_SECOND).verdict == "met"
    assert hold("kill -> 503 again", 2.5, WITHIN_A_SECOND).verdict == "missed"  # missed, yet within the bound
    with pytest.raises(AssertionError, match="past the bound 5 s"):
        hold("kill -> 503 hung", 12.0, WITHIN_A_SECOND)
    assert Goal("images", at_least=4, bound=2).within_bound(3) and not Goal("images", at_least=4, bound=2).met(3)


def test_the_older_form_is_a_measurement_of_the_running_test() -> None:
    FIGURES["queue-full burst"] = {200: 17, 429: 8}
    figure = FIGURES["queue-full burst"]
    assert figure == Figure("queue-full burst", {200: 17, 429: 8}, test=figure.test)
    assert figure.verdict is None and figure.test.endswith("::test_the_older_form_is_a_measurement_of_the_running_test")


def test_the_report_lists_goals_with_verdicts_then_measurements(tmp_path: Path) -> None:
    record("Triton killed -> first 503", 0.117, WITHIN_A_SECOND, detail="a | in the detail")
    FIGURES["soak requests"] = "1,200 in 60 s"
    FIGURES["tricklers"] = {b"HTTP/1.1 408 Request Timeout": 50}  # as a socket reads it
    run = Run("pytest tests/reliability", "2026-12-06T08:00:00+00:00", 180.0, {"a::t": "passed", "a::u": "failed"})
    json_path, markdown_path = write(tmp_path, list(FIGURES.values()), run)
    markdown = markdown_path.read_text()
    goals, measurements = markdown.split("## Measurements")
    assert "| Triton killed -> first 503 | 0.117 s | <= 1 s | met |" in goals and "a \\| in the detail" in goals
    assert "| soak requests | 1,200 in 60 s |" in measurements
    assert "1 tests passed, 1 failed" in markdown and "- `a::u`" in markdown
    document = json.loads(json_path.read_text())
    assert [(f["name"], f["verdict"]) for f in document["figures"]] == [
        ("Triton killed -> first 503", "met"),
        ("soak requests", None),
        ("tricklers", None),
    ]
    assert document["figures"][2]["measured"] == {"HTTP/1.1 408 Request Timeout": 50}
    assert document["figures"][0]["goal"] == {"unit": "s", "at_most": 1, "at_least": None, "bound": 5}
