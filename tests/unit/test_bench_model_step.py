"""bench.model_step: the network's stub against ONNX Runtime alone at the same batch size and thread setting."""

from __future__ import annotations

import pytest

from bench.loadgen import LevelResult
from bench.model_step import model_step_section, same_setting, stub_ms_per_image
from bench.ort_alone import DEFAULTS, SLICES, THREADS, Point, best
from bench.results import Level, Scenario
from bench.stats import LatencySummary
from bench.suite import GRPC_RESNET, Measured
from bench.triton_stats import TritonDelta

POINTS = [
    Point(THREADS, 1, 100, 10.0, 9.0),  # 90 CPU-ms per image
    Point(THREADS, 8, 120, 10.0, 10.2),
    Point(SLICES, 2, 110, 10.0, 8.8),  # 80
    Point(SLICES, 8, 130, 10.0, 10.4),
    Point(SLICES, 16, 128, 10.0, 10.24),
    Point(DEFAULTS, 1, 60, 10.0, 9.0),
]


def _measured(level: int, requests: int, images: int, batch: float, stub_s: float) -> Measured:
    latency = LatencySummary(requests, 100.0, 100.0, 100.0, 100.0, 100.0)
    load = LevelResult(level, 10.0, requests, {}, requests / 10, latency, requests, False, 0)
    delta = TritonDelta("resnet50", images, images, round(images / batch), batch, 5.0, 40.0, {})
    scenario = Scenario(GRPC_RESNET, GRPC_RESNET, [Level(load, delta)])
    return Measured(scenario, {level: {"resnet50": delta}}, {level: {"stub resnet50": stub_s, "triton": 1.0}})


def test_lone_images_compare_with_the_threaded_session_and_batches_with_slices_at_the_nearest_size() -> None:
    assert same_setting(POINTS, 1.0, cores=2) == POINTS[0]
    assert same_setting(POINTS, 1.6, cores=2) == POINTS[0]  # under one image per core: the threaded session
    assert same_setting(POINTS, 2.4, cores=2) == POINTS[2]
    assert same_setting(POINTS, 11.0, cores=2) == POINTS[3]  # 11 is nearer 8 than 16 by ratio
    assert same_setting(POINTS, 12.0, cores=2) == POINTS[4]
    assert best(POINTS) == POINTS[3]  # 13 images/s
    assert best([]) is None


def test_the_stubs_cpu_is_divided_by_the_images_triton_ran_in_the_window() -> None:
    # 100 requests completed in the window, but Triton ran 120 images through the network in it.
    measured = _measured(16, requests=100, images=120, batch=8.0, stub_s=9.6)
    per_image, batch = stub_ms_per_image(measured, 16, "resnet50")
    assert per_image == pytest.approx(80.0) and batch == 8.0
    assert stub_ms_per_image(measured, 1, "resnet50") == (None, None)  # level not measured


def test_the_section_states_the_runners_overhead_over_onnx_runtime_alone() -> None:
    measured = {GRPC_RESNET: _measured(16, requests=120, images=120, batch=8.0, stub_s=10.08)}  # 84 CPU-ms
    section = model_step_section(measured, "resnet50", POINTS, cores=2)
    (row,) = section.rows
    assert row[:7] == [GRPC_RESNET, 16, 8.0, pytest.approx(84.0), SLICES, 8, 80.0]
    assert row[7] == pytest.approx(5.0)
    assert section.findings == [
        "c=16: the runner spent 84.0 CPU-ms per image at a mean batch of 8.0, ONNX Runtime alone 80.0 "
        "(slices, batch 8): +5%."
    ]
