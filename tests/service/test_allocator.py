"""The daemon's malloc settings give freed large blocks back to the system.

mallopt is process-wide, so each case runs in a fresh interpreter: 64 blocks of 1 MiB are
allocated between 100 KiB blocks that stay, then freed. With glibc's dynamic mmap threshold
(raised by the first freed 1 MiB block) they sit in the heap, pinned by their neighbours,
and stay resident; with `tune_allocator` each has its own mapping and is returned.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

# malloc and free by hand, and the process's resident size.
PREAMBLE = textwrap.dedent("""
    import ctypes, sys
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
""")

PROGRAM = PREAMBLE + textwrap.dedent("""
    if sys.argv[1] == "tuned":
        from kiosk.service.allocator import tune_allocator
        assert tune_allocator()

    MIB = 1 << 20
    libc.free(libc.malloc(MIB))  # glibc's default now raises its mmap threshold above 1 MiB
    big, kept = [], []
    for _ in range(64):
        p = libc.malloc(MIB)
        ctypes.memset(p, 1, MIB)
        big.append(p)
        q = libc.malloc(100 * 1024)
        ctypes.memset(q, 1, 1024)
        kept.append(q)
    before = rss_kib()
    for p in big:
        libc.free(p)
    print(before - rss_kib())
""")

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def _returned_kib(mode: str, env: dict[str, str] | None = None) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True,
                         text=True, timeout=60, env={**os.environ, **(env or {})}, check=True)
    return int(out.stdout.strip())


def test_freed_large_blocks_are_returned_once_tuned() -> None:
    assert _returned_kib("default") < 8 * 1024  # the behaviour the daemon avoids
    assert _returned_kib("tuned") > 56 * 1024


def test_a_threshold_set_by_it_staff_wins() -> None:
    # MALLOC_MMAP_THRESHOLD_ from the environment fixes the threshold at 8 MiB: 1 MiB blocks
    # stay in the heap, and tune_allocator must not override it.
    env = {"MALLOC_MMAP_THRESHOLD_": str(8 << 20)}
    assert _returned_kib("tuned", env) < 8 * 1024


HOLES = PREAMBLE + textwrap.dedent("""
    from kiosk.service.allocator import release_free_memory, tune_allocator
    assert tune_allocator()

    holes, kept = [], []
    for _ in range(256):  # 16 MiB of 64 KiB blocks (below the threshold: in the heap)
        p = libc.malloc(64 * 1024)
        ctypes.memset(p, 1, 64 * 1024)
        holes.append(p)
        kept.append(libc.malloc(4096))  # pins the block before it inside the heap
    start = rss_kib()
    for p in holes:
        libc.free(p)
    freed = rss_kib()
    assert release_free_memory()
    print(start - freed, freed - rss_kib())
""")


def test_free_pages_inside_the_heap_go_back_at_rest() -> None:
    """What a visit leaves: blocks freed between blocks that stay. free() keeps their pages
    (glibc only trims a heap's top); release_free_memory, run when the audio rests, returns
    them."""
    out = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True,
                         timeout=60, check=True)
    by_free, by_release = (int(x) for x in out.stdout.split())
    assert by_free < 2 * 1024
    assert by_release > 12 * 1024
