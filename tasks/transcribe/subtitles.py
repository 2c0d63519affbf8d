"""Write segments as SubRip (`.srt`) and WebVTT (`.vtt`) subtitles that players and parsers accept.

Our own writer, in a few lines with no runtime dependency: it also orders the cues (no start goes back, no cue ends
before it starts) and keeps `-->` out of their text. The tests read what it writes with srt and webvtt-py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tasks.models import Segment

# `-->` inside cue text would read as a timing line; the arrow keeps its meaning.
CUE_ARROW = "-->"
ARROW_STAND_IN = "→"


def to_srt(segments: Sequence[Segment]) -> str:
    """SubRip cues numbered from 1, `HH:MM:SS,mmm` times, one blank line after each cue."""
    return "".join(
        f"{number}\n{clock(start, ',')} --> {clock(end, ',')}\n{text}\n\n"
        for number, (start, end, text) in enumerate(cues(segments), start=1)
    )


def to_vtt(segments: Sequence[Segment]) -> str:
    """A WebVTT file with `HH:MM:SS.mmm` times and `&`, `<`, `>` escaped in the text."""
    escape = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
    return "WEBVTT\n\n" + "".join(
        f"{clock(start, '.')} --> {clock(end, '.')}\n{text.translate(escape)}\n\n"
        for start, end, text in cues(segments)
    )


def cues(segments: Sequence[Segment]) -> Iterator[tuple[int, int, str]]:
    """(start ms, end ms, one-line text) per segment with text; starts never go back and no cue ends before it starts.

    Times are rounded to whole milliseconds before they are clamped, so rounding cannot undo the ordering.
    """
    previous_start_ms = 0
    for segment in segments:
        text = " ".join(segment.text.split()).replace(CUE_ARROW, ARROW_STAND_IN)
        if not text:
            continue
        start_ms = max(round(segment.start * 1000), previous_start_ms)
        end_ms = max(round(segment.end * 1000), start_ms)
        previous_start_ms = start_ms
        yield start_ms, end_ms, text


def clock(total_ms: int, decimal_mark: str) -> str:
    """`HH:MM:SS<mark>mmm`; hours grow past 99 rather than wrap."""
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    seconds, millis = divmod(rest_ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_mark}{millis:03d}"
