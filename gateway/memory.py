"""How a gateway process holds its memory: glibc's malloc keeps freed blocks for the next upload instead of handing
them back to the kernel at once, and the garbage collector leaves alone what start-up built.

An upload is copied a few times on its way to Triton (the body joined, the gRPC message framed around it, gRPC's
own buffer): megabytes each for a phone photo. glibc serves blocks that large with a fresh ``mmap`` each time, or
trims them off the top of a heap as soon as they are freed, so every copy of every upload faulted its pages in
again: 3,700 page faults per 3.3 MB photo, 11-18 CPU-ms per request of which half in the kernel, against 7-8 with
the blocks reused (this 2-core VM). What a process keeps this way never exceeds the most it held at once, which
``Settings.peak_rss_bytes`` bounds; an idle process keeps it rather than shrinking back.
"""

from __future__ import annotations

import ctypes
import functools
import gc

# mallopt(3)'s parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to glibc's own ceiling for its adaptive threshold (32 MiB on 64-bit) come from its heaps, so every body
# the default limit admits (10 MiB) does; free memory at the top of a heap is given back past 256 MiB.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Raise glibc's thresholds for this process; False where malloc is not glibc's (its own policy stands)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    kept = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(kept and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


@functools.cache
def freeze_startup_objects() -> None:
    """Move everything built so far (modules, the app, its routes, models and clients: 108,000 objects) out of the
    collector's reach, once per process. Requests leave a few survivors each, so every few hundred requests Python
    walked all of them in a full collection (50 ms here); frozen, a full collection walks only what requests made.
    What start-up built lives as long as the process anyway."""
    gc.freeze()
