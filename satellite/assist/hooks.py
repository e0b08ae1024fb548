"""Commands the owner runs on HA events (``satellite.events``), with the event's data as
JSON on stdin; bounded in time, and a failure is only logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from wyoming.event import Event

_LOGGER = logging.getLogger(__name__)
HOOK_TIMEOUT_S = 30.0


async def run_hook(command: str, event: Event, timeout: float = HOOK_TIMEOUT_S) -> None:
    try:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        data = json.dumps(event.data, ensure_ascii=False).encode()
        async with asyncio.timeout(timeout):
            await process.communicate(data)
    except TimeoutError:
        _LOGGER.warning("event command for %s ran over %g s; stopped", event.type, timeout)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    except OSError as exc:
        _LOGGER.warning("event command for %s failed: %s", event.type, exc)
    else:
        if process.returncode:
            _LOGGER.warning("event command for %s exited with %s", event.type, process.returncode)
