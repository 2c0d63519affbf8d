"""transcriber=openai, stitching: the chunks' segments (in the episode's time) joined into one transcript, the
words the overlap made both neighbours hear kept once: the two are joined at the longest run of words both heard at
the same time around the cut."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import NamedTuple

from tasks.models import Segment
from tasks.transcribe.openai_chunks import Chunk

# How far Whisper's times may be off: segments of two neighbours closer than this at a cut may hold the same words,
# and two copies of a word heard this far apart were said twice.
TOLERANCE_S = 0.5
MATCHED_WORDS = 24  # at most, on each side of a cut: more than 2 x OVERLAP_S of fast speech holds


class ChunkTranscript(NamedTuple):
    """What the API heard in one chunk, in the episode's time; `timed` is False where the model gave only text,
    placed here as one segment over the chunk's own stretch."""

    chunk: Chunk
    segments: tuple[Segment, ...]
    language: str | None
    timed: bool


def _normal(token: str) -> str:
    return re.sub(r"[^\w']", "", token.lower())


def _part(segment: Segment, keep: slice) -> Segment | None:
    """The segment with only the words in `keep`, its times narrowed to theirs where it has word times."""
    if not segment.words:
        tokens = segment.text.split()[keep]
        return segment.model_copy(update={"text": " ".join(tokens)}) if tokens else None
    words = segment.words[keep]
    if not words:
        return None
    start = max(segment.start, words[0].start) if keep.start else segment.start
    end = min(segment.end, words[-1].end) if keep.stop is not None else segment.end
    return segment.model_copy(
        update={"words": words, "text": " ".join(w.text for w in words), "start": min(start, end), "end": end}
    )


class _Token(NamedTuple):
    segment: int
    number: int  # the word's place in its segment
    word: str  # lower case, no punctuation
    start: float | None  # when it was said, as near as the reply tells: None for a text-only reply
    end: float | None


def _near_the_cut(segments: Sequence[Segment], timed: bool, lo_s: float, hi_s: float, last: bool) -> list[_Token]:
    """The words of `segments` that can have been said between `lo_s` and `hi_s`, by their word times, or spread
    evenly over their segment; from a text-only reply, as many of its last (or first) words as its pace of speech
    fits in that time."""
    tokens: list[_Token] = []
    for i, segment in enumerate(segments):
        if segment.words:
            tokens += [_Token(i, k, _normal(w.text), w.start, w.end) for k, w in enumerate(segment.words)]
            continue
        texts = segment.text.split()
        if timed:
            step = (segment.end - segment.start) / max(1, len(texts))
            tokens += [
                _Token(i, k, _normal(text), segment.start + k * step, segment.start + (k + 1) * step)
                for k, text in enumerate(texts)
            ]
            continue
        fits = math.ceil(len(texts) / max(1.0, segment.end - segment.start) * (hi_s - lo_s)) + 2
        picked = range(max(0, len(texts) - fits), len(texts)) if last else range(min(fits, len(texts)))
        tokens += [_Token(i, k, _normal(texts[k]), None, None) for k in picked]
    near = [t for t in tokens if t.start is None or (t.end >= lo_s and t.start <= hi_s)]  # type: ignore[operator]
    return near[-MATCHED_WORDS:] if last else near[:MATCHED_WORDS]


def _heard_apart(ours: list[_Token], theirs: list[_Token]) -> bool:
    """Whether two runs of words were heard more than TOLERANCE_S apart (never, where a reply gave no times)."""
    if None in (ours[0].start, ours[-1].end, theirs[0].start, theirs[-1].end):
        return False
    return ours[-1].end + TOLERANCE_S < theirs[0].start or theirs[-1].end + TOLERANCE_S < ours[0].start  # type: ignore


def _splice(before: list[Segment], after: list[Segment], previous: ChunkTranscript, current: ChunkTranscript) -> None:
    """Keep once what both sides of a cut heard: the longest run of words that the previous chunk's segments as
    stitched (`before`; never an earlier chunk's) and the next chunk's segments (`after`) both hold in the overlap,
    heard at the same time where the replies give times, is where the two are joined; what follows the run in
    `before` (the cut clipped it) and what precedes it in `after` are dropped."""
    lo_s, hi_s = current.chunk.start_s - TOLERANCE_S, previous.chunk.end_s + TOLERANCE_S
    tail = _near_the_cut(before, previous.timed, lo_s, hi_s, last=True)
    head = _near_the_cut(after, current.timed, lo_s, hi_s, last=False)
    match = SequenceMatcher(None, [t.word for t in tail], [t.word for t in head], autojunk=False).find_longest_match()
    # One word alone may be chance ("the"), unless it both ends one side and begins the other.
    if match.size < 2 and not (match.size == 1 and match.a == len(tail) - 1 and match.b == 0):
        return
    ours, theirs = tail[match.a : match.a + match.size], head[match.b : match.b + match.size]
    if _heard_apart(ours, theirs):
        return  # the same words, said twice
    i, k = ours[-1].segment, ours[-1].number
    del before[i + 1 :]
    if (kept := _part(before[i], slice(None, k + 1))) is not None:
        before[i] = kept
    i, k = theirs[-1].segment, theirs[-1].number
    del after[:i]
    if (rest := _part(after[0], slice(k + 1, None))) is not None:
        after[0] = rest
    else:
        del after[0]


def _meet(last: Segment, segment: Segment) -> tuple[Segment, Segment]:
    """Two neighbours that overlap in time, made to meet: one ends where the next starts, which never starts
    before `last` does, and neither ends before it starts."""
    if segment.end >= last.end:
        return last, segment.model_copy(update={"start": last.end})
    cut = max(last.start, segment.start)
    return last.model_copy(update={"end": cut}), segment.model_copy(update={"start": cut, "end": max(cut, segment.end)})


def stitch(chunks: Sequence[ChunkTranscript]) -> tuple[Segment, ...]:
    """One transcript from the chunks' in order: each chunk's segments that reach into its own stretch, and where
    segments of two neighbours meet across the cut, what both heard in the overlap once. Starts never go back
    and no segment ends before it starts."""
    stitched: list[Segment] = []
    previous: ChunkTranscript | None = None
    since = 0  # where the previous chunk's segments begin in `stitched`: a cut is spliced with those alone
    for part in chunks:
        own = part.chunk
        segments = [s for s in part.segments if not part.timed or (s.end > own.own_start_s and s.start < own.own_end_s)]
        if (
            previous is not None
            and len(stitched) > since
            and segments
            and (not part.timed or not previous.timed or segments[0].start < stitched[-1].end + TOLERANCE_S)
        ):
            before = stitched[since:]
            _splice(before, segments, previous, part)
            stitched[since:] = before
        since = len(stitched)
        for segment in segments:
            if stitched and segment.start < stitched[-1].end:  # overlapping neighbours: one ends where one starts
                stitched[-1], segment = _meet(stitched[-1], segment)
            stitched.append(segment)
        previous = part
    return tuple(stitched)
