"""How faster-whisper's batched decoder hears a window: in rounds, each one batched pass over stretches of speech,
the later ones over only what the round before failed to hear.

Without timestamp tokens: with them, the batched decoder lost whole sentences at the start of its stretches (18 of
126 in a 10-minute episode). Without them it may end a stretch early (it once heard one sentence of six), or loop
(`Matayler measures` nine times over 24 s of other speech); it has neither the classic decoder's seek nor its
fallback to higher temperatures. So each round hears its stretches; a stretch whose text fails (a loop, an unsure
text, a skipped sentence, a run with no full stop: `failing`) is dropped and its pieces of speech heard again, and so
is the speech no word of a stretch covers. The later rounds lay those pieces end to end in stretches of up to 30 s,
then 10 s: a round costs an encoder pass per stretch, whatever its length, and what fails among its neighbours
rarely fails among fewer. The last keeps all but loops.
"""

from __future__ import annotations

import bisect
import ctypes
import math
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import NamedTuple

import faster_whisper.transcribe as fw
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.vad import VadOptions, get_speech_timestamps

from tasks.audio import SAMPLE_RATE
from tasks.models import Settings

Span = tuple[int, int]  # [start, end) in samples

STRETCH_S = 30  # what Whisper hears at once
VAD = {"max_speech_duration_s": STRETCH_S, "min_silence_duration_ms": 160}  # BatchedInferencePipeline's own
MIN_UNHEARD_S = 1.0  # speech left without words that is heard again: a sentence, not a breath the VAD kept
# A text loops where a phrase of up to LOOP_PHRASE words comes LOOP_TIMES times in a row, LOOP_WORDS words or more
# in all. Whisper's own test, a gzip compression ratio over 2.4, also fails 30 s in which a speaker says a sentence
# twice, which podcasts do (and the loops of two recordings in bench/ do every time).
LOOP_PHRASE, LOOP_TIMES, LOOP_WORDS = 8, 3, 8
# A word the alignment spreads over more than this covers speech the decoder skipped: the stretch is heard again.
LONGEST_WORD_S = 2.0
RUN_ON_WORDS = 45  # more words than this with no sentence's end: a sentence of the bench's banks has 5 to 22
SENTENCE_ENDS = (".", "?", "!")
CLOSING = "\"')]}»”’"  # after a sentence's full stop: `jar."` ends one
PROMPT_WORDS = 40  # of the text heard so far, the prompt for hearing again
UNSURE = -1.0  # below this average log-probability per token a text is a guess: Whisper's own log_prob_threshold
# The stretches of the rounds after the first: at most 30 s, then 10 s.
AGAIN_STRETCH_S = (30, 10)
PACKED_PAUSE_S = 1.0  # between pieces heard again end to end: Whisper hears where one ends
try:
    LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    LIBC = None


def heard_words(
    model: WhisperModel, samples: np.ndarray, settings: Settings, language: str | None
) -> tuple[list[fw.Word], fw.TranscriptionInfo | None]:
    """Every word of the window (16 kHz samples), in time order, with the engine's language information (None
    where the window holds no speech)."""
    speech = [(r["start"], r["end"]) for r in get_speech_timestamps(samples, VadOptions(**VAD))]
    give_back_freed_memory()
    if not speech:
        return [], None
    first_beam = 1 if settings.transcribe.greedy_first else settings.transcribe.beam_size
    # Stretches with their pauses: laid end to end without them, as BatchedInferencePipeline lays the VAD's pieces,
    # the real-speech loop in bench/ lost 23 sentences in 10 minutes instead of none.
    words, again, info = heard_round(
        model, samples, contiguous(speech, STRETCH_S), speech, settings, language, first_beam, UNSURE, last=False
    )
    for number, stretch_s in enumerate(AGAIN_STRETCH_S, 1):
        if not again:
            break
        packed = Packed.of(samples, again)
        # Heard with care: a text still unsure now is the best there is; only a loop is dropped.
        heard, again_packed, _ = heard_round(
            model,
            packed.samples,
            contiguous(packed.pieces, stretch_s),
            packed.pieces,
            settings,
            info.language,
            settings.transcribe.beam_size,
            -math.inf,
            last=number == len(AGAIN_STRETCH_S),
            prompt=written(words),
        )
        words = merged(words, [packed.in_window(word) for word in heard])
        again = [span for packed_span in again_packed for span in packed.origins(packed_span)]
    return words, info


class Packed(NamedTuple):
    """Pieces of a window laid end to end, a pause after each: scattered pieces in one stretch cost one encoder
    pass, not one each."""

    samples: np.ndarray
    pieces: list[Span]  # in `samples`
    offsets: list[int]  # what places a piece's samples in the window

    @classmethod
    def of(cls, samples: np.ndarray, spans: list[Span]) -> Packed:
        pause = np.zeros(round(PACKED_PAUSE_S * SAMPLE_RATE), dtype=np.float32)
        parts: list[np.ndarray] = []
        pieces: list[Span] = []
        at = 0
        for start, end in spans:
            pieces.append((at, at + end - start))
            parts += [samples[start:end], pause]
            at += end - start + pause.size
        return cls(np.concatenate(parts), pieces, [start - piece[0] for (start, _), piece in zip(spans, pieces)])

    def in_window(self, word: fw.Word) -> fw.Word:
        """The word at its time in the window: in the piece its middle lies in, or lies nearest."""
        middle = (word.start + word.end) / 2 * SAMPLE_RATE
        ends = [b + PACKED_PAUSE_S * SAMPLE_RATE / 2 for _, b in self.pieces]
        offset_s = self.offsets[min(bisect.bisect_left(ends, middle), len(self.pieces) - 1)] / SAMPLE_RATE
        return replace(word, start=word.start + offset_s, end=word.end + offset_s)

    def origins(self, span: Span) -> list[Span]:
        """Where the speech of a span of `samples` lies in the window, piece by piece."""
        return [
            (max(a, span[0]) + offset, min(b, span[1]) + offset)
            for (a, b), offset in zip(self.pieces, self.offsets)
            if a < span[1] and b > span[0]
        ]


def loops(words: Iterable[fw.Word]) -> bool:
    """Whether the words loop: the same phrase again and again."""
    said = [spelled(w) for w in words]
    for length in range(1, LOOP_PHRASE + 1):
        for first in range(length):  # where the phrase may start
            times = 1
            for at in range(first + length, len(said) - length + 1, length):
                times = times + 1 if said[at : at + length] == said[at - length : at] else 1
                if times >= LOOP_TIMES and times * length >= LOOP_WORDS:
                    return True
    return False


def merged(words: list[fw.Word], again: list[fw.Word]) -> list[fw.Word]:
    """The words heard before and those heard again, in time order, less those heard again that a word heard before
    already is: the same word over half of its time. A gap is heard again with a little of the speech around it."""
    words = sorted(words, key=lambda w: w.start)
    starts = [w.start for w in words]
    kept = []
    for word in again:
        near = words[max(0, bisect.bisect_left(starts, word.start) - 1) : bisect.bisect_right(starts, word.end)]
        same = [w for w in near if spelled(w) == spelled(word)]
        covered = sum(max(0.0, min(w.end, word.end) - max(w.start, word.start)) for w in same)
        if covered <= (word.end - word.start) / 2:
            kept.append(word)
    return sorted(words + kept, key=lambda w: w.start)


def spelled(word: fw.Word) -> str:
    return re.sub(r"\W", "", word.word.lower())


def written(words: list[fw.Word]) -> str | None:
    """The last sentences heard, as a prompt for hearing again: Whisper writes as the text before it is written, and
    short pieces heard on their own otherwise come back without punctuation at times."""
    text = "".join(w.word for w in words[-PROMPT_WORDS:])
    ends = [m.end() for m in re.finditer(r"[.?!][\"')\]}»”’]*(\s|$)", text)]
    return (text[: ends[-1]].strip() or None) if ends else None


def heard_round(
    model: WhisperModel,
    samples: np.ndarray,
    stretches: list[Span],
    speech: list[Span],
    settings: Settings,
    language: str | None,
    beam_size: int,
    unsure_below: float,
    last: bool,
    prompt: str | None = None,
) -> tuple[list[fw.Word], list[Span], fw.TranscriptionInfo]:
    """One batched pass over the stretches: the words of those that pass (see `failing`), and the speech to hear
    again: the pieces of those that fail, and what no word of those that pass covers. In the `last` round only a
    loop fails: a text that fails the other tests is the best there is."""
    # A pipeline per call: it keeps state between its batches.
    produced, info = BatchedInferencePipeline(model).transcribe(
        samples,
        language=language,
        beam_size=beam_size,
        batch_size=settings.transcribe.batch_size,
        without_timestamps=True,
        word_timestamps=True,
        clip_timestamps=[{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in stretches],
        vad_filter=False,
        initial_prompt=prompt,
    )
    words: list[fw.Word] = []
    failed: list[Span] = []
    for segment in produced:  # a segment (one per stretch) arrives after each batch: what it freed goes back first
        give_back_freed_memory()
        said = segment.words or []
        if loops(said) or (not last and failing(said, segment.avg_logprob, unsure_below)):
            failed.append(min(stretches, key=lambda s: abs(s[0] - segment.start * SAMPLE_RATE)))
        else:
            words += said
    again = [piece for stretch in failed for piece in speech if piece[0] >= stretch[0] and piece[1] <= stretch[1]]
    again += unheard([s for s in stretches if s not in failed], speech, words)
    return words, sorted(again), info


def failing(words: list[fw.Word], average_log_probability: float, unsure_below: float) -> bool:
    """Whether a stretch's text, though no loop, is worth hearing again: unsure (an average log-probability per
    token below `unsure_below`), a word spread over more time than a word takes (the decoder skipped what was said
    there), or a run of RUN_ON_WORDS words with no sentence's end (the decoder stopped writing punctuation, and a
    transcript's sentences and subtitle cues are cut at it)."""
    run = 0
    for word in words:
        run = 0 if word.word.rstrip().rstrip(CLOSING).endswith(SENTENCE_ENDS) else run + 1
        if run > RUN_ON_WORDS or word.end - word.start > LONGEST_WORD_S:
            return True
    return average_log_probability < unsure_below


def give_back_freed_memory() -> None:
    """glibc keeps freed heap memory for reuse; the VAD's and each batch's large blocks would then stay in the
    process and add to the next peak. malloc_trim hands them back."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def contiguous(speech: list[Span], stretch_s: float) -> list[Span]:
    """Speech regions joined, with the pauses between them, into stretches of at most `stretch_s` (or the regions
    as they are, where they are longer)."""
    stretches: list[Span] = []
    for start, end in speech:
        if stretches and end - stretches[-1][0] <= stretch_s * SAMPLE_RATE:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((start, end))
    return stretches


def unheard(stretches: list[Span], speech: list[Span], heard: list[fw.Word]) -> list[Span]:
    """The parts of the stretches, between the words heard, that hold at least MIN_UNHEARD_S of speech."""
    times = sorted((round(w.start * SAMPLE_RATE), round(w.end * SAMPLE_RATE)) for w in heard)
    gaps: list[Span] = []
    for first, last in stretches:
        inside = [(a, b) for a, b in times if a < last and b > first]
        edges = [first, *(t for word in inside for t in word), last]
        for gap_start, gap_end in zip(edges[::2], edges[1::2]):
            regions = [(max(a, gap_start), min(b, gap_end)) for a, b in speech if a < gap_end and b > gap_start]
            if sum(b - a for a, b in regions) >= MIN_UNHEARD_S * SAMPLE_RATE:
                gaps.append((regions[0][0], regions[-1][1]))
    return gaps
