"""The reliability report ``make reliability`` writes: ``report.json`` (every figure, the machine, the tests' outcomes)
and ``report.md`` (goals with their verdicts, then the other measurements), like the benchmark's, so the README
quotes a file instead of a terminal."""

from __future__ import annotations

import json
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


def to_markdown(figures: list[Figure], run: Run, machine: dict[str, object]) -> str:
    judged = [figure for figure in figures if figure.goal is not None]
    measured = [figure for figure in figures if figure.goal is None]
    counts = {outcome: list(run.outcomes.values()).count(outcome) for outcome in ("passed", "failed", "skipped")}
    verdicts = [figure.verdict for figure in judged]
    lines = [
        f"# Reliability: {machine['cpu_model']}, {machine['cpu_cores']} cores",
        "",
        f"`{run.command}`, started {run.started_at}, took {run.duration_s / 60:.1f} minutes: "
        f"{counts['passed']} tests passed, {counts['failed']} failed, {counts['skipped']} skipped. "
        f"{verdicts.count('met')} goals met, {verdicts.count('missed')} missed.",
        "",
        "A goal is the README's promise, judged on this machine; the tests hold each figure only to a looser bound "
        "that catches a broken mechanism, not a slow machine (tests/support/goals.py). Where: the test that "
        "measured it.",
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
        if self.folder is not None:
            terminalreporter.write_line(f"reliability report: {self.folder / 'report.md'} and report.json")
