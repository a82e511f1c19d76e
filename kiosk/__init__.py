"""voice-kiosk: a bedside voice assistant daemon (one button, one status light, sound)."""

import os

# numpy asks the kernel for transparent huge pages on every array of 4 MiB or more (the
# 120 s answer ring is one). With THP in `madvise` mode, the Debian and Raspberry Pi OS
# default, khugepaged then collapses a ring that holds a few seconds of audio into 2 MiB
# pages, all resident: measured here, RSS grew by 11 MiB over 200 visits at random moments.
# Set before any module imports numpy; an operator's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

__version__ = "0.1.0"
