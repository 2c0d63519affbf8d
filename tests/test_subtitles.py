"""SRT and WebVTT output, read back by the `srt` and `webvtt-py` libraries and by podflow's own parser."""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence

import pytest
import srt
import webvtt

from tasks.models import Segment
from tasks.transcribe.published_parse import parse_published
from tasks.transcribe.subtitles import to_srt, to_vtt

HOSTILE = [
    Segment(start=0.0, end=1.2344, text="Plain words"),
    Segment(start=1.2346, end=59.9996, text="a --> b ---> c"),
    Segment(start=60.0, end=61.5, text="<b>not bold</b> & R&D &amp; 1 < 2 > 0"),
    Segment(start=61.5, end=63.0, text="first paragraph\n\n\nsecond paragraph\n"),
    Segment(start=63.0, end=64.0, text="  Zürich, naïve, 日本語, emoji 🎙️ "),
    Segment(start=64.0, end=65.0, text="שלום עולם \u200fمرحبا بكم"),
    Segment(start=3725.0004, end=3726.5, text="past the hour"),
]


def one_line(text: str) -> str:
    return " ".join(text.split()).replace("-->", "→")


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def vtt_ms(stamp: str) -> int:
    clock, millis = stamp.split(".")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + int(millis)


def test_srt_is_read_back_by_the_srt_library_with_the_same_texts_and_millisecond_times() -> None:
    parsed = list(srt.parse(to_srt(HOSTILE)))

    assert [subtitle.index for subtitle in parsed] == list(range(1, len(HOSTILE) + 1))
    assert [subtitle.content for subtitle in parsed] == [one_line(segment.text) for segment in HOSTILE]
    assert [ms(subtitle.start.total_seconds()) for subtitle in parsed] == [ms(segment.start) for segment in HOSTILE]
    assert [ms(subtitle.end.total_seconds()) for subtitle in parsed] == [ms(segment.end) for segment in HOSTILE]


def test_vtt_is_read_back_by_webvtt_with_the_same_texts_and_millisecond_times() -> None:
    text = to_vtt(HOSTILE)
    captions = webvtt.from_buffer(io.StringIO(text)).captions

    assert text.startswith("WEBVTT\n\n")
    assert [html.unescape(caption.text) for caption in captions] == [one_line(segment.text) for segment in HOSTILE]
    assert [vtt_ms(caption.start) for caption in captions] == [ms(segment.start) for segment in HOSTILE]
    assert [vtt_ms(caption.end) for caption in captions] == [ms(segment.end) for segment in HOSTILE]
    assert "&lt;b&gt;not bold&lt;/b&gt; &amp; R&amp;D &amp;amp; 1 &lt; 2 &gt; 0" in text


def test_every_cue_is_one_block_of_number_timing_and_one_text_line() -> None:
    srt_blocks = to_srt(HOSTILE).rstrip("\n").split("\n\n")
    vtt_blocks = to_vtt(HOSTILE).rstrip("\n").split("\n\n")[1:]

    assert len(srt_blocks) == len(vtt_blocks) == len(HOSTILE)
    assert all(len(block.split("\n")) == 3 for block in srt_blocks)
    assert all(len(block.split("\n")) == 2 for block in vtt_blocks)
    assert all(block.count("-->") == 1 for block in srt_blocks + vtt_blocks)


def test_rounding_carries_into_the_next_second_instead_of_writing_1000_milliseconds() -> None:
    assert "00:00:01,235 --> 00:01:00,000" in to_srt(HOSTILE)
    assert "01:02:05.000 --> 01:02:06.500" in to_vtt(HOSTILE)
    assert ",1000" not in to_srt(HOSTILE) and ".1000" not in to_vtt(HOSTILE)


def test_cues_that_go_back_in_time_are_clamped_so_starts_stay_ordered_and_ends_follow_starts() -> None:
    jumbled = [
        Segment(start=5.0, end=6.0, text="five"),
        Segment(start=3.0, end=4.0, text="three, after five"),
        Segment(start=8.0, end=7.5, text="ends before it starts"),
        Segment(start=9.0, end=9.0, text="   "),
        Segment(start=10.0, end=11.0, text="ten"),
    ]
    parsed = list(srt.parse(to_srt(jumbled)))
    times = [(ms(s.start.total_seconds()), ms(s.end.total_seconds())) for s in parsed]

    assert [s.content for s in parsed] == ["five", "three, after five", "ends before it starts", "ten"]
    assert [s.index for s in parsed] == [1, 2, 3, 4]
    assert times == [(5000, 6000), (5000, 5000), (8000, 8000), (10000, 11000)]
    starts = [vtt_ms(caption.start) for caption in webvtt.from_buffer(io.StringIO(to_vtt(jumbled))).captions]
    assert starts == sorted(starts) == [5000, 5000, 8000, 10000]


def test_nothing_to_say_gives_an_empty_srt_and_a_bare_vtt_header() -> None:
    blank = [Segment(start=0.0, end=1.0, text=" \n ")]
    assert to_srt(blank) == ""
    assert to_vtt(blank) == "WEBVTT\n\n"


@pytest.mark.parametrize("media_type, write", [("application/x-subrip", to_srt), ("text/vtt", to_vtt)])
def test_podflow_reads_its_own_subtitles_back_to_the_same_segments(
    media_type: str, write: Callable[[Sequence[Segment]], str]
) -> None:
    segments, timed = parse_published(write(HOSTILE).encode(), media_type, audio_duration_s=0.0, max_segments=1_000)

    expected = [one_line(segment.text) for segment in HOSTILE]
    if media_type == "application/x-subrip":
        # SRT has no escaping: players render <b> as bold, so the reader strips it as styling.
        expected[2] = "not bold & R&D &amp; 1 < 2 > 0"
    assert timed is True
    assert [segment.text for segment in segments] == expected
    assert [ms(segment.start) for segment in segments] == [ms(segment.start) for segment in HOSTILE]
    assert [ms(segment.end) for segment in segments] == [ms(segment.end) for segment in HOSTILE]
