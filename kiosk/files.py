"""Files the kiosk rewrites while others read them (metrics, the test call's result, the nurse
request, the prompt cache): written beside the target and renamed over it, so a reader sees
the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` (text as UTF-8) in one rename. Raises OSError; no
    temporary file is left behind then."""
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
