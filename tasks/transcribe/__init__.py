"""Transcribe an episode's audio into a Transcript record, `transcript.txt` and `transcript.json`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import audio as audio_codec
from tasks.errors import TranscriptionError, fail_quietly
from tasks.models import AudioFile, Segment, Settings, Transcript
from tasks.store import FeedStore, atomic_write_text, write_record

TRANSCRIPT_FILES = ("transcript.txt", "transcript.json")


class Backend(Protocol):
    name: str
    model_name: str

    def transcribe(
        self, samples: np.ndarray, language: str | None, beam_size: int
    ) -> tuple[str | None, Iterator[Segment]]:
        """The language and the segments, produced lazily as decoding goes on."""
        ...


_backends: dict[str, Backend] = {}
_backends_lock = threading.Lock()


def load_backend(settings: Settings) -> Backend:
    """The process's one backend for these settings, loaded on first use."""
    key = settings.model_dump_json(
        include={"transcriber", "model", "device", "compute_type", "transcribe_workers"}
    )
    with _backends_lock:
        if key not in _backends:
            from tasks.transcribe.faster_whisper import FasterWhisperBackend

            _backends[key] = FasterWhisperBackend(settings)
        return _backends[key]


def read_transcript(episode_dir: Path, audio: AudioFile) -> Transcript | None:
    """The transcript a previous run finished from this very audio file, if any."""
    path = episode_dir / "transcript.json"
    if not path.is_file():
        return None
    transcript = Transcript.model_validate_json(path.read_bytes())
    return transcript if (transcript.episode_id, transcript.audio_sha256) == (audio.episode_id, audio.sha256) else None


def transcribe_audio(
    audio: AudioFile,
    episode_dir: Path,
    settings: Settings,
    on_segment: Callable[[float, float], None] = lambda done_s, total_s: None,
) -> Transcript:
    """Decode, transcribe and write the transcript files; a transcript already written is returned as is.

    `on_segment(seconds_transcribed, seconds_in_total)` is called as each segment comes out.
    """
    if (done := read_transcript(episode_dir, audio)) is not None:
        return done
    samples = audio_codec.decode(audio.path)
    duration_s = samples.size / audio_codec.SAMPLE_RATE
    backend = load_backend(settings)
    segments: list[Segment] = []
    try:
        language, produced = backend.transcribe(samples, settings.language, settings.beam_size)
        for segment in produced:
            segments.append(segment)
            on_segment(segment.end, duration_s)
    except Exception as exc:
        raise TranscriptionError(f"{backend.name} failed on {audio.path.name}: {exc}") from exc
    transcript = Transcript(
        episode_id=audio.episode_id,
        audio_sha256=audio.sha256,
        backend=backend.name,
        model=backend.model_name,
        language=language,
        audio_duration_s=round(duration_s, 3),
        segments=tuple(segments),
    )
    atomic_write_text(episode_dir / "transcript.txt", transcript.text + "\n")
    write_record(episode_dir / "transcript.json", transcript)  # last: its presence means the stage is done
    return transcript


@task(name="transcribe", cache_policy=NO_CACHE, task_run_name="transcribe · {audio.path.parent.name}")
@fail_quietly
def transcribe(audio: AudioFile, store: FeedStore, settings: Settings) -> Transcript:
    logger = get_run_logger()
    next_tenth = 1

    def log_progress(done_s: float, total_s: float) -> None:  # at most once per tenth of the audio
        nonlocal next_tenth
        if total_s and done_s >= total_s * next_tenth / 10:
            logger.info("%.0f%% transcribed (%.0f of %.0f s of audio)", 100 * done_s / total_s, done_s, total_s)
            next_tenth = int(10 * done_s / total_s) + 1

    with store.recording(audio.episode_id, "transcribe"):
        return transcribe_audio(audio, audio.path.parent, settings, log_progress)
