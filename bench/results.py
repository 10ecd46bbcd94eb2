"""The benchmark's results: what one run measured and decided, as dataclasses with JSON in and out.

Everything that only reads results (goals, the cost table from another run's report, tests, tools comparing
runs) imports this module, not ``bench.report``, which renders them and needs matplotlib. ``from_json`` reads
back what ``to_json`` wrote (pydantic validates the nested dataclasses), so a report can be re-rendered or
ranked beside another run without re-measuring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from bench.costs import Option, PriceTable
from bench.loadgen import LevelResult, Timing
from bench.triton_stats import TritonDelta


@dataclass(frozen=True)
class Level:
    """One concurrency level of a scenario: the client's view and, where Triton served it, the model's."""

    load: LevelResult
    triton: TritonDelta | None = None


@dataclass(frozen=True)
class Scenario:
    name: str  # a stable key, used by ratios and in the JSON
    title: str  # what a reader sees
    levels: list[Level]

    def at(self, concurrency: int) -> Level | None:
        return next((level for level in self.levels if level.load.concurrency == concurrency), None)


@dataclass(frozen=True)
class Ratio:
    """Throughput of one scenario over another's at one concurrency, optionally against a goal."""

    label: str
    numerator: str
    denominator: str
    concurrency: int
    at_least: float | None = None


@dataclass(frozen=True)
class Goal:
    """A figure the issue sets a target for, measured in this run; ``detail`` says where it was read."""

    label: str
    value: float | None
    unit: str
    at_least: float | None = None
    at_most: float | None = None
    detail: str = ""

    @property
    def met(self) -> bool | None:
        """None without a value (the run did not measure it)."""
        if self.value is None:
            return None
        return (self.at_least is None or self.value >= self.at_least) and (
            self.at_most is None or self.value <= self.at_most
        )


@dataclass(frozen=True)
class Section:
    """A titled table the benchmark adds beside the scenarios (profile, CPU, sweep): numbers in the JSON,
    formatted in the Markdown, with findings as bullets under it."""

    title: str
    text: str
    header: list[str]
    rows: list[list[str | int | float | None]]
    findings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    title: str
    started_at: str  # ISO 8601, when the run began
    machine: dict[str, object]  # bench.machine.machine_info()
    timing: Timing
    scenarios: list[Scenario]
    ratios: list[Ratio]
    costs: dict[str, list[Option]]  # route -> bench.costs.rank_routes() options, cheapest first
    p99_target_ms: float
    prices: PriceTable
    notes: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    instance: str = ""  # the instance kind this run's throughput is priced as
    duration_s: float | None = None  # how long the run took, start to report


def ratio_value(report: Report, ratio: Ratio) -> float | None:
    """None when either side is missing or the denominator measured nothing."""
    scenarios = {scenario.name: scenario for scenario in report.scenarios}
    sides = [scenarios.get(name) for name in (ratio.numerator, ratio.denominator)]
    levels = [scenario.at(ratio.concurrency) if scenario else None for scenario in sides]
    if levels[0] is None or levels[1] is None or levels[1].load.throughput_rps <= 0:
        return None
    return levels[0].load.throughput_rps / levels[1].load.throughput_rps


@dataclass(frozen=True)
class RatioResult:
    ratio: Ratio
    value: float | None
    met: bool | None  # None without a goal or without a value


def evaluate_ratios(report: Report) -> list[RatioResult]:
    results = []
    for ratio in report.ratios:
        value = ratio_value(report, ratio)
        met = None if ratio.at_least is None or value is None else value >= ratio.at_least
        results.append(RatioResult(ratio, value, met))
    return results


def to_json(report: Report) -> dict[str, object]:
    """Every figure of the report, ratios evaluated, as plain JSON types."""
    ratios = [
        {**dataclasses.asdict(result.ratio), "value": result.value, "met": result.met}
        for result in evaluate_ratios(report)
    ]
    goals = [{**dataclasses.asdict(goal), "met": goal.met} for goal in report.goals]
    return {**dataclasses.asdict(report), "ratios": ratios, "goals": goals}


def from_json(document: Mapping[str, Any]) -> Report:
    """A report as ``to_json`` wrote it (evaluated ratios and goal verdicts are recomputed, not read)."""
    return TypeAdapter(Report).validate_python(document)
