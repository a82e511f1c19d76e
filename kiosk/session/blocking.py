"""Blocking calls awaited from the conversation's loop without blocking it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


async def run_blocking(call: Callable[[], Any]) -> Any:
    """Run a blocking call (a gateway request: urllib, up to gateway.timeout_s) on a daemon
    thread of its own and await its result. A visit that ends stops waiting; the thread
    finishes on its own and never holds up the kiosk's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return  # nobody waits any more (the visit ended)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = call(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting visit
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed at shut-down
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="gateway-request", daemon=True).start()
    return await future
