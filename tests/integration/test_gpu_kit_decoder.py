"""The GPU decoder's kit (``make gpu-kit`` builds it beside the Triton kit): it fits one call, and its device script
runs end to end here on nvImageCodec's CPU backend, installed from the kit's own wheels as on the GPU host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpu_kit import build

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "build" / "gpu-kit-decoder"


def test_the_decoder_kit_measures_the_production_decoder_against_the_cpu_path(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "gpu_kit.build", "--decoder", "--out", str(KIT)], cwd=ROOT, check=True)
    manifest = json.loads((KIT / build.MANIFEST).read_text())
    assert {part["path"].split("-")[0] for part in manifest["parts"]} == {
        "wheels/nvidia_nvimgcodec_cu13",
        "wheels/nvidia_nvjpeg",
    }
    assert manifest["tree_bytes"] <= build.TREE_LIMIT
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "gpu_kit.decoder", "--kit", str(KIT), "--out", str(out), "--work", str(tmp_path),
        "--cpu-backend", "--seconds", "0.2", "--phone-photos", "0",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, timeout=300)
    report = json.loads((out / "report.json").read_text())
    assert report["decoder"] == "nvImageCodec CPU backend + numpy"
    assert set(report["results"]) == {"imagenet @ min side 256", "imagenet @ full"}
    for result in report["results"].values():
        for photo in result["agreement"].values():
            assert photo["shape"] == photo["cpu_shape"] and photo["mean_difference"] <= 1.0
        assert all(rate > 0 for rate in result["images_per_s"].values())
    assert "| imagenet | full |" in (out / "report.md").read_text()
