"""The C heap: freed memory goes back to the system when asked."""

import ctypes

import pytest

from jamey import heap
from jamey.health import rss_bytes

MB = 1024 * 1024
BLOCK = 2048  # small blocks come from the heap, not from mmap


def test_release_free_hands_freed_heap_pages_back() -> None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, 'malloc_trim'):
        pytest.skip('not glibc: release_free does nothing here')
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(40 * MB // BLOCK)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)  # resident now
    # Kept above the freed blocks: free() itself can only shrink the heap
    # from its top, so what lies below stays resident until trimmed.
    sentinel = libc.malloc(BLOCK)
    try:
        for block in blocks:
            libc.free(block)
        kept = rss_bytes()
        heap.release_free()
        assert rss_bytes() < kept - 20 * MB
    finally:
        libc.free(sentinel)
