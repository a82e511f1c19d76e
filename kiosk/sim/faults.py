"""Faults the simulator can push into live realtime connections (`Simulator.inject`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiosk.sim.realtime_server import RealtimeSession

INJECTABLE = ("error", "oversized", "bad_json", "bad_base64", "odd_bytes", "binary",
              "unknown_event", "drop")


def inject_into(sessions: Sequence[RealtimeSession], kind: str, *, code: str = "server_error",
                close_code: int | None = None, size_kib: int = 8192) -> int:
    """Send the fault `kind` (one of INJECTABLE) to each session; returns how many got it."""
    if kind not in INJECTABLE:
        raise ValueError(f"unknown fault {kind!r}; one of {INJECTABLE}")
    for s in sessions:
        if kind == "error":
            s.error(code, f"Simulated {code}.", kind="server_error"
                    if code == "server_error" else "invalid_request_error")
            if close_code is not None:
                s.close(close_code, code)
        elif kind == "oversized":
            s.send_raw('{"type":"response.output_text.delta","delta":"'
                       + "x" * (size_kib * 1024) + '"}')
        elif kind == "bad_json":
            s.send_raw('{"type": "response.output_audio.delta", "delta": ')
        elif kind in ("bad_base64", "odd_bytes"):
            delta = "!!not base64!!" if kind == "bad_base64" else "AAAA"  # 3 bytes
            s.send({"type": "response.output_audio.delta", "response_id": "resp_junk",
                    "item_id": "item_junk", "output_index": 0, "content_index": 0,
                    "delta": delta})
        elif kind == "binary":
            s.send_raw(b"\x00\x01binary")
        elif kind == "unknown_event":
            s.send({"type": "future.event_kind", "detail": "from a newer server"})
        else:
            s.drop()
    return len(sessions)
