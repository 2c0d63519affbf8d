"""Podcasting 2.0 transcripts as feeds publish them, read into segments; malformed ones refused with a reason."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from tasks import audio as audio_codec
from tasks.errors import AudioTooLongError, TranscriptionError
from tasks.models import Episode, Segment, Settings, TranscriptLink
from tasks.transcribe.published import MAX_LINKS_TRIED, media_type_of, published_transcript
from tasks.transcribe.published_parse import parse_published
from tests.audio_files import live_audio
from tests.feedserver import FeedServer
from tests.transcripts import published_settings

VTT_BODY = """WEBVTT - Episode 42
Kind: captions
Language: en

NOTE
Edited by hand after the show.

STYLE
::cue { color: yellow }

1
00:00.000 --> 00:04.250 align:start position:10%
<v Alice>Welcome to the show,</v>
<v Alice>everyone.</v>

intro-2
00:04.250 --> 00:09.500
<v.loud Bob>Thanks &amp; hello!</v>

01:02:03.004 --> 01:02:04.000
Past the hour.

NOTE a one-line note

00:01:05.000 --> 00:01:07.125
<c.yellow>Back</c> after the <i>break</i> &lt;music&gt;

00:01:10.000 --> 00:01:11.000
<v Bob></v>
"""

SRT_BODY = (
    "\ufeff1\r\n00:00:00,500 --> 00:00:02,000\r\n<i>Hello</i> there,\r\nfriends.\r\n\r\n"
    '2\r\n00:00:02,000 --> 00:00:03,250\r\n<font color="#ffffff">Café</font> talk\r\n\r\n'
    "3\r\n01:00:00,000 --> 01:00:01,001\r\nLast words"
)

JSON_BODY = json.dumps(
    {
        "version": "1.0.0",
        "segments": [
            {"speaker": "Alice", "startTime": 0.5, "endTime": 2.1, "body": "Hi, I'm Alice."},
            {"speaker": "Bob", "startTime": 2.1, "endTime": 5, "body": "And  I'm\nBob."},
            {"speaker": "Alice", "startTime": 5, "endTime": 5, "body": ""},
        ],
    }
)

HTML_TIMED = """<!DOCTYPE html><html><head><title>Episode 42</title><style>p { color: red }</style>
<script>var x = "<p>not text</p>";</script></head>
<body><h1>Transcript</h1>
<cite>Alice:</cite>
<time>0:00</time>
<p>Welcome &amp; hello.</p>
<cite>Bob:</cite>
<time>00:00:07</time>
<p>Thanks, <b>Alice</b>.</p>
<p>Glad to be here.</p>
<p>Right. <cite>Alice:</cite> <time>00:01:02.5</time> Let's begin.</p>
</body></html>"""

HTML_UNTIMED = (
    "<html><body><h2>Show notes transcript</h2><p>One two three.</p><div>Four<br>five</div>"
    '<p>Recorded <time datetime="2024-05-01">May 1, 2024</time> in Berlin.</p>'
    "<script>ignored()</script></body></html>"
)

PLAIN_BODY = "First paragraph,\r\nwrapped here.\r\n\r\n\r\nA second, much longer paragraph of text.\n  \nEnd."


def spans(segments: list[Segment]) -> list[tuple[float, float, str]]:
    return [(segment.start, segment.end, segment.text) for segment in segments]


def test_vtt_keeps_cue_text_without_ids_notes_styles_or_tags_and_sorts_by_start() -> None:
    segments, timed = parse_published(VTT_BODY.encode(), "text/vtt", audio_duration_s=4000.0, max_segments=1_000)

    assert timed is True
    assert parse_published(b"\xef\xbb\xbf" + VTT_BODY.encode(), "text/vtt", 4000.0, max_segments=1_000) == (
        segments,
        timed,
    )
    assert spans(segments) == [
        (0.0, 4.25, "Welcome to the show, everyone."),
        (4.25, 9.5, "Thanks & hello!"),
        (65.0, 67.125, "Back after the break <music>"),
        (3723.004, 3724.0, "Past the hour."),
    ]


def test_srt_with_bom_crlf_styling_and_no_trailing_blank_line() -> None:
    segments, timed = parse_published(
        SRT_BODY.encode(), "application/srt; charset=UTF-8", audio_duration_s=0.0, max_segments=1_000
    )

    assert timed is True
    assert spans(segments) == [
        (0.5, 2.0, "Hello there, friends."),
        (2.0, 3.25, "Café talk"),
        (3600.0, 3601.001, "Last words"),
    ]


def test_json_keeps_the_spoken_text_and_times_and_drops_empty_bodies() -> None:
    segments, timed = parse_published(JSON_BODY.encode(), "application/json", audio_duration_s=10.0, max_segments=1_000)

    assert timed is True
    assert spans(segments) == [(0.5, 2.1, "Hi, I'm Alice."), (2.1, 5.0, "And I'm Bob.")]


@pytest.mark.parametrize("duration, last_end", [(90.0, 90.0), (10.0, 62.5)])
def test_html_time_marks_time_the_text_after_them_until_the_next_mark(duration: float, last_end: float) -> None:
    segments, timed = parse_published(HTML_TIMED.encode(), "text/html", audio_duration_s=duration, max_segments=1_000)

    assert timed is True
    assert spans(segments) == [
        (0.0, 7.0, "Welcome & hello."),
        (7.0, 62.5, "Thanks, Alice. Glad to be here. Right."),
        (62.5, last_end, "Let's begin."),
    ]


def test_html_without_clock_marks_spreads_the_audio_over_its_paragraphs() -> None:
    segments, timed = parse_published(HTML_UNTIMED.encode(), "text/html", audio_duration_s=150.0, max_segments=1_000)

    assert timed is False
    # 21, 14, 9 and 31 characters of 75 in all: two seconds of audio a character. A dated <time> is prose.
    assert [segment.text for segment in segments] == [
        "Show notes transcript",
        "One two three.",
        "Four five",
        "Recorded May 1, 2024 in Berlin.",
    ]
    assert [(segment.start, segment.end) for segment in segments] == [
        (0.0, pytest.approx(42.0)),
        (pytest.approx(42.0), pytest.approx(70.0)),
        (pytest.approx(70.0), pytest.approx(88.0)),
        (pytest.approx(88.0), 150.0),
    ]


def test_plain_text_paragraphs_cover_exactly_the_audio_in_proportion_to_their_length() -> None:
    duration = 1234.567
    segments, timed = parse_published(PLAIN_BODY.encode(), "text/plain", audio_duration_s=duration, max_segments=1_000)

    texts = [segment.text for segment in segments]
    total_chars = sum(map(len, texts))
    assert timed is False
    assert texts == ["First paragraph, wrapped here.", "A second, much longer paragraph of text.", "End."]
    assert segments[0].start == 0.0 and segments[-1].end == duration
    assert all(before.end == after.start for before, after in zip(segments, segments[1:]))
    for segment in segments:
        assert segment.end - segment.start == pytest.approx(duration * len(segment.text) / total_chars)


def test_text_that_is_not_utf8_is_read_as_latin1() -> None:
    segments, _ = parse_published(
        "Café au lait".encode("latin-1"), "text/plain", audio_duration_s=3.0, max_segments=1_000
    )
    assert spans(segments) == [(0.0, 3.0, "Café au lait")]


@pytest.mark.parametrize(
    "body, media_type",
    [
        (VTT_BODY, "text/vtt"),
        (SRT_BODY, "text/srt"),
        (JSON_BODY, "application/json"),
        (HTML_TIMED, "text/html"),
        (HTML_UNTIMED, "text/html"),
        (PLAIN_BODY, "text/plain"),
    ],
)
def test_every_format_gives_ordered_non_negative_spans_of_tidy_text(body: str, media_type: str) -> None:
    segments, _ = parse_published(body.encode(), media_type, audio_duration_s=60.0, max_segments=1_000)

    assert segments
    assert [segment.start for segment in segments] == sorted(segment.start for segment in segments)
    assert all(0 <= segment.start <= segment.end for segment in segments)
    assert all(segment.text and segment.text == " ".join(segment.text.split()) for segment in segments)


@pytest.mark.parametrize(
    "declared, url, expected",
    [
        ("text/vtt; charset=utf-8", "https://example.com/t", "text/vtt"),
        ("Application/SRT", "https://example.com/t", "application/x-subrip"),
        ("text/srt", "https://example.com/t.vtt", "application/x-subrip"),
        ("application/x-subrip", "https://example.com/t", "application/x-subrip"),
        ("application/json", "https://example.com/t", "application/json"),
        ("TEXT/HTML;charset=utf-8", "https://example.com/t", "text/html"),
        ("text/plain", "https://example.com/t", "text/plain"),
        (None, "https://cdn.example.com/ep/42/transcript.VTT?sig=a.srt#x.json", "text/vtt"),
        (None, "https://example.com/t.srt", "application/x-subrip"),
        (None, "https://example.com/t.json", "application/json"),
        ("", "https://example.com/t.htm", "text/html"),
        (None, "https://example.com/t.html", "text/html"),
        (None, "https://example.com/t.txt", "text/plain"),
        ("application/octet-stream", "https://example.com/t.vtt", "text/vtt"),
        (None, "https://example.com/transcript", None),
        ("application/pdf", "https://example.com/t.pdf", None),
    ],
)
def test_media_type_is_the_declared_one_normalised_else_guessed_from_the_url(
    declared: str | None, url: str, expected: str | None
) -> None:
    assert media_type_of(declared, url) == expected


@pytest.mark.parametrize(
    "body, media_type, reason",
    [
        ("00:00.000 --> 00:01.000\nhi\n", "text/vtt", "WebVTT transcript does not start with the WEBVTT header"),
        ("WEBVTTX\n\n00:00.000 --> 00:01.000\nhi\n", "text/vtt", "WEBVTT header"),
        ("WEBVTT\n\n00:00.000 --> soon\nhi\n", "text/vtt", "WebVTT cue 1 has a timing line that cannot be read"),
        ("WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n\nstray text\n", "text/vtt", "WebVTT cue 2 has no timing line"),
        ("WEBVTT\n\nNOTE nothing to say\n", "text/vtt", "WebVTT transcript has no text"),
        ("1\n00:00:01 --> 00:00:02\nhi\n", "application/x-subrip", "SRT cue 1 has a timing line that cannot be read"),
        ("1\nhello\nworld\n", "application/x-subrip", "SRT cue 1 has no timing line"),
        (
            "1\n00:00:05,000 --> 00:00:04,000\nhi\n",
            "application/x-subrip",
            r"SRT transcript has a segment that ends \(4.0 s\) before it starts \(5.0 s\)",
        ),
        ("{not json", "application/json", "JSON transcript is not valid JSON"),
        ('{"version": "1.0.0"}', "application/json", "JSON transcript has no 'segments' list"),
        ("[]", "application/json", "no 'segments' list"),
        (
            '{"segments": [{"startTime": 1, "body": "hi"}]}',
            "application/json",
            "segment 1 lacks a numeric startTime and endTime",
        ),
        ('{"segments": ["hi"]}', "application/json", "segment 1 lacks a numeric startTime"),
        ('{"segments": [{"startTime": "1", "endTime": "2", "body": "hi"}]}', "application/json", "lacks a numeric"),
        ('{"segments": [{"startTime": true, "endTime": 2, "body": "hi"}]}', "application/json", "lacks a numeric"),
        (
            '{"segments": [{"startTime": 2, "endTime": 1, "body": "hi"}]}',
            "application/json",
            r"ends \(1.0 s\) before it starts \(2.0 s\)",
        ),
        ('{"segments": [{"startTime": -1, "endTime": 1, "body": "hi"}]}', "application/json", "negative"),
        ('{"segments": [{"startTime": NaN, "endTime": 1, "body": "hi"}]}', "application/json", "not a number"),
        ('{"segments": [{"startTime": 0, "endTime": 1, "body": 5}]}', "application/json", "body that is not text"),
        ('{"segments": []}', "application/json", "JSON transcript has no text"),
        (
            "<time>0:10</time><p>later</p><time>0:05</time><p>earlier</p>",
            "text/html",
            r"HTML transcript has a segment that ends \(5.0 s\) before it starts \(10.0 s\)",
        ),
        ("<html><script>x()</script><style>p {}</style></html>", "text/html", "HTML transcript has no text"),
        (" \r\n\r\n \n", "text/plain", "plain-text transcript has no text"),
        ("%PDF-1.4", "application/pdf", "transcript type 'application/pdf' is not one of text/vtt"),
        # Hostile files: numbers and nesting no real transcript has are refused, not raised raw.
        (
            '{"segments": [{"startTime": 1' + "0" * 400 + ', "endTime": 2, "body": "hi"}]}',
            "application/json",
            "JSON transcript cannot be read: OverflowError",
        ),
        ("[" * 100_000, "application/json", "JSON transcript cannot be read: RecursionError"),
        (
            "WEBVTT\n\n" + "9" * 400 + ":00:00.000 --> 00:00:01.000\nhi\n",
            "text/vtt",
            "WebVTT cue 1 has a timing line that cannot be read",
        ),
    ],
)
def test_malformed_transcripts_are_refused_with_the_reason(body: str, media_type: str, reason: str) -> None:
    with pytest.raises(TranscriptionError, match=reason):
        parse_published(body.encode(), media_type, audio_duration_s=60.0, max_segments=1_000)


@pytest.mark.parametrize(
    "media_type, template, hostile",
    [
        ("text/vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\n{}\n", "<" * 200_000),
        ("application/x-subrip", "1\n00:00:00,000 --> 00:00:01,000\n{}\n", "<b" * 100_000),
    ],
)
def test_unclosed_tags_are_kept_as_text(media_type: str, template: str, hostile: str) -> None:
    """Also the input that made the first tag patterns backtrack quadratically (minutes for a file this size)."""
    segments, _ = parse_published(template.format(hostile).encode(), media_type, 60.0, max_segments=1_000)
    assert [segment.text for segment in segments] == [hostile]


MARKER = "SECRET-BODY-MARKER"


@pytest.mark.parametrize(
    "body, media_type",
    [
        (f"WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n\n{MARKER}\n", "text/vtt"),
        (f"WEBVTT\n\n00:00.000 --> {MARKER}\nhi\n", "text/vtt"),
        (f"{MARKER}\nhi\n", "application/x-subrip"),
        (f"1\n00:00:01,000 --> {MARKER}\nhi\n", "application/x-subrip"),
        (f"<p>hi</p><![{MARKER}[ x ]]>", "text/html"),  # html.parser raises an AssertionError quoting the keyword
        (
            f'{{"segments": [{{"startTime": 0, "endTime": 1, "body": "{MARKER}", "x": [1e999, "{MARKER}"',
            "application/json",
        ),
    ],
    ids=["vtt-cue", "vtt-timing", "srt-cue", "srt-timing", "html-marked-section", "json"],
)
def test_no_refusal_quotes_the_transcript(body: str, media_type: str) -> None:
    """A published transcript is a stranger's bytes: a refusal says where, never what."""
    with pytest.raises(TranscriptionError) as refused:
        parse_published(body.encode(), media_type, audio_duration_s=60.0, max_segments=1_000)
    assert MARKER not in str(refused.value)


def test_audio_without_a_duration_is_measured_within_the_limit_keeping_no_samples(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    audio = live_audio(tmp_path, 600)
    url = server.add("/t.txt", b"First paragraph.\n\nSecond paragraph.")
    episode = Episode(episode_id="e1", title="e1", transcripts=(TranscriptLink(url=url, type="text/plain"),))

    tracemalloc.start()
    try:
        transcript = published_transcript(episode, audio, published_settings(settings))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert transcript is not None and transcript.audio_duration_s == pytest.approx(600, abs=0.1)
    assert peak < 4 * 2**20, peak  # ten minutes decoded would be 38 MB

    with pytest.raises(AudioTooLongError, match="audio.mka is longer than the 60-second limit"):
        published_transcript(episode, audio, published_settings(settings, max_audio_duration_s=60))


def test_only_the_first_few_links_are_tried_and_the_audio_is_measured_once(
    server: FeedServer, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = live_audio(tmp_path, 30)
    links = tuple(TranscriptLink(url=server.url(f"/gone-{n}.vtt"), type="text/vtt") for n in range(50))
    episode = Episode(episode_id="e1", title="e1", transcripts=links)
    measured: list[Path] = []
    real_duration_s = audio_codec.duration_s
    monkeypatch.setattr(
        audio_codec, "duration_s", lambda path, *limits: measured.append(path) or real_duration_s(path, *limits)
    )

    with pytest.raises(TranscriptionError, match="47 more links not tried") as refused:
        published_transcript(episode, audio, published_settings(settings))

    assert sum(server.count(f"/gone-{n}.vtt") for n in range(50)) == MAX_LINKS_TRIED == 3
    assert str(refused.value).count("HTTP 404") == MAX_LINKS_TRIED
    assert measured == [audio.path]
