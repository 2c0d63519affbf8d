"""faster-whisper (CTranslate2), the default engine. One model per process, safely shared by the stage's threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from tasks.models import Segment, Settings, Word
from tasks.transcribe.base import Detected, SampleBackend, threads_per_worker, workers_in_process
from tasks.transcribe.bundled import bundled_model


class FasterWhisperBackend(SampleBackend):
    def __init__(self, settings: Settings):
        super().__init__(settings)
        device = settings.device
        compute_type = settings.compute_type or {"cpu": "int8", "cuda": "float16"}.get(device, "default")
        bundled = bundled_model(settings.model)
        # num_workers lets that many transcriptions run truly in parallel on the one model.
        self.model = WhisperModel(
            settings.model,
            device=device,
            compute_type=compute_type,
            num_workers=workers_in_process(settings),
            cpu_threads=threads_per_worker(settings),
            local_files_only=bundled is not None or Path(settings.model).is_dir(),
            files=bundled.files() if bundled else None,
        )

    def segments(self, samples: np.ndarray, settings: Settings) -> tuple[Detected, Iterator[Segment]]:
        segments, info = self.model.transcribe(
            samples, language=settings.language, beam_size=settings.beam_size, word_timestamps=settings.word_timestamps
        )
        detected = Detected(
            info.language,
            round(info.language_probability, 4)
            if settings.language is None and self.model.model.is_multilingual
            else None,
        )
        return detected, (
            Segment(
                start=max(0.0, s.start),
                end=max(0.0, s.end),
                text=s.text.strip(),
                words=tuple(
                    Word(start=w.start, end=w.end, text=w.word.strip(), probability=round(w.probability, 4))
                    for w in s.words or ()
                ),
            )
            for s in segments
        )
