"""Keep freed memory inside the process (glibc), so large activations are not re-faulted every step.

PyTorch on CPU frees and re-allocates activation buffers of tens of MB at every training step.
glibc serves such blocks with ``mmap`` and returns them to the OS on ``free``; the next step
then page-faults every page again, which costs more than the arithmetic on them (measured:
~25 ms per 54 MB buffer here). Disabling ``mmap`` for large blocks and heap trimming keeps the
memory in the heap and reuses it. Resident memory stays at its peak instead of shrinking.
(Trimming is switched off altogether: a finite threshold cannot exceed 2 GiB, less than a
paper-preset training step of ~3-4 GB frees at once. What still faults pages in is the heap
growing, for batches of sizes not seen before; a run pays that in its first steps.)

Set ``NESF_NO_MALLOPT=1`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; returns True when applied."""
    global _done
    if _done:
        return True
    if os.environ.get("NESF_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        # -1: never trim. A finite threshold is an int (< 2 GiB), less than a training step of
        # the published model frees at once.
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1)
        libc.mallopt(_M_TOP_PAD, 64 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc
        return False
    _done = bool(ok)
    return _done
