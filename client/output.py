"""The classify results as a table (for people), JSON or CSV (for programs)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Result:
    """One file's outcome: its answer, or the error that stopped it."""

    path: Path
    answer: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    latency_ms: float = 0.0
    output: Path | None = None  # the edge map written, for `edges`

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"path": str(self.path), "ok": self.ok}
        if self.answer is not None:
            row.update(self.answer)
        if self.output is not None:
            row["output"] = str(self.output)
        return row | {"error": self.error, "attempts": self.attempts, "latency_ms": round(self.latency_ms, 1)}


def _message(result: Result) -> str:
    return str(result.error["message"]) if result.error else ""


def as_json(results: list[Result]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2) + "\n"


def as_csv(results: list[Result]) -> str:
    """One row per prediction (rank 1..k); a failed file is one row with its error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "rank", "label", "index", "probability", "error"])
    for result in results:
        predictions = (result.answer or {}).get("predictions") or []
        if not predictions:
            writer.writerow([result.path, "", "", "", "", _message(result)])
        for rank, p in enumerate(predictions, 1):
            writer.writerow([result.path, rank, p["label"], p["index"], f"{p['probability']:.6f}", ""])
    return buffer.getvalue()


def as_table(results: list[Result]) -> str:
    # The gateway says which weights answered: a random init's guesses must not pass for a classifier's.
    weights = sorted({str(r.answer["weights"]) for r in results if r.answer and r.answer.get("weights")})
    table = Table(caption=f"weights: {', '.join(weights)}" if weights else None)
    table.add_column("file", no_wrap=True)
    table.add_column("top-1", no_wrap=True)
    table.add_column("p", justify="right")
    table.add_column("then (or why it failed)")
    for result in results:
        predictions = (result.answer or {}).get("predictions") or []
        if not result.ok or not predictions:
            table.add_row(str(result.path), "[red]FAILED[/red]", "", _message(result))
            continue
        top, *rest = predictions
        others = ", ".join(f"{p['label']} {p['probability']:.2f}" for p in rest)
        table.add_row(str(result.path), f"{top['label']} ({top['index']})", f"{top['probability']:.3f}", others)
    buffer = io.StringIO()
    # As wide as the terminal; piped, wide enough that paths stay on one line.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 240
    Console(file=buffer, width=width, no_color=True).print(table)
    return buffer.getvalue()


FORMATS = {"table": as_table, "json": as_json, "csv": as_csv}


def write(results: list[Result], fmt: str, destination: Path | None) -> None:
    text = FORMATS[fmt](results)
    if destination is None:
        print(text, end="")
    else:
        destination.write_text(text)
