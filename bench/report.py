"""The benchmark report rendered: every figure as JSON, a Markdown summary a person reads, and two PNG plots.

The results model lives in ``bench.results``; this module only renders it, so a report can be rebuilt from
fixed results (and tested that way). Plots use matplotlib's object API (``Figure``), which needs no display
and leaves pyplot's global state alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib import ticker
from matplotlib.figure import Figure

from bench.loadgen import LevelResult
from bench.results import Report, Scenario, Section, evaluate_ratios, to_json


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    throughput_png: Path
    p99_png: Path


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in errors.items()) or "0"


def _scenario_rows(scenario: Scenario) -> list[list[str]]:
    rows = []
    for level in scenario.levels:
        load, triton = level.load, level.triton
        rows.append(
            [
                str(load.concurrency),
                _fmt(load.throughput_rps),
                _fmt(load.latency.p50_ms),
                _fmt(load.latency.p95_ms),
                _fmt(load.latency.p99_ms),
                _errors(load.errors),
                _fmt(triton.mean_batch_size, 2) if triton else "-",
                _fmt(triton.mean_queue_ms, 2) if triton else "-",
            ]
        )
    return rows


_VERDICTS = {None: "-", True: "met", False: "missed"}


def _goal_rows(report: Report) -> list[list[str]]:
    rows = []
    for goal in report.goals:
        bounds = [f">= {goal.at_least:,g}"] if goal.at_least is not None else []
        bounds += [f"<= {goal.at_most:,g}"] if goal.at_most is not None else []
        value = f"{_fmt(goal.value, 2)} {goal.unit}" if goal.value is not None else "not measured"
        rows.append([goal.label, value, " and ".join(bounds) or "-", _VERDICTS[goal.met], goal.detail or "-"])
    return rows


def _cell(value: str | int | float | None) -> str:
    if isinstance(value, float):
        return _fmt(value, 2)
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else value


def _section(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""] + ([section.text, ""] if section.text else [])
    lines += _table(section.header, [[_cell(value) for value in row] for row in section.rows]) + [""]
    return lines + [f"- {finding}" for finding in section.findings] + ([""] if section.findings else [])


def _ratio_rows(report: Report) -> list[list[str]]:
    rows = []
    for result in evaluate_ratios(report):
        ratio = result.ratio
        verdict = _VERDICTS[result.met]
        goal = "-" if ratio.at_least is None else f">= {ratio.at_least:g}"
        rows.append([ratio.label, str(ratio.concurrency), _fmt(result.value, 2), goal, verdict])
    return rows


def _cost_rows(report: Report) -> list[list[str]]:
    rows = []
    for route, options in report.costs.items():
        if not options:
            rows.append([route, "none met the target", "-", "-", "-", "-", "-"])
        for rank, option in enumerate(options):
            name = f"**{option.instance}** (cheapest)" if rank == 0 else option.instance
            rows.append(
                [
                    route,
                    name,
                    f"{option.usd_per_hour:.4g}",
                    str(option.concurrency),
                    _fmt(option.throughput_rps),
                    _fmt(option.p99_ms),
                    f"{option.usd_per_million:.4g}",
                ]
            )
    return rows


def _machine_rows(machine: dict[str, object]) -> list[list[str]]:
    rows = []
    for key, value in machine.items():
        if isinstance(value, dict):
            value = ", ".join(f"{name} {version}" for name, version in value.items())
        elif isinstance(value, list):
            value = "; ".join(map(str, value)) or "none"
        rows.append([key, str(value)])
    return rows


def to_markdown(report: Report, files: ReportFiles) -> str:
    timing = report.timing
    lines = [
        f"# {report.title}",
        "",
        f"Run started {report.started_at}"
        + (f" and took {report.duration_s / 60:.1f} minutes" if report.duration_s else "")
        + f". Closed loop per level: {timing.warmup_s:g} s warm-up, then "
        f"{timing.window_s:g} s measured (at most {timing.max_requests:,} requests a level). Throughput "
        "counts successful requests completed inside the window; mean batch and queue come from Triton's "
        "statistics over the same window.",
        "",
    ]
    lines += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])
    if report.goals:
        lines += ["## Goals", ""]
        lines += _table(["goal", "measured", "target", "verdict", "where"], _goal_rows(report)) + [""]
    if report.ratios:
        lines += ["## Ratios (throughput, side by side in this run)", ""]
        lines += _table(["ratio", "concurrency", "value", "goal", "verdict"], _ratio_rows(report)) + [""]
    header = ["concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "mean batch", "queue ms"]
    for scenario in report.scenarios:
        lines += [f"## {scenario.title}", "", f"`{scenario.name}`", ""]
        lines += _table(header, _scenario_rows(scenario)) + [""]
    prices = report.prices
    lines += [
        f"## Cost per million requests (p99 within {report.p99_target_ms:g} ms)",
        "",
        f"On-demand {prices.region} prices as of {prices.as_of} ({prices.currency}). {prices.note} "
        "Each instance kind is priced at its highest-throughput level that meets the p99 target.",
        "",
    ]
    cost_header = ["route", "instance", "$/hour", "concurrency", "req/s", "p99 ms", "$ per million"]
    lines += _table(cost_header, _cost_rows(report)) + [""]
    for section in report.sections:
        lines += _section(section)
    lines += [
        "## Plots",
        "",
        f"![throughput against concurrency]({files.throughput_png.name})",
        "",
        f"![p99 latency against concurrency]({files.p99_png.name})",
        "",
        "## Machine",
        "",
    ]
    lines += _table(["", ""], _machine_rows(report.machine)) + [""]
    return "\n".join(lines)


def _plot(report: Report, path: Path, ylabel: str, metric: Callable[[LevelResult], float | None]) -> None:
    """One line per scenario, both axes logarithmic: scenarios differ by orders of magnitude (CRUD against
    naive inference, idle against saturated latency). Levels without a positive value are gaps."""
    figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    concurrencies: set[int] = set()
    for index, scenario in enumerate(report.scenarios):
        xs = [level.load.concurrency for level in scenario.levels]
        ys = [metric(level.load) for level in scenario.levels]
        style = "-" if index < 10 else "--"  # matplotlib's colour cycle repeats after ten
        axes.plot(xs, [y if y else float("nan") for y in ys], style, marker="o", label=scenario.name)
        concurrencies.update(xs)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(concurrencies), labels=[str(c) for c in sorted(concurrencies)])
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ticker.StrMethodFormatter("{x:g}"))
    axes.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    axes.set_xlabel("concurrency (closed-loop clients)")
    axes.set_ylabel(ylabel)
    axes.set_title(f"{report.title}: {ylabel}")
    axes.grid(True, which="both", alpha=0.3)
    # Outside the axes, keyed by scenario name (the Markdown's headings spell them out): lines stay visible.
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.savefig(path, format="png")


def write_report(report: Report, out_dir: Path) -> ReportFiles:
    """Write report.json, report.md, throughput.png and p99_latency.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        json=out_dir / "report.json",
        markdown=out_dir / "report.md",
        throughput_png=out_dir / "throughput.png",
        p99_png=out_dir / "p99_latency.png",
    )
    files.json.write_text(json.dumps(to_json(report), indent=2) + "\n")
    files.markdown.write_text(to_markdown(report, files))
    _plot(report, files.throughput_png, "throughput (requests/s)", lambda load: load.throughput_rps)
    _plot(report, files.p99_png, "p99 latency (ms)", lambda load: load.latency.p99_ms)
    return files


def summary(report: Report) -> str:
    """A plain-text digest for the terminal: every level, then ratios and goals with their verdicts."""
    header = f"{'scenario':<22} {'c':>4} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'batch':>6}"
    lines = [report.title, "", header]
    for scenario in report.scenarios:
        for level in scenario.levels:
            load, triton = level.load, level.triton
            lines.append(
                f"{scenario.name:<22} {load.concurrency:>4} {_fmt(load.throughput_rps):>10} "
                f"{_fmt(load.latency.p50_ms):>9} {_fmt(load.latency.p99_ms):>9} {sum(load.errors.values()):>7} "
                f"{_fmt(triton.mean_batch_size, 2) if triton else '-':>6}"
            )
    results = evaluate_ratios(report)
    lines += ["", "ratios:"] if results else []
    for result in results:
        goal = "" if result.ratio.at_least is None else f" (goal >= {result.ratio.at_least:g}: {_VERDICTS[result.met]})"
        lines.append(f"  {result.ratio.label} at c={result.ratio.concurrency}: {_fmt(result.value, 2)}{goal}")
    lines += ["", "goals:"] if report.goals else []
    for label, value, target, verdict, where in _goal_rows(report):
        lines.append(f"  {label}: {value} (target {target}: {verdict}; {where})")
    return "\n".join(lines)
