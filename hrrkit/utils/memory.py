"""Give the C allocator's free memory back to the operating system between large steps.

glibc's malloc keeps memory that tensors have freed inside its heaps for reuse; after a large image,
tens to hundreds of MB can stay resident although nothing uses them, and the next image's peak adds
to that. :func:`release_freed_memory` asks glibc to return it (``malloc_trim(0)``, which also releases
free pages in the middle of the heap); it costs milliseconds, so it suits the boundaries between
images or batches, not inner loops. Elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_freed_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the allocator's free memory to the OS; ``True`` where glibc did it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
