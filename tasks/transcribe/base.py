"""What every transcriber is: the one entry point the transcribe stage calls, the base class of those that hear
decoded audio, and what they share (the process's loaded backends, threads, the device). Imports no backend."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import numpy as np

from tasks import audio as audio_codec
from tasks.errors import TranscriptionError
from tasks.models import AudioFile, Episode, Segment, Settings, Transcript
from tasks.transcribers import BACKENDS


def _nobody(*heard: object) -> None:
    pass


class Progress(NamedTuple):
    """Who hears how a transcription goes: `on_segment(seconds_done, seconds_in_total)` as the audio is heard,
    `on_retry(message)` for each request a backend tries again."""

    on_segment: Callable[[float, float], None] = _nobody
    on_retry: Callable[[str], None] = _nobody


class Backend(Protocol):
    """A transcriber, constructed with the Settings once per process (see load_backend), then called per episode."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, progress: Progress) -> Transcript:
        """The episode's transcript; TranscriptionError, said so a user can act on it, when there can be none."""
        ...


class Detected(NamedTuple):
    language: str | None
    probability: float | None  # None when the settings named the language


class SampleBackend(ABC):
    """A backend that hears the audio itself: it gives the language and the segments of the episode's samples
    (16 kHz mono float32, from the one decoder); decoding, progress and the Transcript record are done here."""

    def __init__(self, settings: Settings):
        self.model_name = settings.model

    @abstractmethod
    def segments(self, samples: np.ndarray, settings: Settings) -> tuple[Detected, Iterator[Segment]]:
        """The language and the segments, in order, produced lazily where the engine can."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, progress: Progress) -> Transcript:
        samples = audio_codec.decode(audio.path, settings.max_audio_duration_s)
        duration_s = samples.size / audio_codec.SAMPLE_RATE
        heard: list[Segment] = []
        try:
            detected, produced = self.segments(samples, settings)
            for segment in produced:
                heard.append(segment)
                progress.on_segment(segment.end, duration_s)
        except Exception as exc:
            raise TranscriptionError(f"{settings.transcriber} failed on {audio.path.name}: {exc}") from exc
        return Transcript(
            episode_id=audio.episode_id,
            audio_sha256=audio.sha256,
            backend=settings.transcriber,
            model=self.model_name,
            language=detected.language,
            language_probability=detected.probability,
            audio_duration_s=round(duration_s, 3),
            segments=tuple(heard),
        )


# What a backend is constructed with: other settings may change from one call to the next.
LOADED_BY = {"transcriber", "model", "device", "compute_type", "transcribe_workers", "transcribe_pool"}
_backends: dict[str, Backend] = {}
_backends_lock = threading.Lock()


def load_backend(settings: Settings) -> Backend:
    """The process's one backend for these settings, loaded on first use; TranscriptionError if it cannot be."""
    key = settings.model_dump_json(include=LOADED_BY)
    with _backends_lock:
        if key not in _backends:
            try:
                _backends[key] = BACKENDS[settings.transcriber].load()(settings)
            except Exception as exc:
                raise TranscriptionError(
                    f"the {settings.transcriber} model {settings.model!r} cannot be loaded: {exc}"
                ) from exc
        return _backends[key]


def runs_in_processes(settings: Settings) -> bool:
    """Whether the transcribe stage's workers are processes: `auto` picks them for a backend registered with
    processes_on_cuda (openai-whisper) when its model runs on CUDA."""
    if settings.transcribe_pool == "auto":
        return BACKENDS[settings.transcriber].processes_on_cuda and torch_device(settings) == "cuda"
    return settings.transcribe_pool == "processes"


def workers_in_process(settings: Settings) -> int:
    """How many transcriptions one process runs at once: all the stage's workers, or one where each is a process."""
    return 1 if runs_in_processes(settings) else settings.transcribe_workers


def torch_device(settings: Settings) -> str:
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def threads_per_worker(settings: Settings) -> int:
    """The CPU threads each concurrent transcription gets: the cores split between them, not oversubscribed."""
    return max(1, (os.cpu_count() or 1) // settings.transcribe_workers)
