"""How a failed request is reported: stable codes for Wyoming ``error`` events.

Shared by the providers, the speech server and the satellite, so none of them imports
another's package for it.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable codes sent in Wyoming ``error`` events (documented in README)."""

    MISSING_CREDENTIALS = "missing-credentials"  # no key configured (names the variable)
    AUTH_FAILED = "auth-failed"  # the provider rejected the key (401/403)
    CONNECT_FAILED = "connect-failed"  # refused, unreachable, or no handshake in time
    TIMEOUT = "timeout"  # no first result, or not finished, within its deadline
    PROVIDER_FAILED = "provider-failed"  # the provider reported failure or dropped mid-stream
    BAD_REQUEST = "bad-request"  # the Wyoming client sent something unusable
    TOO_LARGE = "too-large"  # an event or a connection's waiting data is over its limit
    BUSY = "busy"  # the server already has limits.max_connections clients
    SHUTTING_DOWN = "shutting-down"  # the daemon is stopping; the request was ended
    INTERNAL = "internal-error"  # a bug on our side; logged with a traceback


class ProviderError(Exception):
    """A provider call failed; ``code`` is what the Wyoming client sees."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
