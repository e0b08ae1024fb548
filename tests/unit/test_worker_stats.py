"""The workers' part of the status line."""

from __future__ import annotations

from satellite.providers.supervisor import ROUND_TRIPS_KEPT, WorkerStats


def test_the_round_trip_figures_describe_each_roles_latest_answers_only():
    stats = WorkerStats(restarts=2)
    assert stats.describe() == "worker restarts: 2"
    for seconds in [0.5] * 100 + [0.001] * (ROUND_TRIPS_KEPT - 20) + [0.003] * 20:
        stats.add_round_trip("tts", seconds)  # the 0.5 s: a slow spell, long ago
    assert stats.describe() == "worker restarts: 2, worker round trip TTS p50 1.00 ms, p95 3.00 ms"
    for _ in range(10):
        stats.add_round_trip("asr", 0.0005)
    assert stats.describe() == (
        "worker restarts: 2, worker round trip ASR p50 0.50 ms, p95 0.50 ms,"
        " TTS p50 1.00 ms, p95 3.00 ms"
    )
