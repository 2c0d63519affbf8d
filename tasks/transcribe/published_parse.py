"""Parse a published transcript (WebVTT, SRT, JSON, HTML or plain text) into Segments: pure, no network, and run
in a child process under the parse limits (tasks/isolation.py), since html.parser is podflow's to call, not to fix.

Timed formats keep their own times. Untimed ones get times estimated from the audio's length, and say so, so the
caller can record that they are estimates. No document yields more than `max_segments` segments.
"""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser

from tasks.errors import TranscriptionError
from tasks.models import PUBLISHED_TRANSCRIPT_TYPES, Segment

VTT, SRT, JSON, HTML, PLAIN = "text/vtt", "application/x-subrip", "application/json", "text/html", "text/plain"
ALIASES = {"application/srt": SRT, "text/srt": SRT, "application/x-srt": SRT, "text/x-srt": SRT}
FORMAT_NAMES = {VTT: "WebVTT", SRT: "SRT", JSON: "JSON", HTML: "HTML", PLAIN: "plain-text"}

# Own parser: webvtt-py drops bad cues unsaid; srt reads `00:00.500` as 500 s and quotes the file in its errors.
# Hours are optional (WebVTT allows `mm:ss.ttt`); a comma or a point before the fraction, since files mix them up.
CLOCK = r"(?:(\d{1,6}):)?([0-5]\d):([0-5]\d)[.,](\d{1,3})"
TIMING_LINE = re.compile(rf"\s*{CLOCK}\s+-->\s+{CLOCK}(?:\s.*)?")
HTML_CLOCK = re.compile(r"(?:(\d{1,6}):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,9}))?")
BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")
VTT_TAG = re.compile(r"<[^<>]*>")  # WebVTT escapes a literal `<`, so every `<` opens a tag
SRT_TAG = re.compile(r"</?(?:b|i|u|s|font)\b[^<>]*>", re.IGNORECASE)  # SRT escapes nothing: strip only its styling
VTT_SKIPPED_BLOCKS = re.compile(r"(?:NOTE|STYLE|REGION)(?:\s|$)")


def canonical_type(media_type: str) -> str:
    """`Application/SRT; charset=utf-8` -> `application/x-subrip`."""
    bare = media_type.split(";", 1)[0].strip().lower()
    return ALIASES.get(bare, bare)


def parse_published(
    body: bytes, media_type: str, audio_duration_s: float, max_segments: int
) -> tuple[list[Segment], bool]:
    """The segments of a published transcript, sorted by start, and whether their times are the file's own;
    TranscriptionError for one of more than `max_segments` segments."""
    kind = canonical_type(media_type)
    if kind not in FORMAT_NAMES:
        raise TranscriptionError(
            f"transcript type {media_type!r} is not one of {', '.join(PUBLISHED_TRANSCRIPT_TYPES)}"
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        segments, timed = parse_as(kind, text, audio_duration_s, Limit(FORMAT_NAMES[kind], max_segments))
    # Numbers or nesting beyond what any real file has, or markup html.parser asserts against. Their messages may
    # quote the file, a stranger's bytes: only the kind of error is told.
    except (ValueError, OverflowError, RecursionError, AssertionError) as exc:
        raise TranscriptionError(f"{FORMAT_NAMES[kind]} transcript cannot be read: {type(exc).__name__}") from None
    if not segments:
        raise TranscriptionError(f"{FORMAT_NAMES[kind]} transcript has no text")
    return sorted(segments, key=lambda segment: segment.start), timed


class Limit:
    """The most segments one transcript may yield (`max_transcript_segments`), checked before each is made."""

    def __init__(self, name: str, max_segments: int):
        self.name, self.max_segments = name, max_segments

    def check(self, count: int) -> None:
        if count > self.max_segments:
            raise TranscriptionError(
                f"{self.name} transcript has more than the max_transcript_segments={self.max_segments:,} limit"
            )


def parse_as(kind: str, text: str, audio_duration_s: float, limit: Limit) -> tuple[list[Segment], bool]:
    if kind == VTT:
        return parse_vtt(text, limit), True
    if kind == SRT:
        return cue_segments(text.strip(), "SRT", SRT_TAG, unescape=False, limit=limit), True
    if kind == JSON:
        return parse_json(text, limit), True
    if kind == HTML:
        return parse_html(text, audio_duration_s, limit)
    return spread_over(BLANK_LINES.split(text), audio_duration_s, limit), False


def parse_vtt(text: str, limit: Limit) -> list[Segment]:
    header, *cues = BLANK_LINES.split(text.lstrip("\n"), maxsplit=1)
    if not re.match(r"WEBVTT(?:[ \t]|\n|$)", header):
        raise TranscriptionError("WebVTT transcript does not start with the WEBVTT header")
    blocks = [block for block in BLANK_LINES.split("".join(cues).strip()) if not VTT_SKIPPED_BLOCKS.match(block)]
    return cue_segments("\n\n".join(blocks), "WebVTT", VTT_TAG, unescape=True, limit=limit)


def cue_segments(text: str, name: str, tag: re.Pattern[str], unescape: bool, limit: Limit) -> list[Segment]:
    """Segments from blank-line separated cues: an optional id or number, a timing line, then the text lines."""
    segments: list[Segment] = []
    for number, block in enumerate(BLANK_LINES.split(text) if text else [], start=1):
        limit.check(len(segments) + 1)
        lines = block.split("\n")
        timing_at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        # The cue is named by its place, not its text: a message never quotes the file.
        if timing_at is None:
            raise TranscriptionError(f"{name} cue {number} has no timing line")
        timing = TIMING_LINE.fullmatch(lines[timing_at])
        if timing is None:
            raise TranscriptionError(f"{name} cue {number} has a timing line that cannot be read")
        cue_text = tag.sub("", " ".join(lines[timing_at + 1 :]))
        start, end = clock_seconds(*timing.groups()[:4]), clock_seconds(*timing.groups()[4:])
        append_segment(segments, start, end, html.unescape(cue_text) if unescape else cue_text, name)
    return segments


def clock_seconds(hours: str | None, minutes: str, seconds: str, fraction: str | None) -> float:
    whole = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return float(whole) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def append_segment(segments: list[Segment], start: float, end: float, text: str, name: str) -> None:
    """Append the segment unless its text is empty; refuse times no audio can have."""
    if not (math.isfinite(start) and math.isfinite(end) and start >= 0):
        raise TranscriptionError(f"{name} transcript has a segment time that is negative or not a number")
    if end < start:
        raise TranscriptionError(f"{name} transcript has a segment that ends ({end} s) before it starts ({start} s)")
    if words := " ".join(text.split()):
        segments.append(Segment(start=start, end=end, text=words))


def parse_json(text: str, limit: Limit) -> list[Segment]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptionError(f"JSON transcript is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("segments"), list):
        raise TranscriptionError("JSON transcript has no 'segments' list")
    limit.check(len(document["segments"]))
    segments: list[Segment] = []
    for number, item in enumerate(document["segments"], start=1):
        fields = item if isinstance(item, dict) else {}
        times = [
            float(time)
            for time in (fields.get("startTime"), fields.get("endTime"))
            if isinstance(time, (int, float)) and not isinstance(time, bool)
        ]  # JSON's true is an int too
        if len(times) != 2:
            raise TranscriptionError(f"JSON transcript segment {number} lacks a numeric startTime and endTime")
        if not isinstance(body := fields.get("body", ""), str):
            raise TranscriptionError(f"JSON transcript segment {number} has a body that is not text")
        append_segment(segments, times[0], times[1], body, "JSON")
    return segments


class HtmlTranscript(HTMLParser):
    """The paragraphs of an HTML page, grouped under the `<time>` mark (a clock such as `0:01:05`) before them.
    `<cite>` holds the speaker's name, which Segment has no place for, so it is left out of the text."""

    SKIPPED = {"script", "style", "title", "cite"}
    BLOCKS = {*"p div li ul ol dd dt tr table section article blockquote pre header footer main body hr".split()}
    BLOCKS |= {f"h{level}" for level in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.leading: list[str] = []  # paragraphs before any mark: all of them on a page without marks
        self.marks: list[tuple[float, list[str]]] = []
        self.pending: list[str] = []
        self.skipping: list[str] = []
        self.clock: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping.append(tag)
        elif self.skipping:
            return
        elif tag == "time":
            self.clock = []
        elif tag in self.BLOCKS:
            self.end_paragraph()
        elif tag == "br":
            self.pending.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
        elif tag == "time" and self.clock is not None:
            stamp = " ".join("".join(self.clock).split())
            self.clock = None
            if clock := HTML_CLOCK.fullmatch(stamp):
                self.end_paragraph()
                self.marks.append((clock_seconds(*clock.groups()), []))
            else:  # a date or a time of day in the prose, not a place in the audio
                self.pending.append(f" {stamp} ")
        elif tag in self.BLOCKS:
            self.end_paragraph()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            (self.pending if self.clock is None else self.clock).append(data)

    def end_paragraph(self) -> None:
        if paragraph := " ".join("".join(self.pending).split()):
            (self.marks[-1][1] if self.marks else self.leading).append(paragraph)
        self.pending = []


def parse_html(text: str, audio_duration_s: float, limit: Limit) -> tuple[list[Segment], bool]:
    page = HtmlTranscript()
    page.feed(text)
    page.close()
    page.end_paragraph()
    if not page.marks:
        return spread_over(page.leading, audio_duration_s, limit), False
    limit.check(len(page.marks))
    # Each mark times the text up to the next mark; text before the first mark is the page's heading matter.
    ends = [start for start, _ in page.marks[1:]] + [max(page.marks[-1][0], audio_duration_s)]
    segments: list[Segment] = []
    for (start, paragraphs), end in zip(page.marks, ends):
        append_segment(segments, start, end, " ".join(paragraphs), "HTML")
    return segments, True


def spread_over(paragraphs: list[str], audio_duration_s: float, limit: Limit) -> list[Segment]:
    """One segment per paragraph, the audio's length shared out in proportion to each paragraph's characters."""
    texts = [words for paragraph in paragraphs if (words := " ".join(paragraph.split()))]
    limit.check(len(texts))
    total_chars, duration = sum(map(len, texts)), max(audio_duration_s, 0.0)
    segments, chars_before = [], 0
    for words in texts:
        start = duration * (chars_before / total_chars)
        chars_before += len(words)
        segments.append(Segment(start=start, end=duration * (chars_before / total_chars), text=words))
    return segments
