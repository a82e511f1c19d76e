"""Tune glibc's malloc for a long-running daemon that waits almost all day.

Two glibc defaults cost an idle kiosk memory it never gets back (measured with
`bench/process.py`, default configuration, RSS at rest after start-up: 64.3 -> 61.7 MiB):

* the mmap threshold is dynamic: once a large block (a numpy buffer, a decoded answer) has
  been freed, glibc raises the threshold up to 32 MiB, so later blocks of that size come from
  a heap where freed memory stays resident. A fixed threshold of 128 KiB keeps every large
  block in its own mapping, returned to the system when it is freed;
* every thread that allocates gets its own arena (the conversation loop, the audio supervisor,
  PortAudio's and PulseAudio's threads), each keeping its own free memory. Two arenas are
  enough for a process whose threads mostly wait.

Only the daemon calls this (`voice-kiosk run`), before it imports its heavy modules. On a C
library without `mallopt` (musl) nothing changes. The environment wins: IT staff who set
MALLOC_MMAP_THRESHOLD_ or MALLOC_ARENA_MAX in a drop-in keep their values.

Freed blocks in the middle of a heap stay resident too: glibc only gives back the top of a
heap. `release_free_memory` (malloc_trim) hands those pages back once a visit is over and
the audio has shut down (`kiosk.assembly` wires it to the audio engine's rest).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

# From glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


def _libc(name: str, *argtypes: type) -> Any | None:
    """A C library function returning int, or None when the C library has no such one.
    The process's own symbols: libc is already loaded, and nothing is searched or run
    (ctypes.util.find_library would start ldconfig)."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


def release_free_memory() -> bool:
    """Give the free pages of every malloc heap back to the system (glibc's malloc_trim);
    False when the C library has none. About 0.5 ms on the development machine, more on a
    Pi: call it where nothing waits for the calling thread."""
    trim = _libc("malloc_trim", ctypes.c_size_t)
    if trim is None:
        return False
    trim(0)
    return True


def tune_allocator() -> bool:
    """Set the fixed mmap threshold and the arena limit; False when the C library has no
    mallopt or refused (the defaults then stay, which only costs memory)."""
    mallopt = _libc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and ok
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok = mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and ok
    return ok
