"""glibc's thresholds, set by ``imaging.allocation``, in a fresh process each: uploads of a few megabytes and their
copies stop faulting their pages in again once the blocks are kept for reuse."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Uploads the size of phone photos, each with a copy and its decoded pixels, as the decode step holds them.
UPLOADS = """
import resource, sys
from imaging.allocation import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory(8 << 20, 16 << 20)
sizes = [3_200_000, 3_400_000, 3_300_000]
def upload(size):
    body = bytearray(size)
    data = bytes(body)
    pixels = bytearray(size // 6)
for size in sizes:
    upload(size)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    for size in sizes:
        upload(size)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 90)
"""


def faults_per_upload(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", UPLOADS, mode], capture_output=True, text=True, check=True)
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_blocks_take_no_page_faults_where_glibc_s_defaults_take_hundreds() -> None:
    assert faults_per_upload("default") > 100  # each 3 MB block mapped, or trimmed off the heap, and faulted again
    assert faults_per_upload("kept") < 1
