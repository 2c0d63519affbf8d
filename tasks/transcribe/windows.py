"""Where long audio is cut: at the quietest moment near the end of a stretch. The local transcribers hear an
episode a window at a time (memory stays the same however long it runs), and the openai backend sends it a chunk at
a time; each cut falls in a pause, so no word is cut in two."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from tasks import audio as audio_codec
from tasks.models import Segment, Word

SEARCH_FRACTION = 0.2  # a cut is looked for in the last fifth of a window: windows run 80-100% of their length
FRAME_S = 0.02  # the loudness envelope's resolution
QUIET_WINDOW_S = 0.5  # a cut goes where half a second is quietest: a real pause, not a gap between syllables


class Window(NamedTuple):
    start_s: float  # where its first sample lies in the episode
    samples: np.ndarray  # 16 kHz mono float32


def frame_power(samples: np.ndarray, frame_s: float = FRAME_S) -> np.ndarray:
    """Mean power of each `frame_s` of 16 kHz samples (the last partial frame dropped), without a squared copy of
    the whole episode."""
    frame = max(1, round(frame_s * audio_codec.SAMPLE_RATE))
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    return np.einsum("ij,ij->i", frames, frames).astype(np.float64) / frame


def quietest_cut(power: np.ndarray, frame_s: float, lo_s: float, hi_s: float) -> float:
    """The moment between `lo_s` and `hi_s` in the middle of the last of its quietest stretches."""
    window = max(1, round(QUIET_WINDOW_S / frame_s))
    # The windows centred between lo_s and hi_s, by their first frame.
    first_start = max(0, round(lo_s / frame_s - window / 2))
    last_start = min(power.size - window, round(hi_s / frame_s - window / 2))
    if last_start < first_start:
        return hi_s
    sums = np.cumsum(np.concatenate(([0.0], power[first_start : last_start + window])))
    level = (sums[window:] - sums[:-window]) / window  # level[k]: the window starting at frame first_start + k
    quiet = level <= level.min() * 1.5 + 1e-10  # 1e-10: -100 dBFS, digital silence
    last = int(np.flatnonzero(quiet)[-1])
    first = last
    while first > 0 and quiet[first - 1]:
        first -= 1
    middle = first_start + (first + last) / 2 + window / 2
    return float(np.clip(middle * frame_s, lo_s, hi_s))


def windows(pieces: Iterable[np.ndarray], window_s: float) -> Iterator[Window]:
    """The samples, arriving in pieces of any size, as windows of at most `window_s`, each (but the last) cut at
    the quietest moment of its last fifth; what follows a cut starts the next window. The last may run to
    `window_s` and a fifth more: the end of the stream read that far ahead, no short last window costs a stretch
    of its own in a decoder. One window's buffer, and that fifth, is all that is held."""
    size = round(window_s * audio_codec.SAMPLE_RATE)
    buffer = np.empty(size + round(size * SEARCH_FRACTION), dtype=np.float32)
    filled = start = 0
    for piece in pieces:
        while piece.size:
            taken = min(piece.size, buffer.size - filled)
            buffer[filled : filled + taken] = piece[:taken]
            filled += taken
            piece = piece[taken:]
            if filled == buffer.size:
                cut_s = quietest_cut(frame_power(buffer[:size]), FRAME_S, window_s * (1 - SEARCH_FRACTION), window_s)
                cut = round(cut_s * audio_codec.SAMPLE_RATE)
                yield Window(start / audio_codec.SAMPLE_RATE, buffer[:cut].copy())
                buffer[: filled - cut] = buffer[cut:filled]
                filled -= cut
                start += cut
    if filled:
        yield Window(start / audio_codec.SAMPLE_RATE, buffer[:filled].copy())


def streamed_power(pieces: Iterable[np.ndarray], frame_s: float = FRAME_S) -> tuple[np.ndarray, int]:
    """frame_power of samples arriving in pieces of any size, and how many samples there were."""
    frame = max(1, round(frame_s * audio_codec.SAMPLE_RATE))
    powers: list[np.ndarray] = []
    carried = np.empty(0, dtype=np.float32)  # the part of a frame the last piece ended in
    total = 0
    for piece in pieces:
        total += piece.size
        joined = np.concatenate((carried, piece))
        whole = joined.size // frame * frame
        powers.append(frame_power(joined[:whole], frame_s))
        carried = joined[whole:]
    return (np.concatenate(powers) if powers else np.empty(0)), total


def stretches(pieces: Iterable[np.ndarray], spans: Iterable[tuple[float, float]]) -> Iterator[np.ndarray]:
    """The samples of each (start_s, end_s) span, in order (spans may overlap, each starting no earlier than the
    one before), from samples arriving in pieces; what no later span needs is let go, so memory holds about one
    span."""
    held: list[np.ndarray] = []
    held_from = 0  # the episode's sample index of held[0][0]
    held_to = 0
    arriving = iter(pieces)
    for start_s, end_s in spans:
        start = round(start_s * audio_codec.SAMPLE_RATE)
        end = round(end_s * audio_codec.SAMPLE_RATE)
        while held_to < end and (piece := next(arriving, None)) is not None:
            held.append(piece)
            held_to += piece.size
        joined = np.concatenate(held) if held else np.empty(0, dtype=np.float32)
        yield joined[start - held_from : end - held_from].copy()
        held, held_from = [joined[start - held_from :]], start


def shifted(segment: Segment, offset_s: float) -> Segment:
    """The segment of a window placed in the episode's time."""
    return segment.model_copy(
        update={
            "start": segment.start + offset_s,
            "end": segment.end + offset_s,
            "words": tuple(
                Word(start=w.start + offset_s, end=w.end + offset_s, text=w.text, probability=w.probability)
                for w in segment.words
            ),
        }
    )
