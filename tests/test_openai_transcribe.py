"""transcriber=openai against a real HTTP server on 127.0.0.1 that speaks the OpenAI API (tests/openai_server.py),
through the official `openai` client: real speech transcribed by the server's Whisper, an hour-long episode cut into
chunks under the upload limit, retries, refusals, and the API key kept out of every message, file and log."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
import traceback
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.concurrency.sync import rate_limit

from tasks import audio as audio_codec
from tasks.errors import TranscriptionError
from tasks.models import Segment, Settings, Transcript, Word
from tasks.openai_client import call_with_retries
from tasks.transcribe import openai_chunks
from tasks.transcribe.openai_api import api_transcript
from tasks.transcribe.openai_chunks import Chunk, encode_chunk, plan_chunks
from tasks.transcribe.openai_request import parse_reply
from tasks.transcribe.openai_stitch import ChunkTranscript, stitch
from tasks.transcribe.stage import transcribe_audio
from tests.audio_files import audio_file, demo_audio
from tests.conftest import DEMO_DIR, DEMO_EPISODES, LOOPBACK, DemoEpisode
from tests.events import heard_into, retried_into
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.openai_server import TRANSCRIPTIONS, OpenAIServer, Received, Reply, error
from tests.speech import decoded, word_error_rate, words
from tests.transcripts import MAX_WER, assert_files_agree, episode_of

KEY = "sk-test-SECRET-123"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer() as server:
        yield server


def openai_settings(tmp_path: Path, server: OpenAIServer, **options: object) -> Settings:
    return Settings.of(
        output_dir=tmp_path,
        transcriber="openai",
        openai_base_url=server.base_url,
        openai_retry_backoff_s=0.01,
        **options,
    )  # type: ignore[arg-type]


def canned(text: str = "Hello there.", end: float = 2.0) -> Reply:
    return Reply(
        json={
            "task": "transcribe",
            "language": "english",
            "duration": end,
            "text": text,
            "segments": [{"id": 0, "start": 0.0, "end": end, "text": " " + text}],
        }
    )


def write_wav(path: Path, samples: np.ndarray, rate: int = audio_codec.SAMPLE_RATE) -> Path:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def leaks(*texts: str) -> list[str]:
    return [text[:200] for text in texts if KEY in text or "SECRET-123" in text]


# Real speech ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("demo", DEMO_EPISODES, ids=lambda d: d.slug)
def test_real_speech_is_transcribed_by_a_compatible_server(
    demo: DemoEpisode, api: OpenAIServer, tmp_path: Path
) -> None:
    audio = demo_audio(demo, tmp_path)
    progress: list[tuple[float, float]] = []
    transcript = transcribe_audio(
        audio, episode_of(audio), tmp_path, openai_settings(tmp_path, api), heard_into(progress)
    )

    assert word_error_rate(demo.script, transcript.text) < MAX_WER, transcript.text
    assert (transcript.backend, transcript.model, transcript.language) == ("openai", "whisper-1", "en")
    assert not transcript.estimated_timing and transcript.language_probability is None
    assert all(s.start < s.end <= transcript.audio_duration_s for s in transcript.segments)
    assert progress == [pytest.approx((transcript.audio_duration_s, transcript.audio_duration_s), abs=0.001)]
    assert_files_agree(transcript, tmp_path)
    [request] = api.requests(TRANSCRIPTIONS)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.form == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "timestamp_granularities[]": "segment",
    }
    assert request.filenames["file"].endswith(".ogg") and len(request.files["file"]) < 100_000  # 32 kbit/s


def four_grams(text: str) -> Counter[tuple[str, ...]]:
    spoken = words(text)
    return Counter(zip(spoken, spoken[1:], spoken[2:], spoken[3:]))


@pytest.mark.parametrize(
    ("model", "word_timestamps"),
    [("whisper-1", True), ("whisper-1", False), ("gpt-4o-transcribe", False)],
    ids=["words", "segments", "text-only"],
)
def test_speech_cut_mid_sentence_is_stitched_without_repeats(
    model: str, word_timestamps: bool, api: OpenAIServer, tmp_path: Path
) -> None:
    """All four demo clips in one file, cut every 8-10 s: the cuts fall between words, in speech, and what the
    two seconds of overlap let both neighbours hear comes out once, whether the server gives word times, segment
    times or only text."""
    speech = np.concatenate([decoded(DEMO_DIR / f"{demo.slug}.mp3") for demo in DEMO_EPISODES])
    audio = audio_file(write_wav(tmp_path / "all.wav", speech), tmp_path / "episode", "all")
    script = " ".join(demo.script for demo in DEMO_EPISODES)
    settings = openai_settings(tmp_path, api, word_timestamps=word_timestamps, openai_transcribe_model=model)

    transcript = api_transcript(audio, settings, chunk_s=10.0)

    assert len(api.requests(TRANSCRIPTIONS)) == 7
    assert word_error_rate(script, transcript.text) < MAX_WER, transcript.text
    # Said once, heard once: no run of four words comes out more often than the script says it.
    expected = four_grams(script)
    assert [gram for gram, count in four_grams(transcript.text).items() if count > max(1, expected[gram])] == []
    assert -6 <= len(words(transcript.text)) - len(words(script)) <= 2, transcript.text
    assert [s.start for s in transcript.segments] == sorted(s.start for s in transcript.segments)
    assert all(s.start <= s.end <= t.start for s, t in zip(transcript.segments, transcript.segments[1:]))
    if word_timestamps:
        heard = [w for segment in transcript.segments for w in segment.words]
        assert [w.start for w in heard] == sorted(w.start for w in heard)
        # The same words as the text, spaced as the server spaced them (`snow-covered` is two words, one spelling).
        assert all(
            segment.text.replace(" ", "") == "".join(w.text for w in segment.words).replace(" ", "")
            for segment in transcript.segments
        )


def test_a_text_only_model_gets_one_segment_per_chunk(api: OpenAIServer, tmp_path: Path) -> None:
    demo = DEMO_EPISODES[0]
    audio = demo_audio(demo, tmp_path)
    settings = openai_settings(tmp_path, api, openai_transcribe_model="gpt-4o-transcribe", language="en")

    transcript = transcribe_audio(audio, episode_of(audio), tmp_path, settings)

    [request] = api.requests(TRANSCRIPTIONS)
    assert request.form == {"model": "gpt-4o-transcribe", "response_format": "json", "language": "en"}
    assert word_error_rate(demo.script, transcript.text) < MAX_WER
    assert transcript.estimated_timing and transcript.model == "gpt-4o-transcribe" and transcript.language == "en"
    [segment] = transcript.segments
    assert (segment.start, segment.end) == (0, pytest.approx(transcript.audio_duration_s, abs=0.001))
    assert_files_agree(transcript, tmp_path)


# An hour ---------------------------------------------------------------------------------------------------------

PERIOD_S, TONE_S, BURSTS = 10.0, 8.0, 360  # a tone of 8 s and 2 s of silence every 10 s, for an hour
UNBROKEN = (1500.0, 2700.0)  # here the tones run on without a pause: cuts must fall inside a tone
WAV_RATE = 8000  # 16-bit mono at 8 kHz: 128 kbit/s, 58 MB for an hour


def frequency(burst: int) -> float:
    """Each tone's pitch names its place in the episode: 200 Hz, 205 Hz, ... 1995 Hz."""
    return 200.0 + 5.0 * burst


def hour_long_episode(path: Path) -> Path:
    rng = np.random.default_rng(7)
    t = np.arange(int(PERIOD_S * WAV_RATE)) / WAV_RATE
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(WAV_RATE)
        for burst in range(BURSTS):
            sounding = PERIOD_S if UNBROKEN[0] <= burst * PERIOD_S < UNBROKEN[1] else TONE_S
            tone = np.where(t < sounding, 0.3 * np.sin(2 * np.pi * frequency(burst) * t), 0.0)
            noise = rng.normal(0, 3e-4, t.size)  # a noise floor near -70 dBFS, not digital silence
            file.writeframes(((tone + noise) * 32767).astype("<i2").tobytes())
    return path


def served_samples(upload: bytes) -> np.ndarray:
    """The uploaded file as 16 kHz mono samples, decoded as a server would, by a decoder other than podflow's: PyAV
    at the file's rate (Opus: 48 kHz), then every three samples averaged. Opus made from 16 kHz audio holds nothing
    above 8 kHz, so nothing folds back. A ten-minute chunk takes 1.5 CPU s, against 2.2 s through podflow's decoder
    (tasks/audio.py), which resamples frame by frame; the tones heard are the same."""
    with av.open(io.BytesIO(upload)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (48_000, 1)
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(stream)])
    return samples[: samples.size // 3 * 3].reshape(-1, 3).mean(axis=1)


def tone_transcription(received: Received) -> Reply:
    """A stand-in for Whisper where real inference on an hour would take too long on these cores: it decodes the
    uploaded chunk and "hears" each tone as the word b<n>, n read from the tone's pitch, so each word names its
    absolute place in the episode; segment times are relative to the chunk, as the API's are."""
    samples = served_samples(received.files["file"])
    window = audio_codec.SAMPLE_RATE // 2
    frames = samples[: samples.size // window * window].reshape(-1, window)
    loud = np.sqrt((frames**2).mean(axis=1)) > 0.03
    pitch = np.abs(np.fft.rfft(frames, n=audio_codec.SAMPLE_RATE, axis=1)).argmax(axis=1)  # to 1 Hz
    segments: list[dict[str, object]] = []
    previous = None
    for k, (sounding, hz) in enumerate(zip(loud, pitch)):
        burst = round((hz - frequency(0)) / 5) if sounding else None
        if burst is not None and burst == previous:
            segments[-1]["end"] = (k + 1) / 2
        elif burst is not None:
            segments.append({"id": len(segments), "start": k / 2, "end": (k + 1) / 2, "text": f" b{burst}"})
        previous = burst
    return Reply(
        json={
            "task": "transcribe",
            "language": "english",
            "duration": samples.size / 16000,
            "text": "".join(str(s["text"]) for s in segments),
            "segments": segments,
        },
        delay_s=1.0,
    )


def test_an_hour_long_episode_goes_in_chunks_under_the_upload_limit(api: OpenAIServer, tmp_path: Path) -> None:
    """An hour-long episode of 58 MB (the API takes 25 MB) is cut into seven chunks of at most ten minutes at its
    silences (two inside a long tone, where it has none), sent three at a time, and stitched: every tone heard once,
    in order, at its time. The server "hears" tones, not speech (see tone_transcription): an hour of real Whisper
    inference would take far too long here. (It was two hours and thirteen chunks: an hour still passes the limit
    twice over, cuts in silences and in a tone, and keeps more chunks waiting than are in flight, for half the cost
    of encoding and decoding the audio, most of the test's time.)"""
    started = time.perf_counter()
    source = hour_long_episode(tmp_path / "an-hour.wav")
    generated_s = time.perf_counter() - started
    audio = audio_file(source, tmp_path / "episode", "an-hour")
    assert audio.bytes > 50_000_000
    api.transcribe = tone_transcription
    plans: list[tuple[Chunk, ...]] = []
    encoded_s: list[float] = []

    def planned(*args: object, **kwargs: object) -> tuple[Chunk, ...]:
        plans.append(plan_chunks(*args, **kwargs))  # type: ignore[arg-type]
        return plans[-1]

    def encoded(samples: np.ndarray) -> bytes:
        began = time.thread_time()  # CPU time: the wall time depends on what else the cores are doing
        try:
            return encode_chunk(samples)
        finally:
            encoded_s.append(time.thread_time() - began)

    progress: list[tuple[float, float]] = []
    settings = openai_settings(tmp_path, api, openai_requests=3)

    transcribing = time.perf_counter()
    transcript = api_transcript(audio, settings, heard_into(progress), plan=planned, encode=encoded)
    transcribed_s = time.perf_counter() - transcribing

    [chunks] = plans
    requests = api.requests(TRANSCRIPTIONS)
    sizes = [len(r.files["file"]) for r in requests]
    print(
        f"\n{len(chunks)} chunks; MB: {[round(s / 1e6, 2) for s in sizes]}; generated in {generated_s:.1f} s; "
        f"encoding took {sum(encoded_s):.1f} CPU s; transcribed in {transcribed_s:.1f} s; "
        f"peak in flight {api.peak_in_flight(TRANSCRIPTIONS)}"
    )
    assert len(requests) == len(chunks) == 7
    assert all(size < 25_000_000 for size in sizes) and sum(sizes) < 20_000_000
    assert all(c.end_s - c.start_s <= openai_chunks.CHUNK_S + 2 * openai_chunks.OVERLAP_S for c in chunks)
    assert 1 < api.peak_in_flight(TRANSCRIPTIONS) <= 3
    cuts = [c.own_end_s for c in chunks[:-1]]
    in_tones = [cut for cut in cuts if UNBROKEN[0] + PERIOD_S < cut < UNBROKEN[1]]
    assert len(in_tones) == 2  # no silence there: these are the cuts whose overlap both neighbours hear
    for cut in set(cuts) - set(in_tones):
        assert TONE_S < cut % PERIOD_S < PERIOD_S, cut  # in a silence

    assert [s.text for s in transcript.segments] == [f"b{n}" for n in range(BURSTS)]
    assert [s.start for s in transcript.segments] == pytest.approx([n * PERIOD_S for n in range(BURSTS)], abs=0.6)
    assert all(s.start < s.end <= t.start for s, t in zip(transcript.segments, transcript.segments[1:]))
    assert transcript.audio_duration_s == pytest.approx(BURSTS * PERIOD_S, abs=0.01)
    assert transcript.segments[-1].end == pytest.approx(BURSTS * PERIOD_S - PERIOD_S + TONE_S, abs=0.6)
    assert (transcript.backend, transcript.language, transcript.estimated_timing) == ("openai", "en", False)
    assert len(progress) == 7 and progress[-1] == (transcript.audio_duration_s, transcript.audio_duration_s)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


# Failures -------------------------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(api: OpenAIServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(
        TRANSCRIPTIONS,
        error(
            429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", headers={"Retry-After": "1.5"}
        ),
        canned(),
    )

    transcript = api_transcript(audio, openai_settings(tmp_path, api))

    first, second = api.requests(TRANSCRIPTIONS)
    assert 1.5 <= second.started - first.ended < 3.0  # the backoff alone would have been ~0.01 s
    assert transcript.text == "Hello there."


@pytest.mark.parametrize(
    "failure",
    [
        error(500, "The server had an error", "server_error"),
        error(503, "Slow down", "server_error"),
        Reply(json={"text": "too late"}, delay_s=2.5),
    ],
    ids=["500", "503", "timeout"],
)
def test_server_errors_and_timeouts_are_retried(failure: Reply, api: OpenAIServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(TRANSCRIPTIONS, failure, canned())

    transcript = api_transcript(audio, openai_settings(tmp_path, api, http_timeout_s=1.0))

    assert len(api.requests(TRANSCRIPTIONS)) == 2 and transcript.text == "Hello there."


def test_retries_are_bounded(api: OpenAIServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.transcribe = lambda received: error(502, "Bad gateway upstream", "server_error")

    with pytest.raises(TranscriptionError, match=r"failed on chunk 1 3 times; last: HTTP 502, type server_error$"):
        api_transcript(audio, openai_settings(tmp_path, api, openai_attempts=3))
    assert len(api.requests(TRANSCRIPTIONS)) == 3


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, f"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com."),
        (400, "Invalid file format. Supported formats: ['flac', 'mp3', 'ogg', 'wav']"),
    ],
)
def test_a_refusal_fails_at_once_and_clearly(
    status: int, message: str, api: OpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(TRANSCRIPTIONS, error(status, message))

    with pytest.raises(TranscriptionError) as raised:
        transcribe_audio(audio, episode_of(audio), tmp_path, openai_settings(tmp_path, api))

    assert len(api.requests(TRANSCRIPTIONS)) == 1
    shown = str(raised.value)
    assert f"refused chunk 1: HTTP {status}, type invalid_request_error" in shown, shown
    assert message.split(":")[0] not in shown  # the server's words are its own: not repeated
    assert api.base_url in shown
    assert leaks(shown, "".join(traceback.format_exception(raised.value)), caplog.text) == []
    assert not (tmp_path / "transcript.json").exists()


def test_a_malformed_reply_fails_clearly(api: OpenAIServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(TRANSCRIPTIONS, Reply(body=b'{"text": "Hello', headers={"Content-Type": "application/json"}))

    with pytest.raises(TranscriptionError, match=r"answered chunk 1 with malformed JSON \(15 bytes\)$"):
        api_transcript(audio, openai_settings(tmp_path, api))

    api.queue(TRANSCRIPTIONS, Reply(json={"segments": "none"}))
    with pytest.raises(TranscriptionError, match="without a transcript text"):
        api_transcript(audio, openai_settings(tmp_path, api))
    api.queue(TRANSCRIPTIONS, Reply(json={"text": "x", "segments": [{"start": "soon", "end": 1, "text": "x"}]}))
    with pytest.raises(TranscriptionError, match=r"segments of an unexpected shape \(ValueError\)$"):
        api_transcript(audio, openai_settings(tmp_path, api))
    assert len(api.requests(TRANSCRIPTIONS)) == 3


MARKER = "SECRET-BODY-MARKER"


@pytest.mark.parametrize(
    "reply",
    [
        error(400, f"Invalid file format: {MARKER}", "invalid_request_error", "invalid_file"),
        error(400, "Invalid file format.", f"{MARKER} in words", f"{MARKER}!"),  # not identifiers: not shown either
        Reply(status=400, body=f"<html>{MARKER}</html>".encode()),
        Reply(status=400, json={"detail": MARKER}),
        Reply(status=502, body=f"<html>{MARKER}</html>".encode()),
        Reply(body=f'{{"text": "{MARKER}'.encode()),
        Reply(json={"text": "x", "segments": [{"start": MARKER, "end": 1, "text": "x"}]}),
        Reply(
            json={
                "text": "x",
                "segments": [
                    {
                        "start": 0,
                        "end": 1,
                        "text": "x",
                        "words": [{"start": 0, "end": 1, "word": "x", "probability": MARKER}],
                    }
                ],
            }
        ),
    ],
    ids=[
        "error-message",
        "error-identifiers",
        "html-4xx",
        "json-4xx",
        "html-5xx",
        "malformed-json",
        "segment-time",
        "word-probability",
    ],
)
def test_no_failure_or_retry_message_quotes_the_servers_answer(reply: Reply, api: OpenAIServer, tmp_path: Path) -> None:
    """A server's answer is a stranger's bytes: messages and logs say what was wrong with it, never what it said."""
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.transcribe = lambda received: reply
    heard: list[str] = []
    with pytest.raises(TranscriptionError) as raised:
        api_transcript(audio, openai_settings(tmp_path, api), retried_into(heard))
    assert [text for text in [str(raised.value), *heard] if MARKER in text] == []


def test_an_answer_that_is_not_http_is_not_quoted(tmp_path: Path) -> None:
    """h11 quotes the status line it could not read; the answer is told as broken, not repeated."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def answer_garbage() -> None:  # once: openai_attempts=1
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(f"{MARKER} garbage\r\n\r\n".encode())

        threading.Thread(target=answer_garbage, daemon=True).start()
        settings = Settings.of(
            output_dir=tmp_path,
            transcriber="openai",
            openai_attempts=1,
            openai_base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
        )
        audio = demo_audio(DEMO_EPISODES[0], tmp_path)
        with pytest.raises(TranscriptionError, match="RemoteProtocolError") as raised:
            api_transcript(audio, settings)
    assert MARKER not in str(raised.value)


def test_retries_are_heard_on_the_transcribe_path(api: OpenAIServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(TRANSCRIPTIONS, error(503, "Slow down", "server_error"), canned())
    heard: list[str] = []

    transcript = transcribe_audio(
        audio, episode_of(audio), tmp_path, openai_settings(tmp_path, api), retried_into(heard)
    )

    assert transcript.text == "Hello there." and len(heard) == 1
    assert heard[0].startswith(f"the OpenAI API at {api.base_url}, chunk 1: HTTP 503, type server_error; retrying in ")


def test_an_account_out_of_quota_is_refused_at_once(api: OpenAIServer, tmp_path: Path) -> None:
    """A 429 for insufficient_quota will not pass by waiting: no retry, and the reason said."""
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(
        TRANSCRIPTIONS,
        error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        canned(),
    )

    with pytest.raises(
        TranscriptionError,
        match=r"refused chunk 1: HTTP 429, type insufficient_quota, "
        r"code insufficient_quota; the account is out of quota$",
    ):
        api_transcript(audio, openai_settings(tmp_path, api))
    assert len(api.requests(TRANSCRIPTIONS)) == 1


def test_credentials_in_the_base_url_are_masked_in_messages(api: OpenAIServer, tmp_path: Path) -> None:
    """Errors mask URLs themselves; a retry's message must not need to."""
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(TRANSCRIPTIONS, error(503, "Slow down", "server_error"), error(400, "Invalid file format."))
    settings = openai_settings(tmp_path, api).but(openai_base_url=api.base_url.replace("://", "://podflow:hunter2@"))
    heard: list[str] = []

    with pytest.raises(TranscriptionError) as raised:
        api_transcript(audio, settings, retried_into(heard))

    where = f"the OpenAI API at {api.base_url.replace('://', '://***@')}"
    assert str(raised.value).startswith(f"{where} refused chunk 1: HTTP 400")
    assert len(heard) == 1 and heard[0].startswith(f"{where}, chunk 1: HTTP 503, type server_error")
    assert "hunter2" not in str(raised.value) + heard[0]


def test_segments_a_server_sends_out_of_order_come_out_in_order(api: OpenAIServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(
        TRANSCRIPTIONS,
        Reply(
            json={
                "text": "Third. First. Second.",
                "segments": [
                    {"start": 8.0, "end": 12.0, "text": " Third."},
                    {"start": 2.0, "end": 4.0, "text": " First."},
                    {"start": 3.0, "end": 5.0, "text": " Second."},
                ],
            }
        ),
    )

    transcript = api_transcript(audio, openai_settings(tmp_path, api))

    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (2.0, 4.0, "First."),
        (4.0, 5.0, "Second."),
        (8.0, 12.0, "Third."),
    ]


def test_without_a_key_the_openai_api_is_not_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    with pytest.raises(TranscriptionError, match="no OpenAI API key: set OPENAI_API_KEY"):
        api_transcript(audio, Settings.of(transcriber="openai"))


# Prefect: the Secret block, the shared rate limit, and no key in what a run leaves behind --------------------


@pytest.mark.usefixtures("prefect_api")
def test_the_key_can_come_from_a_prefect_secret(
    api: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    Secret(value="sk-from-the-block-456").save("podflow-openai-test", overwrite=True)
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    api.queue(TRANSCRIPTIONS, canned())

    api_transcript(audio, openai_settings(tmp_path, api, openai_api_key_secret="podflow-openai-test"))

    assert api.requests(TRANSCRIPTIONS)[0].headers["authorization"] == "Bearer sk-from-the-block-456"
    with pytest.raises(TranscriptionError, match="Secret block 'no-such-block'.*cannot be loaded"):
        api_transcript(audio, openai_settings(tmp_path, api, openai_api_key_secret="no-such-block"))


@pytest.mark.usefixtures("prefect_api")
def test_every_request_takes_a_slot_of_the_shared_rate_limit(api: OpenAIServer, tmp_path: Path) -> None:
    """Two requests a second over all runs (a Prefect global concurrency limit with slot decay), though four may
    be in flight: seven requests start about half a second apart."""
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="openai-test-rate", limit=1, slot_decay_per_second=2.0)
        )
    speech = np.concatenate([decoded(DEMO_DIR / f"{demo.slug}.mp3") for demo in DEMO_EPISODES])
    audio = audio_file(write_wav(tmp_path / "all.wav", speech), tmp_path / "episode", "all")
    api.transcribe = lambda received: canned()
    settings = openai_settings(tmp_path, api, openai_requests=4, openai_rate_limit="openai-test-rate")

    api_transcript(audio, settings, chunk_s=10.0)

    starts = sorted(r.started for r in api.requests(TRANSCRIPTIONS))
    assert len(starts) == 7 and min(b - a for a, b in zip(starts, starts[1:])) > 0.3
    with pytest.raises(TranscriptionError, match="rate limit 'no-such-limit' .*cannot be taken"):
        api_transcript(audio, openai_settings(tmp_path, api, openai_rate_limit="no-such-limit"))


@pytest.mark.usefixtures("prefect_api")
def test_waiting_for_a_rate_limit_slot_is_bounded_and_ends_when_a_sibling_fails() -> None:
    """One slot every 4 s, just taken: a request gives up after openai_rate_limit_wait_s, and one whose sibling fails
    while it waits is not sent once its slot comes."""
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="openai-test-slow", limit=1, slot_decay_per_second=0.25)
        )
    rate_limit("openai-test-slow", strict=True)
    settings = Settings.of(openai_rate_limit="openai-test-slow", openai_rate_limit_wait_s=1.0)
    sent: list[str] = []

    def send(name: str):  # type: ignore[no-untyped-def]
        return lambda: sent.append(name)

    started = time.monotonic()
    with pytest.raises(
        TranscriptionError,
        match=r"no slot of the rate limit 'openai-test-slow' \(openai_rate_limit\) "
        r"within 1 s \(openai_rate_limit_wait_s\)",
    ):
        call_with_retries(
            send("bounded"), settings.openai, TranscriptionError, threading.Event(), key=None, timeout_s=1.0
        )
    assert time.monotonic() - started < 3.0

    stopped = threading.Event()
    threading.Timer(0.3, stopped.set).start()  # a sibling fails while this request waits for its slot
    with pytest.raises(TranscriptionError, match="not sent: another request to the API failed"):
        call_with_retries(
            send("stopped"),
            settings.but(openai_rate_limit_wait_s=30.0).openai,
            TranscriptionError,
            stopped,
            key=None,
            timeout_s=1.0,
        )
    assert sent == []


@pytest.mark.usefixtures("prefect_api")
def test_no_run_record_log_or_file_holds_the_key(
    api: OpenAIServer, server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.ingest import ingest_feed

    caplog.set_level(logging.DEBUG)
    for demo in DEMO_EPISODES[:2]:
        server.add(f"/{demo.slug}.mp3", demo.audio)
    feed_url = server.add(
        "/feed.xml",
        rss([rss_item(demo.title, guid=demo.slug, enclosure=f"{demo.slug}.mp3") for demo in DEMO_EPISODES[:2]]),
    )
    api.queue(TRANSCRIPTIONS, error(401, f"Incorrect API key provided: {KEY}."))  # the first episode's
    settings = openai_settings(tmp_path / "out", api, enrich="none", allowed_networks=LOOPBACK)

    state = ingest_feed(feed_url, settings, return_state=True)

    report = state.result(raise_on_failure=False)
    assert state.is_failed() and sorted(e.status for e in report.episodes) == ["complete", "failed"]
    failed = next(e for e in report.episodes if e.status == "failed")
    assert "HTTP 401, type invalid_request_error; the API key was refused" in (failed.error or "")
    done = next(e for e in report.episodes if e.status == "complete")
    transcript = Transcript.model_validate_json(
        next(Path(settings.output.output_dir).rglob("transcript.json")).read_bytes()
    )
    assert transcript.backend == "openai" and done.episode_id == transcript.episode_id
    written = {path: path.read_bytes() for path in Path(settings.output.output_dir).rglob("*") if path.is_file()}
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        flow_run = client.read_flow_run(flow_run_id)
    reported = [
        state.message or "",
        report.model_dump_json(),
        flow_run.model_dump_json(),
        *(log.message for log in logs),
        *(str(artifact.data) for artifact in artifacts),
        *(run.model_dump_json() for run in task_runs),
        caplog.text,
    ]
    assert any("the API key was refused" in text for text in reported[2:])  # the failure is reported
    assert leaks(*reported) == []
    assert [str(path) for path, body in written.items() if KEY.encode() in body] == []


# Pure parts -----------------------------------------------------------------------------------------------------


def power_of(pattern: str) -> np.ndarray:
    """Loudness per frame from a picture: '#' sound, '.' silence, one character a frame."""
    return np.array([1e-2 if c == "#" else 1e-7 for c in pattern])


def test_cuts_fall_in_the_middle_of_the_last_silence_before_the_limit() -> None:
    # 0.1-s frames: sound, a 1-s silence at 5-6 s, sound, a 1-s silence at 8-9 s, sound to 12 s
    power = power_of("#" * 50 + "." * 10 + "#" * 20 + "." * 10 + "#" * 30)
    chunks = plan_chunks(power, 12.0, frame_s=0.1, chunk_s=10.0, overlap_s=1.0)
    assert chunks == (
        Chunk(0, 0.0, pytest.approx(9.5), 0.0, pytest.approx(8.5)),
        Chunk(1, pytest.approx(7.5), 12.0, pytest.approx(8.5), 12.0),
    )
    # chunks of at most 8.6 s: the silence runs past the limit, and is cut in the middle of its part before it
    [first, _] = plan_chunks(power, 12.0, frame_s=0.1, chunk_s=8.6, overlap_s=1.0)
    assert 8.2 < first.own_end_s <= 8.6
    assert plan_chunks(power, 12.0, frame_s=0.1, chunk_s=12.0, overlap_s=1.0) == (Chunk(0, 0.0, 12.0, 0.0, 12.0),)


def test_without_silence_a_cut_still_falls_within_the_limit() -> None:
    power = np.full(1000, 1e-2)
    power[::7] = 2e-2  # louder and softer moments, none silent
    chunks = plan_chunks(power, 100.0, frame_s=0.1, chunk_s=30.0, overlap_s=2.0)
    assert chunks[0].own_start_s == 0 and chunks[-1].own_end_s == 100.0
    for chunk, after in zip(chunks, chunks[1:]):
        assert 0.8 * 30 <= chunk.own_end_s - chunk.own_start_s <= 30
        assert after.own_start_s == chunk.own_end_s and after.start_s == chunk.own_end_s - 2.0
        assert chunk.end_s == chunk.own_end_s + 2.0


def test_an_encoded_chunk_decodes_to_the_same_length(tmp_path: Path) -> None:
    seconds = 30
    t = np.arange(seconds * audio_codec.SAMPLE_RATE) / audio_codec.SAMPLE_RATE
    data = encode_chunk((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    assert 0.8 * seconds * 4000 < len(data) < 1.3 * seconds * 4000  # 32 kbit/s
    (tmp_path / "chunk.ogg").write_bytes(data)
    assert decoded(tmp_path / "chunk.ogg").size == pytest.approx(t.size, abs=400)


def timed(chunk: Chunk, *segments: tuple[float, float, str]) -> ChunkTranscript:
    return ChunkTranscript(chunk, tuple(Segment(start=a, end=b, text=text) for a, b, text in segments), "en", True)


def test_stitching_keeps_the_words_two_chunks_both_heard_once() -> None:
    first, second = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 20, 10, 20)
    stitched = stitch(
        [
            timed(first, (0, 4, "One two three."), (5, 11.5, "Four five six seven"), (11.6, 12, "eigh")),
            timed(second, (8, 9.5, "three."), (9.6, 13, "five, six seven eight"), (13, 15, "nine ten.")),
        ]
    )
    # "three." lies in the overlap the first chunk owns; "eigh" the one the second owns; "five six seven" both heard
    assert [(s.start, s.end, s.text) for s in stitched] == [
        (0, 4, "One two three."),
        (5, 11.5, "Four five six seven"),
        (11.5, 13, "eight"),
        (13, 15, "nine ten."),
    ]


def test_stitching_joins_where_both_agree_dropping_what_the_cut_clipped() -> None:
    first, second = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 20, 10, 20)
    stitched = stitch(
        [
            timed(
                first,
                (0, 6, "A river carries sand and stones"),
                (6, 12, "from the hills to the sea, over years that wa"),
            ),
            timed(second, (8, 12.5, "ills to the sea. Over years the water cut"), (12.5, 16, "steep valleys.")),
        ]
    )
    assert [(s.start, s.end, s.text) for s in stitched] == [
        (0, 6, "A river carries sand and stones"),
        (6, 12, "from the hills to the sea, over years"),
        (12, 12.5, "the water cut"),
        (12.5, 16, "steep valleys."),
    ]


def test_stitching_drops_nothing_for_one_common_word_inside_the_overlap() -> None:
    first, second = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 20, 10, 20)
    stitched = stitch([timed(first, (0, 10.2, "and the rest")), timed(second, (9.9, 14, "of the day"))])
    assert [s.text for s in stitched] == ["and the rest", "of the day"]


def test_stitching_keeps_words_said_twice_in_the_overlap() -> None:
    first, second = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 20, 10, 20)
    stitched = stitch(
        [
            timed(first, (0, 7, "Some words before"), (7.6, 8.6, "of the"), (8.8, 10.1, "river.")),
            timed(second, (10.0, 11.4, "Then, all"), (11.6, 12.6, "of the sea.")),
        ]
    )
    assert [s.text for s in stitched] == ["Some words before", "of the", "river.", "Then, all", "of the sea."]


def test_stitching_keeps_a_word_said_twice_across_a_pause() -> None:
    first, second = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 20, 10, 20)
    stitched = stitch([timed(first, (0, 9, "Is it over? No.")), timed(second, (11, 14, "No, not yet."))])
    assert [s.text for s in stitched] == ["Is it over? No.", "No, not yet."]


def test_stitching_text_only_chunks_drops_the_repeated_words() -> None:
    first, second, third = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 22, 10, 20), Chunk(2, 18, 25, 20, 25)
    parts = [
        ChunkTranscript(c, (Segment(start=c.own_start_s, end=c.own_end_s, text=text),), None, False)
        for c, text in (
            (first, "The river carries sand"),
            (second, "carries sand and stones to the"),
            (third, "to the sea."),
        )
    ]
    assert [s.text for s in stitch(parts)] == ["The river carries sand", "and stones to the", "sea."]


def test_stitching_text_only_chunks_splices_each_cut_with_its_own_neighbour() -> None:
    """Three ten-minute text-only chunks: "you know" ends the first and begins the third. The third is joined to
    the second alone, where "the sea" both heard is kept once, and the second is all there."""
    chunks = (Chunk(0, 0, 602, 0, 600), Chunk(1, 598, 1202, 600, 1200), Chunk(2, 1198, 1800, 1200, 1800))
    texts = (
        " ".join(f"a{i}" for i in range(1438)) + " you know",
        " ".join(f"b{i}" for i in range(1438)) + " the sea",
        "the sea you know " + " ".join(f"c{i}" for i in range(1436)),
    )
    parts = [
        ChunkTranscript(c, (Segment(start=c.own_start_s, end=c.own_end_s, text=text),), None, False)
        for c, text in zip(chunks, texts)
    ]

    stitched = stitch(parts)

    assert [s.text for s in stitched] == [texts[0], texts[1], texts[2].removeprefix("the sea ")]
    assert [(s.start, s.end) for s in stitched] == [(0, 600), (600, 1200), (1200, 1800)]


def test_stitching_never_moves_a_start_back_nor_an_end_before_its_start() -> None:
    """Segments out of order (parse_reply sorts a server's; this is stitch's own guarantee): where neighbours
    overlap they meet, no start goes back and no segment ends before it starts."""
    stitched = stitch([timed(Chunk(0, 0, 30, 0, 30), (10, 20, "c"), (6, 8, "a"), (7, 9, "b"), (22, 25, "d"))])
    assert [s.text for s in stitched] == ["c", "a", "b", "d"]
    assert all(s.start <= s.end for s in stitched), stitched
    assert all(s.start <= t.start and s.end <= t.start for s, t in zip(stitched, stitched[1:])), stitched


def test_stitching_with_words_trims_them_too() -> None:
    first, second = Chunk(0, 0, 12, 0, 10), Chunk(1, 8, 20, 10, 20)

    def spoken(*items: tuple[float, str]) -> Segment:
        heard = tuple(Word(start=at, end=at + 0.4, text=text) for at, text in items)
        return Segment(start=heard[0].start, end=heard[-1].end, text=" ".join(w.text for w in heard), words=heard)

    stitched = stitch(
        [
            ChunkTranscript(first, (spoken((9, "over"), (9.5, "the"), (10.2, "hill")),), "en", True),
            ChunkTranscript(second, (spoken((9.1, "the"), (10.3, "hill"), (11, "and"), (12, "far")),), "en", True),
        ]
    )
    assert [s.text for s in stitched] == ["over the hill", "and far"]
    assert stitched[1].start == 11 and [w.text for w in stitched[1].words] == ["and", "far"]


def test_a_verbose_reply_is_moved_to_the_chunk_and_its_words_placed() -> None:
    chunk = Chunk(3, 598.0, 1201.0, 600.0, 1199.0)
    payload = {
        "language": "german",
        "text": "Guten Tag. Wie geht's?",
        "segments": [
            {"start": 0.5, "end": 1.5, "text": " Guten Tag."},
            {"start": 2.0, "end": 700.0, "text": " Wie geht's?"},
        ],
        "words": [
            {"word": "Guten", "start": 0.5, "end": 0.9},
            {"word": "Tag.", "start": 1.0, "end": 1.5},
            {"word": "Wie", "start": 2.0, "end": 2.2},
            {"word": "geht's?", "start": 2.3, "end": 2.8},
        ],
    }
    part = parse_reply(payload, chunk, 598.0, True, "test")
    assert part.language == "de" and part.timed
    assert [(s.start, s.end, s.text) for s in part.segments] == [
        (598.5, 599.5, "Guten Tag."),
        (600.0, 1201.0, "Wie geht's?"),
    ]
    assert [[w.text for w in s.words] for s in part.segments] == [["Guten", "Tag."], ["Wie", "geht's?"]]
