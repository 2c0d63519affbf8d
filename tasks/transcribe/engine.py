"""The Whisper engines behind one interface, and how many of each a process holds."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import NamedTuple, Protocol

import numpy as np

from tasks.models import Segment, Settings


class Detected(NamedTuple):
    language: str | None
    probability: float | None  # None when the settings named the language


class Backend(Protocol):
    name: str
    model_name: str

    def transcribe(self, samples: np.ndarray, settings: Settings) -> tuple[Detected, Iterator[Segment]]:
        """The language and the segments, produced lazily where the engine can."""
        ...


def runs_in_processes(settings: Settings) -> bool:
    """Whether the transcribe stage's workers are processes: `auto` picks them for openai-whisper on CUDA, where
    threads sharing one interpreter made throughput worse as they were added (measured in issue 3)."""
    if settings.transcribe_pool == "auto":
        return settings.transcriber == "whisper" and torch_device(settings) == "cuda"
    return settings.transcribe_pool == "processes"


def torch_device(settings: Settings) -> str:
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def threads_per_worker(settings: Settings) -> int:
    """The CPU threads each concurrent transcription gets: the cores split between them, not oversubscribed."""
    return max(1, (os.cpu_count() or 1) // settings.transcribe_workers)


_backends: dict[str, Backend] = {}
_backends_lock = threading.Lock()


def load_backend(settings: Settings) -> Backend:
    """The process's one backend for these settings, loaded on first use."""
    key = settings.model_dump_json(
        include={"transcriber", "model", "device", "compute_type", "transcribe_workers", "transcribe_pool"}
    )
    with _backends_lock:
        if key not in _backends:
            workers_in_process = 1 if runs_in_processes(settings) else settings.transcribe_workers
            if settings.transcriber == "whisper":
                from tasks.transcribe.openai_whisper import WhisperBackend

                _backends[key] = WhisperBackend(settings)
            else:
                from tasks.transcribe.faster_whisper import FasterWhisperBackend

                _backends[key] = FasterWhisperBackend(settings, workers_in_process)
        return _backends[key]
