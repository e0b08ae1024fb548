"""Which DashScope API serves a model, for the listed models and for names it infers from."""

from __future__ import annotations

import pytest

from satellite.provider_specs.dashscope_models import TTS_MODELS, asr_model, tts_model


@pytest.mark.parametrize(
    ("name", "api"),
    [
        ("cosyvoice-v2", "inference"),
        ("qwen3-tts-flash-realtime", "realtime"),
        ("qwen3-tts-flash", "http"),
        ("qwen-tts", "http"),
        ("qwen3-tts-flash-2026-01-01", "http"),  # unlisted: from its name
        ("qwen-tts-latest", "http"),
        ("qwen3-tts-instruct-flash-realtime", "realtime"),
        ("cosyvoice-v9", "inference"),
    ],
)
def test_the_api_of_each_voice_model(name: str, api: str):
    assert tts_model(name).api == api


def test_the_http_models_speak_24_khz_with_the_qwen_voices():
    qwen3, qwen = TTS_MODELS["qwen3-tts-flash"], TTS_MODELS["qwen-tts"]
    assert qwen3.sample_rate == qwen.sample_rate == 24000
    assert qwen3.voices == TTS_MODELS["qwen3-tts-flash-realtime"].voices
    assert qwen3.languages == TTS_MODELS["qwen3-tts-flash-realtime"].languages
    assert [name for name, _ in qwen.voices] == ["Cherry", "Serena", "Ethan", "Chelsie"]
    assert qwen.languages == ("zh", "en")
    unlisted = tts_model("qwen3-tts-flash-2026-01-01")
    assert (unlisted.sample_rate, unlisted.languages) == (24000, qwen3.languages)


def test_asr_names_are_not_taken_for_http_voices():
    assert asr_model("qwen3-asr-flash-realtime").api == "realtime"
    assert asr_model("paraformer-realtime-v9").api == "inference"
