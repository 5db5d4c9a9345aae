"""Returning the allocator's free memory to the OS (hrrkit.utils.memory)."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from hrrkit.utils.memory import release_freed_memory
from hrrkit.utils.profile import current_rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux") or current_rss_mb() is None, reason="glibc on Linux")
def test_freed_heap_memory_goes_back_to_the_os():
    if not ctypes.util.find_library("c") or not release_freed_memory():
        pytest.skip("no glibc malloc_trim here")
    # many small blocks live in the heap (below the mmap threshold), so freeing them keeps them resident
    blocks = [bytearray(64 * 1024) for _ in range(1600)]  # 100 MiB
    # every 16th block stays in use, so the freed ones are holes in the heap that free() cannot trim
    pin = blocks[::16]
    held = current_rss_mb()
    del blocks
    assert current_rss_mb() > held - 50, "free() returned the blocks by itself: nothing to check here"
    assert release_freed_memory() is True
    assert current_rss_mb() < held - 50
    assert len(pin) == 100
