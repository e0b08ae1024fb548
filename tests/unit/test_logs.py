"""Log lines as journald or Loki read them, and level and format changes at run time."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from satellite import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    output = io.StringIO()
    yield output
    logs.setup("warning", "text", io.StringIO())  # detach our handler from the test's stream
    root.handlers[:] = handlers
    root.setLevel(level)


def entries(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_and_exception(stream: io.StringIO):
    logs.setup("info", "json", stream)
    log = logging.getLogger("satellite.speech.server")
    log.info("ASR %s: %d characters", "dashscope", 12)
    try:
        raise RuntimeError('the provider said "no"\non two lines')
    except RuntimeError:
        log.exception("TTS azure: unexpected failure")
    log.debug("not shown at info")

    first, second = entries(stream)
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "satellite.speech.server",
        "message": "ASR dashscope: 12 characters",
    }
    moment = datetime.strptime(first["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 10
    assert second["level"] == "error" and second["message"] == "TTS azure: unexpected failure"
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert second["exception"].endswith('RuntimeError: the provider said "no"\non two lines')


def test_level_and_format_change_at_run_time(stream: io.StringIO):
    logs.setup("info", "text", stream)
    log = logging.getLogger("satellite.daemon")
    log.debug("hidden")
    logs.set_level("debug")
    log.debug("shown after set_level")
    logs.set_format("json")
    log.info("now as json")
    logs.set_level("warning")
    log.info("hidden again")

    text_line, json_line = stream.getvalue().splitlines()
    assert text_line.endswith(" DEBUG satellite.daemon: shown after set_level")
    assert json.loads(json_line)["message"] == "now as json"


def test_sdk_loggers_stay_muted_at_every_level(stream: io.StringIO):
    logs.setup("debug", "json", stream)
    logs.set_level("debug")
    for name in ("dashscope", "websocket", "websockets.client", "aiohttp.access"):
        logging.getLogger(name).error("Authorization: Bearer sk-secret")
    assert stream.getvalue() == ""


def test_setup_again_replaces_its_handler(stream: io.StringIO):
    earlier = io.StringIO()
    logs.setup("info", "text", earlier)
    logs.setup("info", "json", stream)
    logging.getLogger("satellite").info("once")
    assert [e["message"] for e in entries(stream)] == ["once"]
    assert earlier.getvalue() == ""
