"""How a gateway process holds its memory: glibc's malloc keeps freed blocks for the next upload instead of handing
them back to the kernel at once (``imaging.allocation``), and the garbage collector leaves alone what start-up built.

Before, every copy of every upload faulted its pages in again: 3,700 page faults per 3.3 MB photo, 11-18 CPU-ms per
request of which half in the kernel, against 7-8 with the blocks reused (this 2-core VM). What a process keeps this
way never exceeds the most it held at once, which ``Settings.peak_rss_bytes`` bounds; an idle process keeps it
rather than shrinking back.
"""

from __future__ import annotations

import functools
import gc

from imaging import allocation

# Blocks up to glibc's own ceiling for its adaptive threshold come from its heaps, so every body the default limit
# admits (10 MiB) does; free memory at the top of a heap is given back past 256 MiB.
TRIM_THRESHOLD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """The gateway's thresholds for this process; False where malloc is not glibc's."""
    return allocation.keep_freed_memory(allocation.MAX_MMAP_THRESHOLD, TRIM_THRESHOLD_BYTES)


@functools.cache
def freeze_startup_objects() -> None:
    """Move everything built so far (modules, the app, its routes, models and clients: 108,000 objects) out of the
    collector's reach, once per process. Requests leave a few survivors each, so every few hundred requests Python
    walked all of them in a full collection (50 ms here); frozen, a full collection walks only what requests made.
    What start-up built lives as long as the process anyway."""
    gc.freeze()
