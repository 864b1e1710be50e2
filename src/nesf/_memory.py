"""Keep freed memory inside the process (glibc), so large activations are not re-faulted every step.

PyTorch on CPU frees and re-allocates activation buffers of tens of MB at every training step.
glibc serves such blocks with ``mmap`` and returns them to the OS on ``free``; the next step
then page-faults every page again, which costs more than the arithmetic on them (measured:
~25 ms per 54 MB buffer here). Disabling ``mmap`` for large blocks and heap trimming keeps the
memory in the heap and reuses it. Resident memory stays at its peak instead of shrinking.
(Trimming is switched off altogether: with a 2 GiB threshold, the most ``mallopt`` accepts
short of "never", a paper-preset step of ~3 GB still had its freed top of heap returned and
re-faulted, up to ~0.75 GB and +1.5 s in one step.)

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
        # -1: never trim. A finite threshold is an int (< 2 GiB), and a training step of the
        # published model frees more than that at once, which would be faulted in again.
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1)
        libc.mallopt(_M_TOP_PAD, 64 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc
        return False
    _done = bool(ok)
    return _done
