"""Each provider path done with its SDK directly, with the SDK's default settings.

The yardstick for ``bench/paths.py``: the same fake server, the same audio or text, a new SDK
object (and connection) per request, as the SDK's own examples do it. Run in its own process
so its CPU time is its own; prints one JSON line: CPU seconds per request, peak RSS and the
latency of each request in ms (ASR: end of audio -> final text; TTS: request -> first audio).
Run: .venv/bin/python -m bench.sdk_direct PATH --url URL [--runs N] [--seconds S]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import threading
import time
from collections.abc import Callable

TEXT = "客厅的灯已经打开了。"
CHUNK_S = 0.1
CHUNK = bytes(3200)  # 100 ms of 16 kHz mono s16le silence
DASHSCOPE_KEY = "test-dashscope-key"
AZURE_KEY = "test-azure-key"
WAIT_S = 10.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def paced(send: Callable[[bytes], None], seconds: float) -> None:
    """Send ``seconds`` of audio in real time, one 100 ms chunk at a time."""
    start = time.monotonic()
    for index in range(round(seconds / CHUNK_S)):
        send(CHUNK)
        time.sleep(max(0.0, start + (index + 1) * CHUNK_S - time.monotonic()))


def paraformer(url: str, seconds: float) -> float:
    from dashscope.audio.asr import Recognition, RecognitionCallback

    recognition = Recognition(
        model="paraformer-realtime-v2",
        format="pcm",
        sample_rate=16000,
        callback=RecognitionCallback(),
        api_key=DASHSCOPE_KEY,
        base_address=url,
    )
    recognition.start()
    paced(recognition.send_audio_frame, seconds)
    stopped = time.monotonic()
    recognition.stop()  # returns once the final result and task-finished have come
    return time.monotonic() - stopped


def qwen_asr(url: str, seconds: float) -> float:
    from dashscope.audio.qwen_omni import (
        MultiModality,
        OmniRealtimeCallback,
        OmniRealtimeConversation,
    )
    from dashscope.audio.qwen_omni.omni_realtime import TranscriptionParams

    done = threading.Event()

    class Callback(OmniRealtimeCallback):
        def on_event(self, message: dict) -> None:
            if message.get("type", "").endswith("input_audio_transcription.completed"):
                done.set()

    conversation = OmniRealtimeConversation(
        "qwen3-asr-flash-realtime", Callback(), url=url, api_key=DASHSCOPE_KEY
    )
    conversation.connect()
    conversation.update_session(
        output_modalities=[MultiModality.TEXT],
        enable_turn_detection=False,
        transcription_params=TranscriptionParams(
            language="zh", sample_rate=16000, input_audio_format="pcm"
        ),
    )
    paced(lambda pcm: conversation.append_audio(base64.b64encode(pcm).decode()), seconds)
    stopped = time.monotonic()
    conversation.commit()
    done.wait(WAIT_S)
    latency = time.monotonic() - stopped
    conversation.close()
    return latency


def azure_asr(host: str, seconds: float) -> float:
    import azure.cognitiveservices.speech as speechsdk

    config = speechsdk.SpeechConfig(host=host, subscription=AZURE_KEY)
    config.speech_recognition_language = "zh-CN"
    stream = speechsdk.audio.PushAudioInputStream(
        speechsdk.audio.AudioStreamFormat(samples_per_second=16000, bits_per_sample=16, channels=1)
    )
    recognizer = speechsdk.SpeechRecognizer(
        speech_config=config, audio_config=speechsdk.audio.AudioConfig(stream=stream)
    )
    recognized = threading.Event()
    recognizer.recognized.connect(lambda _: recognized.set())
    recognizer.start_continuous_recognition_async().get()
    paced(stream.write, seconds)
    stream.close()
    stopped = time.monotonic()
    recognized.wait(WAIT_S)
    latency = time.monotonic() - stopped
    recognizer.stop_continuous_recognition_async().get()
    return latency


def cosyvoice(url: str, _seconds: float) -> float:
    import dashscope
    from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer

    first_audio: list[float] = []

    class Callback(ResultCallback):
        def on_data(self, data: bytes) -> None:
            first_audio.append(time.monotonic())

    dashscope.api_key = DASHSCOPE_KEY
    sent = time.monotonic()
    synthesizer = SpeechSynthesizer(
        model="cosyvoice-v2",
        voice="longxiaochun_v2",
        format=AudioFormat.PCM_22050HZ_MONO_16BIT,
        callback=Callback(),
        url=url,
    )
    synthesizer.streaming_call(TEXT)
    synthesizer.streaming_complete()
    return first_audio[0] - sent


def qwen_tts(url: str, _seconds: float) -> float:
    import dashscope
    from dashscope.audio.qwen_tts_realtime import QwenTtsRealtime, QwenTtsRealtimeCallback

    first_audio: list[float] = []
    finished = threading.Event()

    class Callback(QwenTtsRealtimeCallback):
        def on_event(self, message: dict) -> None:
            kind = message.get("type")
            if kind == "response.audio.delta":
                first_audio.append(time.monotonic())
            elif kind == "session.finished":
                finished.set()

    dashscope.api_key = DASHSCOPE_KEY
    sent = time.monotonic()
    tts = QwenTtsRealtime("qwen3-tts-flash-realtime", callback=Callback(), url=url)
    tts.connect()
    tts.update_session(voice="Cherry")
    tts.append_text(TEXT)
    tts.finish()
    finished.wait(WAIT_S)
    tts.close()
    return first_audio[0] - sent


def qwen_http_tts(url: str, _seconds: float) -> float:
    from dashscope import MultiModalConversation

    first_audio: list[float] = []
    sent = time.monotonic()
    responses = MultiModalConversation.call(
        model="qwen3-tts-flash",
        text=TEXT,
        voice="Cherry",
        stream=True,
        api_key=DASHSCOPE_KEY,
        base_address=url,
    )
    for response in responses:
        assert response.status_code == 200, response.message
        if response.output.audio.data:
            first_audio.append(time.monotonic())
    return first_audio[0] - sent


def azure_tts(host: str, _seconds: float) -> float:
    import azure.cognitiveservices.speech as speechsdk

    config = speechsdk.SpeechConfig(host=host, subscription=AZURE_KEY)
    config.speech_synthesis_voice_name = "zh-CN-XiaoxiaoNeural"
    config.set_speech_synthesis_output_format(
        speechsdk.SpeechSynthesisOutputFormat.Raw16Khz16BitMonoPcm
    )
    first_audio: list[float] = []
    sent = time.monotonic()
    synthesizer = speechsdk.SpeechSynthesizer(speech_config=config, audio_config=None)
    synthesizer.synthesizing.connect(lambda _: first_audio.append(time.monotonic()))
    result = synthesizer.speak_text_async(TEXT).get()
    assert result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted, result.reason
    # A short answer may come whole with the result, without a synthesizing event.
    return (first_audio[0] if first_audio else time.monotonic()) - sent


PATHS: dict[str, Callable[[str, float], float]] = {
    "paraformer": paraformer,
    "qwen-asr": qwen_asr,
    "azure-asr": azure_asr,
    "cosyvoice": cosyvoice,
    "qwen-tts": qwen_tts,
    "qwen-http-tts": qwen_http_tts,
    "azure-tts": azure_tts,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=PATHS)
    parser.add_argument("--url", required=True, help="the fake's URL (Azure: its host)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0, help="ASR audio, real time")
    args = parser.parse_args()
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    request = PATHS[args.path]
    request(args.url, args.seconds)  # imports and first connection, not counted
    started = cpu_seconds()
    latencies = [request(args.url, args.seconds) * 1000 for _ in range(args.runs)]
    cpu = (cpu_seconds() - started) / args.runs
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu_s": cpu, "latency_ms": latencies, "peak_rss_mb": peak_rss_mb}))


if __name__ == "__main__":
    main()
