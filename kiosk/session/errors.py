"""The one error type of the gateway side, with the kinds the controller and IT staff see."""

from __future__ import annotations

GATEWAY_ERROR_KINDS = ("auth", "unavailable", "rate_limited", "network", "malformed", "config")


class GatewayError(Exception):
    """A session could not be obtained. `kind` is one of GATEWAY_ERROR_KINDS; `message` says
    what is wrong and what to do (never a secret); `retry_after_s` is the server's wish, if any."""

    def __init__(self, kind: str, message: str, retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.status = status

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r})"
