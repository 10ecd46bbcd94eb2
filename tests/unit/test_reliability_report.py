"""The reliability report's records: a goal's verdict and bound, the older ``FIGURES[name] = value`` form reported as
a measurement, both written as Markdown and JSON, and each row of the issues' tables with its verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.figures import FIGURES, Figure, Goal, hold, record
from tests.support.reliability_report import Run, rows, write

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


def test_each_row_gets_the_verdict_of_its_figures(tmp_path: Path) -> None:
    every_one = Goal("of 3 served", at_least=3, bound=3)
    record("N12 forwarded by a proxy: refused", 3, every_one)
    record("N1 a second client's requests served", 3, every_one)
    record("N1 probes answered", 2, every_one)  # missed: the row is missed
    record("F11/F20 a large edge map: memory kept", 40, Goal("MiB", at_most=64, bound=256))
    record("22.1 the stack stopped by SIGTERM", 3.2, WITHIN_A_SECOND)
    record("N8 for comparison: /healthz alone", 30, unit="ms")  # a measurement: no verdict of its own
    record("soak requests", 600, unit="requests")  # no row
    found = rows(list(FIGURES.values()))
    assert {row: verdict for row, (verdict, _) in found.items()} == {
        "N1": "missed", "N8": "-", "N12": "met", "F11/F20": "met", "22.1": "missed",
    }  # fmt: skip
    assert list(found) == ["N1", "N8", "N12", "F11/F20", "22.1"]  # the issues' order, not the run's
    run = Run("pytest tests/reliability", "2026-12-06T08:00:00+00:00", 180.0, {})
    json_path, markdown_path = write(tmp_path, list(FIGURES.values()), run)
    markdown = markdown_path.read_text()
    assert "5 rows of the issues' tables, 2 met, 2 missed" in markdown
    assert (
        "| N1 | missed | a second client's requests served: 3 of 3 served; probes answered: 2 of 3 served |"
        in (markdown.split("## Rows")[1].split("## Goals")[0])
    )
    assert json.loads(json_path.read_text())["rows"]["F11/F20"] == "met"
