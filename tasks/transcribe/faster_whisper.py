"""faster-whisper (CTranslate2), the default engine. One model per process, safely shared by the stage's threads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import faster_whisper.transcribe as fw
import numpy as np
from faster_whisper import WhisperModel

from tasks.models import Segment, Settings, Word
from tasks.transcribe.base import Detected, SampleBackend, threads_per_worker
from tasks.transcribe.batched import CLOSING, SENTENCE_ENDS, heard_words
from tasks.transcribe.bundled import bundled_model
from tasks.transcribe.cuda_libraries import load_cuda_libraries

SPEAKER_PAUSE_S = 1.0  # a pause this long ends a cue: within a sentence, speakers pause for less


class FasterWhisperBackend(SampleBackend):
    def __init__(self, settings: Settings, at_once: int):
        super().__init__(settings, at_once)
        device = settings.transcribe.device
        compute_type = settings.transcribe.compute_type or {"cpu": "int8", "cuda": "float16"}.get(device, "default")
        bundled = bundled_model(settings.transcribe.model)
        if device != "cpu":
            load_cuda_libraries()
        # num_workers lets that many transcriptions run truly in parallel on the one model.
        self.model = WhisperModel(
            settings.transcribe.model,
            device=device,
            compute_type=compute_type,
            num_workers=at_once,
            cpu_threads=threads_per_worker(at_once),
            local_files_only=bundled is not None or Path(settings.transcribe.model).is_dir(),
            files=bundled.files() if bundled else None,
        )

    def segments(
        self, samples: np.ndarray, settings: Settings, language: str | None, prompt: str | None
    ) -> tuple[Detected, Iterator[Segment]]:
        if settings.transcribe.batch_size > 1:
            words, info = heard_words(self.model, samples, settings, language)
            heard: Iterator[Segment] = sentences(words, settings.transcribe.word_timestamps)
        else:
            produced, info = self.model.transcribe(
                samples,
                language=language,
                beam_size=settings.transcribe.beam_size,
                word_timestamps=settings.transcribe.word_timestamps,
                initial_prompt=prompt,
            )
            heard = (
                record(s.start, s.end, s.text, s.words or (), settings.transcribe.word_timestamps) for s in produced
            )
        if info is None:  # no speech in the window
            return Detected(language, None), heard
        detected = Detected(
            info.language,
            round(info.language_probability, 4)
            if settings.transcribe.language is None and self.model.model.is_multilingual
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


def sentences(words: Iterable[fw.Word], keep_words: bool) -> Iterator[Segment]:
    """The words, in time order, as one segment per sentence, or per run of words between pauses of SPEAKER_PAUSE_S
    where the decoder wrote no full stop: a subtitle cue, not a 30-second stretch."""
    sentence: list[fw.Word] = []
    for word in words:
        if sentence and word.start - sentence[-1].end >= SPEAKER_PAUSE_S:
            yield record(sentence[0].start, sentence[-1].end, "".join(w.word for w in sentence), sentence, keep_words)
            sentence = []
        sentence.append(word)
        if word.word.rstrip().rstrip(CLOSING).endswith(SENTENCE_ENDS):
            yield record(sentence[0].start, word.end, "".join(w.word for w in sentence), sentence, keep_words)
            sentence = []
    if sentence:
        yield record(sentence[0].start, sentence[-1].end, "".join(w.word for w in sentence), sentence, keep_words)
