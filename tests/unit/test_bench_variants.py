"""bench.variants without an export: batching settings written and read back, and the error that says how to make
the export (the variants of a real export: tests/integration/test_bench_variants.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.variants import MissingExport, batching_of, bench_repository
from servables.default import model_configs
from servables.repository import write_configs
from servables.specs import Batching, PreprocessSpec


def test_batching_settings_survive_a_write_and_a_read(tmp_path: Path) -> None:
    batching = Batching(max_batch_size=64, max_queue_delay_us=500, preferred_batch_sizes=(4, 8), instances=2)
    write_configs(tmp_path, model_configs("resnet50", PreprocessSpec(), batching))
    assert batching_of(tmp_path / "resnet50") == batching
    write_configs(tmp_path, model_configs("resnet50", PreprocessSpec(), Batching(enabled=False)))
    assert batching_of(tmp_path / "resnet50") == Batching(enabled=False)


def test_a_repository_without_the_export_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(MissingExport, match="python -m export --model resnet50"):
        bench_repository(tmp_path, tmp_path / "models", "resnet50", "cpu")
