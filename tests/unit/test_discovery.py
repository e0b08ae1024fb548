"""Zeroconf advertisement problems are logged with their reason."""

from __future__ import annotations

import logging

from satellite.discovery import Advertisement, Discovery


async def test_a_name_taken_on_the_network_is_logged_with_why(caplog) -> None:
    """zeroconf raises NonUniqueNameException without a message: the log names it."""
    adverts = [Advertisement("twice test", f"tcp://127.0.0.1:{port}") for port in (10390, 10391)]
    discovery = Discovery(adverts, interfaces=["127.0.0.1"])
    await discovery.start()
    await discovery.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("zeroconf: cannot advertise 'twice test._wyoming._tcp.local.': ")
    assert warning.endswith("NonUniqueNameException")
