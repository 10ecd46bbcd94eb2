"""How a process that holds uploads allocates: glibc's malloc keeps freed blocks for the next upload instead of
handing them back to the kernel at once.

An upload is copied a few times on its way: in the gateway the body joined and the gRPC message framed around it,
in the decode step from Triton's shared memory to an array and to bytes; megabytes each for a phone photo. By
default glibc maps every block over 128 KiB afresh, raises that threshold only as large blocks are freed, and trims
a heap's top past twice it, so each copy of each upload faulted its pages in again. Blocks up to ``mmap_threshold``
now come from the heaps and stay there, up to ``trim_threshold`` free at a heap's top; larger ones are mapped and
given back as soon as they are freed.
"""

from __future__ import annotations

import ctypes

# mallopt(3)'s parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's own ceiling for its adaptive threshold on 64-bit; mallopt refuses more.
MAX_MMAP_THRESHOLD = 32 << 20


def keep_freed_memory(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's thresholds for this process; False where malloc is not glibc's (its own policy stands)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    kept = mallopt(M_MMAP_THRESHOLD, min(mmap_threshold, MAX_MMAP_THRESHOLD))
    return bool(kept and mallopt(M_TRIM_THRESHOLD, trim_threshold))
