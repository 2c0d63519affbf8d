"""faster-whisper (CTranslate2), the default engine. One model per process, safely shared by the stage's threads."""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import faster_whisper.transcribe as fw
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.vad import VadOptions, get_speech_timestamps

from tasks.audio import SAMPLE_RATE
from tasks.models import Segment, Settings, Word
from tasks.transcribe.base import Detected, SampleBackend, threads_per_worker
from tasks.transcribe.bundled import bundled_model
from tasks.transcribe.cuda_libraries import load_cuda_libraries

STRETCH_S = 30  # what Whisper hears at once
VAD = {"max_speech_duration_s": STRETCH_S, "min_silence_duration_ms": 160}  # BatchedInferencePipeline's own
MIN_UNHEARD_S = 1.0  # speech left without words that is heard again: a sentence, not a breath the VAD kept
LOOPING = 2.4  # a text that gzip shrinks more than this repeats itself: Whisper's own compression_ratio_threshold
try:
    LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    LIBC = None
CLOSING = "\"')]}»”’"  # after a sentence's full stop: `jar."` ends one


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
    """The words, in time order, as one segment per sentence: a subtitle cue, not a 30-second stretch."""
    sentence: list[fw.Word] = []
    for word in words:
        sentence.append(word)
        if word.word.rstrip().rstrip(CLOSING).endswith((".", "?", "!")):
            yield record(sentence[0].start, word.end, "".join(w.word for w in sentence), sentence, keep_words)
            sentence = []
    if sentence:
        yield record(sentence[0].start, sentence[-1].end, "".join(w.word for w in sentence), sentence, keep_words)


def heard_words(
    model: WhisperModel, samples: np.ndarray, settings: Settings, language: str | None
) -> tuple[list[fw.Word], fw.TranscriptionInfo | None]:
    """Every word of the window, by the batched decoder on stretches of speech its Silero VAD finds, and by the
    classic decoder where the batched one failed.

    Without timestamp tokens: with them, the batched decoder lost whole sentences at the start of its stretches
    (18 of 126 in a 10-minute episode). Without them it may end a stretch early (it once heard one sentence of six),
    or loop (`Matayler measures` nine times over 24 s of other speech); it has neither the classic decoder's seek
    nor its fallback to higher temperatures. So a looping stretch's words are dropped, and the speech no word covers
    is heard again by the classic decoder, which has both."""
    speech = [(r["start"], r["end"]) for r in get_speech_timestamps(samples, VadOptions(**VAD))]
    give_back_freed_memory()
    stretches = contiguous(speech)
    if not stretches:
        return [], None
    # A pipeline per call: it keeps state between its batches.
    produced, info = BatchedInferencePipeline(model).transcribe(
        samples,
        language=language,
        beam_size=settings.transcribe.beam_size,
        batch_size=settings.transcribe.batch_size,
        without_timestamps=True,
        word_timestamps=True,
        clip_timestamps=[{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in stretches],
        vad_filter=False,
    )
    words: list[fw.Word] = []
    for segment in produced:  # a segment arrives after each batch: what the batch freed goes back first
        give_back_freed_memory()
        if segment.compression_ratio <= LOOPING:
            words += segment.words or ()
    for start, end in unheard(stretches, speech, words):
        again, _ = model.transcribe(
            samples[start:end],
            language=language or info.language,
            beam_size=settings.transcribe.beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
        )
        offset_s = start / SAMPLE_RATE
        words += [
            replace(w, start=w.start + offset_s, end=w.end + offset_s) for segment in again for w in segment.words or ()
        ]
    return sorted(words, key=lambda w: w.start), info


def give_back_freed_memory() -> None:
    """glibc keeps freed heap memory for reuse; the VAD's and each batch's large blocks would then stay in the
    process and add to the next peak. malloc_trim hands them back."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def contiguous(speech: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Speech regions (in samples) joined, with the pauses between them, into stretches of at most STRETCH_S."""
    stretches: list[tuple[int, int]] = []
    for start, end in speech:
        if stretches and end - stretches[-1][0] <= STRETCH_S * SAMPLE_RATE:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((start, end))
    return stretches


def unheard(
    stretches: list[tuple[int, int]], speech: list[tuple[int, int]], heard: list[fw.Word]
) -> list[tuple[int, int]]:
    """The parts of the stretches, between the words heard, that hold at least MIN_UNHEARD_S of speech."""
    times = sorted((round(w.start * SAMPLE_RATE), round(w.end * SAMPLE_RATE)) for w in heard)
    gaps: list[tuple[int, int]] = []
    for first, last in stretches:
        inside = [(a, b) for a, b in times if a < last and b > first]
        edges = [first, *(t for word in inside for t in word), last]
        for gap_start, gap_end in zip(edges[::2], edges[1::2]):
            regions = [(max(a, gap_start), min(b, gap_end)) for a, b in speech if a < gap_end and b > gap_start]
            if sum(b - a for a, b in regions) >= MIN_UNHEARD_S * SAMPLE_RATE:
                gaps.append((regions[0][0], regions[-1][1]))
    return gaps
