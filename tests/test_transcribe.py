"""Real transcription of real speech on every backend, checked word by word, and its files parsed back with real
subtitle parsers. Whisper runs the bundled models; published transcripts come from a real HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks import audio as audio_codec
from tasks.errors import AudioDecodeError, AudioTooLongError, TranscriptionError
from tasks.models import AudioFile, Segment, Settings, TranscriptLink
from tasks.transcribe.base import load_backend
from tasks.transcribe.model_choice import choose_model, heard_with
from tasks.transcribe.stage import transcribe_audio
from tasks.transcribe.subtitles import to_vtt
from tests.audio_files import audio_file, demo_audio
from tests.conftest import DEMO_DIR, DEMO_EPISODES, LOOPBACK, DemoEpisode
from tests.events import fell_back_into, heard_into
from tests.feedserver import FeedServer
from tests.speech import decoded, word_error_rate
from tests.transcripts import MAX_WER, assert_files_agree, episode_of

FIXTURES = Path(__file__).parent / "fixtures"
SPOKEN = json.loads((FIXTURES / "speech.json").read_text())

# openai-whisper runs 10-20x slower than faster-whisper on these CPUs: greedy decoding keeps the suite short, and
# still has to get the words right.
WHISPER_ENGINES: dict[str, dict[str, Any]] = {
    "faster-whisper": {"transcriber": "faster-whisper"},
    "whisper": {"transcriber": "whisper", "beam_size": 1},
}


def script_as_vtt(script: str, duration_s: float) -> str:
    """A publisher's transcript of a clip: one cue per sentence, spread over the clip."""
    sentences = [sentence.strip() + "." for sentence in script.split(".") if sentence.strip()]
    step = duration_s / len(sentences)
    return to_vtt([Segment(start=i * step, end=(i + 1) * step, text=s) for i, s in enumerate(sentences)])


@pytest.mark.parametrize("engine", WHISPER_ENGINES)
@pytest.mark.parametrize("demo", DEMO_EPISODES, ids=lambda d: d.slug)
def test_whisper_transcript_matches_the_spoken_script(engine: str, demo: DemoEpisode, tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path, **WHISPER_ENGINES[engine])
    progress: list[tuple[float, float]] = []
    audio = demo_audio(demo, tmp_path)
    transcript = transcribe_audio(audio, episode_of(audio), tmp_path, settings, heard_into(progress))

    assert word_error_rate(demo.script, transcript.text) < MAX_WER, transcript.text
    assert (transcript.backend, transcript.model, transcript.language) == (engine, "bundled:tiny.en", "en")
    assert not transcript.estimated_timing and transcript.source_url is None
    assert 10 < transcript.audio_duration_s < 20
    assert all(s.start < s.end <= transcript.audio_duration_s + 0.5 for s in transcript.segments)
    assert [s.start for s in transcript.segments] == sorted(s.start for s in transcript.segments)
    assert [done for done, _ in progress] == [s.end for s in transcript.segments]
    assert all(total == pytest.approx(transcript.audio_duration_s, abs=0.001) for _, total in progress)
    assert_files_agree(transcript, tmp_path)


@pytest.mark.parametrize("demo", DEMO_EPISODES, ids=lambda d: d.slug)
def test_published_transcript_is_used_instead_of_whisper(demo: DemoEpisode, server: FeedServer, tmp_path: Path) -> None:
    audio = demo_audio(demo, tmp_path)
    duration_s = audio_codec.probe(audio.path).duration_s or 0
    url = server.add(f"/{demo.slug}.vtt", script_as_vtt(demo.script, duration_s).encode())
    settings = Settings.of(output_dir=tmp_path, transcriber="published", allowed_networks=LOOPBACK)

    transcript = transcribe_audio(
        audio, episode_of(audio, TranscriptLink(url=url, type="text/vtt", language="en")), tmp_path, settings
    )

    assert word_error_rate(demo.script, transcript.text) < MAX_WER, transcript.text
    assert (transcript.backend, transcript.model, transcript.language) == ("published", "text/vtt", "en")
    assert transcript.source_url == url and not transcript.estimated_timing
    assert transcript.segments[-1].end == pytest.approx(duration_s, abs=0.002)
    assert_files_agree(transcript, tmp_path)


def test_the_most_preferred_published_type_wins(server: FeedServer, tmp_path: Path) -> None:
    demo = DEMO_EPISODES[0]
    audio = demo_audio(demo, tmp_path)
    duration_s = audio_codec.probe(audio.path).duration_s or 0
    text_url = server.add("/t.txt", b"First paragraph, short.\n\nSecond paragraph is three times as long as that.")
    vtt_url = server.add("/t.vtt", script_as_vtt(demo.script, duration_s).encode())
    episode = episode_of(audio, TranscriptLink(url=text_url, type="text/plain"), TranscriptLink(url=vtt_url))

    published = Settings.of(output_dir=tmp_path, transcriber="published", allowed_networks=LOOPBACK)
    first = transcribe_audio(audio, episode, tmp_path / "a", published)
    assert first.source_url == vtt_url  # VTT (known by its suffix) outranks text by default
    texts_only = published.but(published_types=("text/plain",))
    second = transcribe_audio(audio, episode, tmp_path / "b", texts_only)
    assert second.source_url == text_url and second.estimated_timing
    assert [s.text for s in second.segments] == [
        "First paragraph, short.",
        "Second paragraph is three times as long as that.",
    ]
    assert second.segments[0].start == 0 and second.segments[-1].end == pytest.approx(duration_s, abs=0.002)
    assert server.count("/t.txt") == 1 and server.count("/t.vtt") == 1


def test_a_malformed_published_transcript_falls_back_to_whisper_or_fails_as_told(
    server: FeedServer, tmp_path: Path
) -> None:
    demo = DEMO_EPISODES[1]
    audio = demo_audio(demo, tmp_path)
    url = server.add("/broken.vtt", b"not a webvtt file\n\n00:01 --> 00:02\nhello")
    episode = episode_of(audio, TranscriptLink(url=url, type="text/vtt"))
    reasons: list[str] = []

    preferred = Settings.of(output_dir=tmp_path, prefer_published=True, allowed_networks=LOOPBACK)
    fallen_back = transcribe_audio(audio, episode, tmp_path / "a", preferred, fell_back_into(reasons))
    assert fallen_back.backend == "faster-whisper"
    assert word_error_rate(demo.script, fallen_back.text) < MAX_WER
    assert len(reasons) == 1 and url in reasons[0] and "WEBVTT header" in reasons[0]

    strict = preferred.but(published_fallback=False)
    with pytest.raises(TranscriptionError, match="WEBVTT header") as error:
        transcribe_audio(audio, episode, tmp_path / "b", strict)
    assert url in str(error.value)
    assert not (tmp_path / "b" / "transcript.json").exists()


def test_published_only_fails_clearly_without_a_usable_link(server: FeedServer, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    settings = Settings.of(output_dir=tmp_path, transcriber="published", allowed_networks=LOOPBACK)
    with pytest.raises(TranscriptionError, match=r"links no transcript.*offered: application/pdf"):
        transcribe_audio(
            audio,
            episode_of(audio, TranscriptLink(url=server.url("/t.pdf"), type="application/pdf")),
            tmp_path,
            settings,
        )
    missing = server.url("/gone.vtt")
    with pytest.raises(TranscriptionError, match="HTTP 404"):
        transcribe_audio(audio, episode_of(audio, TranscriptLink(url=missing, type="text/vtt")), tmp_path, settings)


@pytest.mark.parametrize("engine", WHISPER_ENGINES)
def test_word_timestamps_fall_inside_their_segments(engine: str, tmp_path: Path) -> None:
    demo = DEMO_EPISODES[2]
    audio = demo_audio(demo, tmp_path)
    settings = Settings.of(output_dir=tmp_path, word_timestamps=True, **WHISPER_ENGINES[engine])
    transcript = transcribe_audio(audio, episode_of(audio), tmp_path, settings)

    assert word_error_rate(demo.script, transcript.text) < MAX_WER
    for segment in transcript.segments:
        assert segment.words, segment
        assert " ".join(word.text for word in segment.words) == segment.text
        assert all(segment.start - 0.05 <= w.start <= w.end <= segment.end + 0.05 for w in segment.words)
        assert [w.start for w in segment.words] == sorted(w.start for w in segment.words)
        assert all(w.probability is not None and 0 <= w.probability <= 1 for w in segment.words)


@pytest.mark.parametrize(
    ("engine", "clip"),
    [("faster-whisper", clip) for clip in SPOKEN] + [("whisper", SPOKEN[0])],
    ids=lambda value: value if isinstance(value, str) else value["language"],
)
def test_the_bundled_multilingual_model_detects_the_spoken_language(
    engine: str, clip: dict[str, str], tmp_path: Path
) -> None:
    settings = Settings.of(output_dir=tmp_path, model="bundled:base", **WHISPER_ENGINES[engine])
    audio = audio_file(FIXTURES / f"{clip['slug']}.mp3", tmp_path, clip["slug"])
    transcript = transcribe_audio(audio, episode_of(audio), tmp_path, settings)

    assert transcript.language == clip["language"]
    # espeak-ng's German is only ~55% German to Whisper, though always more German than anything else.
    assert transcript.language_probability is not None and 0.3 < transcript.language_probability <= 1
    assert word_error_rate(clip["script"], transcript.text) < 0.2, transcript.text


def test_a_named_language_is_used_not_detected(tmp_path: Path) -> None:
    clip = SPOKEN[0]
    settings = Settings.of(output_dir=tmp_path, model="bundled:base", language=clip["language"])
    audio = audio_file(FIXTURES / f"{clip['slug']}.mp3", tmp_path, clip["slug"])
    transcript = transcribe_audio(audio, episode_of(audio), tmp_path, settings)
    assert (transcript.language, transcript.language_probability) == (clip["language"], None)


def test_episodes_heard_with_one_chosen_model_share_its_loaded_backend(tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path)
    french, german, english = (
        heard_with(settings, choose_model(settings.transcribe, None, feed)) for feed in ("fr", "de", "en")
    )
    base = load_backend(french, 1)
    assert base is load_backend(german, 1) and base.model_name == "bundled:base"  # type: ignore[attr-defined]
    tiny = load_backend(english, 1)
    assert tiny is load_backend(settings, 1) and tiny.model_name == "bundled:tiny.en"  # type: ignore[attr-defined]


def test_a_finished_transcript_is_not_redone_unless_the_audio_changed(settings: Settings, tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    first = transcribe_audio(audio, episode_of(audio), tmp_path, settings)
    written = (tmp_path / "transcript.json").stat().st_mtime_ns
    audio.path.write_bytes(b"no longer audio")  # would fail if it were decoded again
    assert transcribe_audio(audio, episode_of(audio), tmp_path, settings) == first
    assert (tmp_path / "transcript.json").stat().st_mtime_ns == written

    replaced = demo_audio(DEMO_EPISODES[1], tmp_path)  # same episode id, new audio (a re-download)
    replaced = replaced.model_copy(update={"episode_id": first.episode_id})
    redone = transcribe_audio(replaced, episode_of(replaced), tmp_path, settings)
    assert redone.audio_sha256 == replaced.sha256
    assert word_error_rate(DEMO_EPISODES[1].script, redone.text) < MAX_WER


@pytest.mark.parametrize("engine", WHISPER_ENGINES)
def test_two_transcriptions_at_once_both_come_out_right(engine: str, tmp_path: Path) -> None:
    """The regression test for openai-whisper's shared-model corruption: two threads on one model object produced
    garbage text and 'cannot reshape tensor of 0 elements'. Each concurrent transcription must get its own model."""
    settings = Settings.of(output_dir=tmp_path, transcribe_workers=2, **WHISPER_ENGINES[engine])
    demos = DEMO_EPISODES[1:3]
    audios = [demo_audio(demo, tmp_path / demo.slug) for demo in demos]
    with ThreadPoolExecutor(2) as pool:
        transcripts = list(pool.map(lambda a: transcribe_audio(a, episode_of(a), a.path.parent, settings), audios))
    for demo, transcript in zip(demos, transcripts):
        assert word_error_rate(demo.script, transcript.text) < MAX_WER, transcript.text


def test_whisper_gives_each_concurrent_transcription_its_own_model(tmp_path: Path) -> None:
    # Three workers: a backend of its own, not one an earlier test left in the process's cache.
    settings = Settings.of(output_dir=tmp_path, transcriber="whisper", transcribe_workers=3, beam_size=1)
    backend = load_backend(settings, 3)
    samples = decoded(DEMO_DIR / f"{DEMO_EPISODES[0].slug}.mp3")[: 3 * audio_codec.SAMPLE_RATE]
    together = threading.Barrier(2)

    def transcribe_with_the_other() -> None:
        together.wait()
        list(backend.segments(samples, settings, "en", None)[1])  # type: ignore[attr-defined]

    with ThreadPoolExecutor(2) as pool:
        for running in [pool.submit(transcribe_with_the_other) for _ in range(2)]:
            running.result()
    models = [backend._idle.get_nowait() for _ in range(backend._idle.qsize())]  # type: ignore[attr-defined]
    assert len(models) == 2 and models[0] is not models[1]


def test_the_stream_gives_16khz_mono_float_samples_of_the_clip_length() -> None:
    samples = decoded(DEMO_DIR / "rivers.mp3")
    probe = audio_codec.probe(DEMO_DIR / "rivers.mp3")
    assert samples.dtype == np.float32
    assert 0.05 < float(np.abs(samples).max()) <= 1.0
    assert probe.codec.startswith("mp3") and probe.sample_rate == 22050 and probe.channels == 1
    assert probe.duration_s is not None
    assert abs(samples.size / audio_codec.SAMPLE_RATE - probe.duration_s) < 0.2


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"<html>not audio</html>" * 50, "cannot be decoded|not readable|no audio"), (b"", "cannot be decoded|no audio")],
)
def test_undecodable_audio_is_a_clear_error(settings: Settings, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "audio.mp3"
    path.write_bytes(content)
    audio = AudioFile(episode_id="x", path=path, source_url="http://127.0.0.1/x.mp3", bytes=len(content), sha256="00")
    with pytest.raises(AudioDecodeError, match=message):
        transcribe_audio(audio, episode_of(audio), tmp_path, settings)
    assert not (tmp_path / "transcript.json").exists()


def test_when_the_preferred_link_fails_the_next_one_is_used(server: FeedServer, tmp_path: Path) -> None:
    demo = DEMO_EPISODES[0]
    audio = demo_audio(demo, tmp_path)
    srt_url = server.add("/t.srt", b"1\n00:00:00,000 --> 00:00:02,000\nHello from the SRT.\n")
    episode = episode_of(
        audio,
        TranscriptLink(url=server.url("/gone.vtt"), type="text/vtt"),
        TranscriptLink(url=srt_url, type="application/srt"),
    )
    settings = Settings.of(output_dir=tmp_path, transcriber="published", allowed_networks=LOOPBACK)
    transcript = transcribe_audio(audio, episode, tmp_path, settings)
    assert (transcript.source_url, transcript.model, transcript.text) == (
        srt_url,
        "application/x-subrip",
        "Hello from the SRT.",
    )


def test_a_transcript_from_before_subtitles_gets_its_srt_and_vtt_on_the_next_run(
    settings: Settings, tmp_path: Path
) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    first = transcribe_audio(audio, episode_of(audio), tmp_path, settings)
    (tmp_path / "transcript.srt").unlink()
    (tmp_path / "transcript.vtt").unlink()
    assert transcribe_audio(audio, episode_of(audio), tmp_path, settings) == first
    assert_files_agree(first, tmp_path)


def test_audio_longer_than_the_limit_is_refused_while_decoding(tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    settings = Settings.of(output_dir=tmp_path, max_audio_duration_s=5)
    with pytest.raises(AudioTooLongError, match="audio.mp3 is longer than the 5-second limit"):
        transcribe_audio(audio, episode_of(audio), tmp_path, settings)
    assert not (tmp_path / "transcript.json").exists()


FULL_DISK = """
import json, resource, sys
from pathlib import Path
from tasks.errors import StorageError
from tasks.models import AudioFile, Episode, Settings
from tasks.transcribe.stage import transcribe_audio
audio = AudioFile.model_validate_json(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # no file may grow past 200 bytes: a disk that fills up
try:
    transcribe_audio(audio, Episode(episode_id=audio.episode_id, title="t"), audio.path.parent, Settings())
except StorageError as error:
    print(error)
"""


def test_a_full_disk_fails_the_transcript_cleanly_and_a_later_run_completes(tmp_path: Path) -> None:
    audio = demo_audio(DEMO_EPISODES[0], tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, audio.model_dump_json()],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=300,
    )
    assert "transcript.txt could not be written: File too large" in result.stdout, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.mp3"]  # no partial transcript, no temp file

    transcript = transcribe_audio(audio, episode_of(audio), tmp_path, Settings.of(output_dir=tmp_path))
    assert_files_agree(transcript, tmp_path)
