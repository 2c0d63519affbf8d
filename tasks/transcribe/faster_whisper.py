"""faster-whisper (CTranslate2), the default engine. One model per process, safely shared by the stage's threads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import faster_whisper.transcribe as fw
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

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

    def segments(
        self, samples: np.ndarray, settings: Settings, language: str | None, prompt: str | None
    ) -> tuple[Detected, Iterator[Segment]]:
        if settings.batch_size > 1:
            # Without timestamp tokens: with them, the batched decoder dropped whole sentences at the start of its
            # stretches (18 of 126 in a 10-minute episode, none without). Word timings, which it aligns anyway,
            # then cut each stretch into sentences. A pipeline per call: it keeps state between its batches.
            produced, info = BatchedInferencePipeline(self.model).transcribe(
                samples,
                language=language,
                beam_size=settings.beam_size,
                batch_size=settings.batch_size,
                without_timestamps=True,
                word_timestamps=True,
                vad_filter=True,
            )
            heard = sentences(produced, settings.word_timestamps)
        else:
            produced, info = self.model.transcribe(
                samples,
                language=language,
                beam_size=settings.beam_size,
                word_timestamps=settings.word_timestamps,
                initial_prompt=prompt,
            )
            heard = (record(s.start, s.end, s.text, s.words or (), settings.word_timestamps) for s in produced)
        detected = Detected(
            info.language,
            round(info.language_probability, 4)
            if settings.language is None and self.model.model.is_multilingual
            else None,
        )
        return detected, heard


def record(start: float, end: float, text: str, words: Iterable[fw.Word], keep_words: bool) -> Segment:
    return Segment(
        start=max(0.0, start),
        end=max(0.0, end),
        text=text.strip(),
        words=tuple(
            Word(start=w.start, end=w.end, text=w.word.strip(), probability=round(w.probability, 4)) for w in words
        )
        if keep_words
        else (),
    )


def sentences(stretches: Iterable[fw.Segment], keep_words: bool) -> Iterator[Segment]:
    """Each stretch's words as one segment per sentence (a subtitle cue, not 30 seconds of text)."""
    for stretch in stretches:
        sentence: list[fw.Word] = []
        for word in stretch.words or ():
            sentence.append(word)
            if word.word.rstrip().endswith((".", "?", "!")):
                yield record(sentence[0].start, word.end, "".join(w.word for w in sentence), sentence, keep_words)
                sentence = []
        if sentence:
            yield record(sentence[0].start, sentence[-1].end, "".join(w.word for w in sentence), sentence, keep_words)
