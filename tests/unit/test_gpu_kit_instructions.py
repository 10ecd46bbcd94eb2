"""What `make gpu-kit` ends with: commands a person copies to a GPU host, not a call in some harness's format."""

from __future__ import annotations

from pathlib import Path

from gpu_kit.build import operator_steps

ROOT = Path(__file__).resolve().parents[2]


def test_the_kit_ends_with_what_to_run_on_the_gpu_host() -> None:
    text = operator_steps(ROOT / "build" / "gpu-kit", ROOT, 56.25)
    assert "tar -cf tritonserve-gpu.tar $(git ls-files) build/gpu-kit" in text and "56.2 MiB" in text
    assert "python3 -m gpu_kit.device --kit build/gpu-kit --out gpu-report" in text
    assert "run(" not in text and "carry" not in text and "$OUT" not in text
