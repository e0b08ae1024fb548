"""Log output: plain text lines or one JSON object per line (for journald, Loki), on stderr.

The level and the format can change while the daemon runs (a config reload).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The SDKs' own logs repeat failures that our log lines already report (with tracebacks
# of deliberate cancellations), and some log request headers, which carry the key.
_MUTED = ("dashscope", "websocket", "websockets", "aiohttp")

_handler: logging.Handler | None = None
_format: LogFormat = "text"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT)


def setup(level: str, fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``fmt``."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    set_format(fmt)
    root.addHandler(_handler)
    set_level(level)
    for name in _MUTED:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def set_level(level: str) -> None:
    """Change the level of every logger but the muted SDK ones (e.g. "debug")."""
    logging.getLogger().setLevel(level.upper())


def set_format(fmt: LogFormat) -> None:
    """Switch the format of the lines written from now on."""
    global _format
    _format = fmt
    if _handler is not None:
        _handler.setFormatter(_formatter(fmt))


def current() -> tuple[str, LogFormat]:
    """The level and the format in use (a worker process logs alike)."""
    return logging.getLevelName(logging.getLogger().level).lower(), _format
