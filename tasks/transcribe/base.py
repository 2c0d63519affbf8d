"""What every transcriber is: the one entry point the transcribe stage calls, the base class of those that hear
decoded audio, and what they share (the process's loaded backends, threads, the device). Imports no backend."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import NamedTuple, Protocol

import numpy as np

from tasks import audio as audio_codec
from tasks import stopping
from tasks.errors import AudioDecodeError, AudioTooLongError, StoppedError, TranscriptionError
from tasks.events import Heard, Tell
from tasks.models import AudioFile, Episode, Segment, Settings, Transcript
from tasks.transcribe.languages import AUTO_MODEL
from tasks.transcribe.model_choice import choose_model, heard_with
from tasks.transcribe.windows import shifted, windows
from tasks.transcribers import BACKENDS

# Whisper reads up to 224 tokens of the text before a stretch; the last few segments fill that.
PROMPT_SEGMENTS = 8


class Backend(Protocol):
    """A transcriber, constructed once per process (see load_backend) with the Settings and how many
    transcriptions the process runs on it at once, then called per episode."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, tell: Tell) -> Transcript:
        """The episode's transcript; TranscriptionError, said so a user can act on it, when there can be none.
        `tell` hears how it goes (tasks/events.py): Heard as the audio is heard, Retried, Moved."""
        ...


class Detected(NamedTuple):
    language: str | None
    probability: float | None  # None when the settings named the language


class SampleBackend(ABC):
    """A backend that hears the audio itself: it gives the language and the segments of a window of the episode's
    samples (16 kHz mono float32, from the one decoder). Windowing, progress and the Transcript record are done here:
    the episode is decoded and heard `transcribe_window_s` at a time, each window cut at a pause (windows.py), so
    memory stays the same however long the episode runs."""

    def __init__(self, settings: Settings, at_once: int):
        self.model_name = settings.transcribe.model

    @abstractmethod
    def segments(
        self, samples: np.ndarray, settings: Settings, language: str | None, prompt: str | None
    ) -> tuple[Detected, Iterator[Segment]]:
        """The language and the segments of one window, in order, produced lazily where the engine can. `language`
        is the one detected in the first window (or the settings'); `prompt` the text said just before the window,
        for engines that carry context from one stretch to the next."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, tell: Tell) -> Transcript:
        declared_s = audio_codec.declared_duration_s_of(audio.path)
        heard: list[Segment] = []
        detected = Detected(settings.transcribe.language, None)
        heard_s = 0.0
        try:
            pieces = audio_codec.stream(
                audio.path, settings.transcribe.max_audio_duration_s, settings.transcribe.max_decode_s
            )
            for number, window in enumerate(windows(pieces, settings.transcribe.transcribe_window_s)):
                prompt = " ".join(segment.text for segment in heard[-PROMPT_SEGMENTS:]) or None
                window_detected, produced = self.segments(window.samples, settings, detected.language, prompt)
                if number == 0:
                    detected = window_detected
                for segment in produced:
                    stopping.check(audio.path.name)  # between the engine's batches: a stop waits for one at most
                    heard.append(shifted(segment, window.start_s))
                    tell(Heard(heard[-1].end, max(declared_s or 0.0, heard[-1].end)))
                heard_s = window.start_s + window.samples.size / audio_codec.SAMPLE_RATE
        except (AudioDecodeError, AudioTooLongError, StoppedError):
            raise
        except Exception as exc:
            raise TranscriptionError(f"{settings.transcribe.transcriber} failed on {audio.path.name}: {exc}") from exc
        return Transcript(
            episode_id=audio.episode_id,
            audio_sha256=audio.sha256,
            backend=settings.transcribe.transcriber,
            model=self.model_name,
            language=detected.language,
            language_probability=detected.probability,
            audio_duration_s=round(heard_s, 3),
            segments=tuple(heard),
        )


# What a backend is constructed with: other settings may change from one call to the next.
LOADED_BY = {"transcriber", "model", "device", "compute_type"}
_backends: dict[str, Backend] = {}
_backends_lock = threading.Lock()


def load_backend(settings: Settings, at_once: int) -> Backend:
    """The process's one backend for these settings, run by `at_once` transcriptions at a time, loaded on first
    use (one per model: episodes heard with the same model share it); TranscriptionError if it cannot be. Of model
    auto, the model it takes for an episode declaring no language (model_choice.py)."""
    if settings.transcribe.model == AUTO_MODEL:
        settings = heard_with(settings, choose_model(settings.transcribe))
    key = f"{settings.transcribe.model_dump_json(include=LOADED_BY)} {at_once}"
    with _backends_lock:
        if key not in _backends:
            try:
                _backends[key] = BACKENDS[settings.transcribe.transcriber].load()(settings, at_once)
            except Exception as exc:
                raise TranscriptionError(
                    f"the {settings.transcribe.transcriber} model {settings.transcribe.model!r} cannot be loaded: {exc}"
                ) from exc
        return _backends[key]


def hears_audio(settings: Settings) -> bool:
    """Whether the transcriber hears the audio itself (Whisper), not through the OpenAI API or a published file."""
    return issubclass(BACKENDS[settings.transcribe.transcriber].load(), SampleBackend)


def on_cluster(settings: Settings) -> bool:
    """Whether a Dask cluster's workers hear the audio (cluster.py): a transcribe_cluster is set and the
    transcriber hears audio itself."""
    return bool(settings.cluster.transcribe_cluster) and hears_audio(settings)


def runs_in_processes(settings: Settings) -> bool:
    """Whether the transcribe stage's workers are processes: `auto` picks them for a backend registered with
    processes_on_cuda (openai-whisper) when its model runs on CUDA. Never with a cluster: its threads only wait."""
    if on_cluster(settings):
        return False
    if settings.transcribe.transcribe_pool == "auto":
        return BACKENDS[settings.transcribe.transcriber].processes_on_cuda and torch_device(settings) == "cuda"
    return settings.transcribe.transcribe_pool == "processes"


def workers_in_process(settings: Settings) -> int:
    """How many transcriptions one process runs at once: all the stage's workers, or one where each is a process."""
    return 1 if runs_in_processes(settings) else settings.transcribe.transcribe_workers


def torch_device(settings: Settings) -> str:
    if settings.transcribe.device != "auto":
        return settings.transcribe.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def threads_per_worker(at_once: int) -> int:
    """The CPU threads each of `at_once` concurrent transcriptions gets: the cores split between them, not
    oversubscribed."""
    return max(1, (os.cpu_count() or 1) // at_once)
