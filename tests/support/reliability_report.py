"""The reliability report ``make reliability`` writes: ``report.json`` (every figure, the machine, the tests' outcomes)
and ``report.md`` (each row of the issues' tables with its verdict, goals with their verdicts, then the other
measurements), like the benchmark's, so the README quotes a file instead of a terminal.

A figure whose name starts with a row's id (``N1 ...``, ``F11/F20 ...``, ``22.1 ...``: issue 21's rows, issue 22's
items) counts toward that row: the row is met when every goal among its figures is, missed when one is not."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.figures import FIGURES, Figure


@dataclass
class Run:
    """What the session saw: when it started, how long it took, and each test's outcome."""

    command: str
    started_at: str
    duration_s: float = 0.0
    outcomes: dict[str, str] = field(default_factory=dict)  # node id -> passed, failed, skipped


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]


ROW_ID = re.compile(r"(N\d+|F\d+(?:/F\d+)*|\d+\.\d+) ")


def row_of(figure: Figure) -> str | None:
    """The id of the row ``figure`` belongs to, from the start of its name; None for a figure of no row."""
    found = ROW_ID.match(figure.name)
    return found.group(1) if found else None


def _row_key(row: str) -> tuple[int, ...]:
    """Issue 21's N rows by number, its F rows after them, then issue 22's items."""
    numbers = tuple(int(number) for number in re.findall(r"\d+", row))
    return ("NF".index(row[0]) if row[0] in "NF" else 2, *numbers)


def rows(figures: list[Figure]) -> dict[str, tuple[str, list[Figure]]]:
    """Each row's verdict (met, missed, or - where none of its figures has a goal) and its figures, in order."""
    found: dict[str, list[Figure]] = {}
    for figure in figures:
        if (row := row_of(figure)) is not None:
            found.setdefault(row, []).append(figure)
    verdicts = {row: [figure.verdict for figure in members if figure.verdict] for row, members in found.items()}
    return {
        row: ("missed" if "missed" in verdicts[row] else "met" if verdicts[row] else "-", found[row])
        for row in sorted(found, key=_row_key)
    }


def _row_cells(row: str, verdict: str, members: list[Figure]) -> list[str]:
    measured = "; ".join(f"{figure.name.removeprefix(row).strip()}: {figure.value_text()}" for figure in members)
    return [row, verdict, measured]


def to_markdown(figures: list[Figure], run: Run, machine: dict[str, object]) -> str:
    judged = [figure for figure in figures if figure.goal is not None]
    measured = [figure for figure in figures if figure.goal is None]
    counts = {outcome: list(run.outcomes.values()).count(outcome) for outcome in ("passed", "failed", "skipped")}
    verdicts = [figure.verdict for figure in judged]
    by_row = rows(figures)
    row_verdicts = [verdict for verdict, _ in by_row.values()]
    lines = [
        f"# Reliability: {machine['cpu_model']}, {machine['cpu_cores']} cores",
        "",
        f"`{run.command}`, started {run.started_at}, took {run.duration_s / 60:.1f} minutes: "
        f"{counts['passed']} tests passed, {counts['failed']} failed, {counts['skipped']} skipped. "
        f"{verdicts.count('met')} goals met, {verdicts.count('missed')} missed; {len(by_row)} rows of the issues' "
        f"tables, {row_verdicts.count('met')} met, {row_verdicts.count('missed')} missed.",
        "",
        "A goal is the README's promise, judged on this machine; the tests hold each figure only to a looser bound "
        "that catches a broken mechanism, not a slow machine (tests/support/goals.py). Where: the test that "
        "measured it.",
        "",
        "## Rows",
        "",
        "Each row of issue 21's table (N, F) and each tested item of issue 22: met when every goal among its "
        "figures is (the figures are in the tables below).",
        "",
        *_table(["row", "verdict", "figures"], (_row_cells(row, *found) for row, found in by_row.items())),
        "",
        "## Goals",
        "",
        *_table(
            ["figure", "measured", "goal", "verdict", "where", "detail"],
            ([f.name, f.value_text(), str(f.goal), f.verdict or "-", f"`{f.test}`", f.detail or "-"] for f in judged),
        ),
        "",
        "## Measurements",
        "",
        *_table(
            ["figure", "measured", "where", "detail"],
            ([f.name, f.value_text(), f"`{f.test}`", f.detail or "-"] for f in measured),
        ),
        "",
    ]
    failed = sorted(test for test, outcome in run.outcomes.items() if outcome == "failed")
    if failed:
        lines += ["## Failed tests", "", *(f"- `{test}`" for test in failed), ""]
    return "\n".join(lines)


def write(folder: Path, figures: list[Figure], run: Run) -> tuple[Path, Path]:
    """``report.json`` and ``report.md`` in ``folder``."""
    from bench.machine import machine_info  # only when a report is written

    folder.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    document = {
        "command": run.command,
        "started_at": run.started_at,
        "duration_s": round(run.duration_s, 1),
        "machine": machine,
        "outcomes": run.outcomes,
        "figures": [figure.to_json() for figure in figures],
        "rows": {row: verdict for row, (verdict, _) in rows(figures).items()},
    }
    paths = folder / "report.json", folder / "report.md"
    paths[0].write_text(json.dumps(document, indent=2, default=str) + "\n")
    paths[1].write_text(to_markdown(figures, run, machine))
    return paths


class Recorder:
    """A pytest plugin (tests/conftest.py registers it): each test's outcome, the figures printed when the run ends,
    and the report written to ``--reliability-report DIR`` when asked."""

    def __init__(self, config: pytest.Config) -> None:
        self.folder: Path | None = config.getoption("reliability_report")
        self.run = Run(shlex.join(["pytest", *config.invocation_params.args]), "")
        self.started = time.monotonic()

    def pytest_sessionstart(self) -> None:
        self.run.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.started = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Failed if any phase failed, skipped if it was, passed once its call passed."""
        if report.failed or report.skipped:
            self.run.outcomes[report.nodeid] = "failed" if report.failed else "skipped"
        elif report.when == "call":
            self.run.outcomes.setdefault(report.nodeid, "passed")

    def pytest_sessionfinish(self) -> None:
        if self.folder is not None:
            self.run.duration_s = time.monotonic() - self.started
            write(self.folder, list(FIGURES.values()), self.run)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if FIGURES:
            terminalreporter.section("reliability figures")
            for figure in FIGURES.values():
                terminalreporter.write_line(f"{figure.name}: {figure}")
            found = rows(list(FIGURES.values()))
            if found:
                terminalreporter.write_line(
                    "rows: " + ", ".join(f"{row} {verdict}" for row, (verdict, _) in found.items())
                )
        if self.folder is not None:
            terminalreporter.write_line(f"reliability report: {self.folder / 'report.md'} and report.json")
