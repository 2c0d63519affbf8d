"""A stranger's document costs what the settings allow, whatever its shape: parsers podflow does not own run in a
child process killed past max_parse_s or max_parse_bytes, and no document yields more episodes, feeds or segments
than its limit."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tasks.errors import FeedError, TranscriptionError
from tasks.feed import fetch_feed
from tasks.feed_cut import first_items
from tasks.feed_parse import MAX_TRANSCRIPT_LINKS, parse_page
from tasks.isolation import parse_isolated
from tasks.models import AudioFile, Episode, Settings, TranscriptLink
from tasks.opml import read_opml
from tasks.transcribe.published import published_transcript
from tests.audio_files import live_audio
from tests.feeds import ATTRIBUTES_ON_ONE_ELEMENT, page, rss, rss_item, serve_pages
from tests.feedserver import FeedServer
from tests.transcripts import published_settings

# Took minutes in the parser podflow calls (measured on 2 cores, Python 3.11.7), as tests/feeds.py's
# ATTRIBUTES_ON_ONE_ELEMENT does in feedparser.
END_TAG_OPENINGS = b"</" * 2**19  # html.parser: 1 MiB, about 1.5 minutes (CVE-2025-6069)


def quick(settings: Settings, **options: object) -> Settings:
    return settings.but(max_parse_s=2.0, **options)


def test_a_feed_its_parser_takes_too_long_on_is_a_feed_error_naming_the_limit(
    server: FeedServer, settings: Settings
) -> None:
    url = server.add("/feed.xml", ATTRIBUTES_ON_ONE_ELEMENT)
    with pytest.raises(FeedError, match=r"feed\.xml was not parsed within the max_parse_s=2 limit"):
        fetch_feed(url, quick(settings))


def test_a_published_html_transcript_html_parser_takes_too_long_on_is_refused(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/t.html", END_TAG_OPENINGS, content_type="text/html")
    episode = Episode(episode_id="e1", title="e1", transcripts=(TranscriptLink(url=url, type="text/html"),))
    with pytest.raises(TranscriptionError, match="t.html: the transcript was not parsed within the max_parse_s=2"):
        published_transcript(episode, live_audio(tmp_path, 10), published_settings(quick(settings)))


def allocate(size: int) -> bytes:
    return bytes(size)


def test_a_parse_that_needs_more_memory_than_max_parse_bytes_is_refused_naming_it(settings: Settings) -> None:
    with pytest.raises(FeedError, match="the document needs more than the max_parse_bytes=1,073,741,824 limit"):
        parse_isolated(allocate, (2 * 2**30,), settings.but(max_parse_bytes=2**30), "the document", FeedError)
    assert parse_isolated(allocate, (10,), settings, "the document", FeedError) == bytes(10)


def tiny_items(count: int, first: int = 0) -> list[str]:
    return [rss_item(f"E{n}", guid=f"g{n}", enclosure=f"{n}.mp3") for n in range(first, first + count)]


def test_a_feed_of_more_items_than_max_feed_episodes_yields_that_many_saying_so(
    server: FeedServer, settings: Settings
) -> None:
    url = server.add("/feed.xml", rss(tiny_items(500)))
    feed, episodes = fetch_feed(url, settings.but(max_feed_episodes=40))
    assert [e.title for e in episodes] == [f"E{n}" for n in range(40)]
    assert feed.paging_error is not None and "max_feed_episodes=40" in feed.paging_error


def test_max_feed_episodes_counts_the_pages_together(server: FeedServer, settings: Settings) -> None:
    url = serve_pages(
        server,
        [
            ("/1.xml", page(tiny_items(30), next_href="/2.xml")),
            ("/2.xml", page(tiny_items(30, first=30), next_href="/3.xml")),
            ("/3.xml", page(tiny_items(30, first=60))),
        ],
    )
    feed, episodes = fetch_feed(url, settings.but(max_feed_episodes=45))
    assert [e.title for e in episodes] == [f"E{n}" for n in range(45)]
    assert feed.paging_error is not None and "max_feed_episodes=45" in feed.paging_error
    assert server.count("/3.xml") == 0


def test_a_feed_within_max_feed_episodes_is_read_whole(server: FeedServer, settings: Settings) -> None:
    url = server.add("/feed.xml", rss(tiny_items(40)))
    feed, episodes = fetch_feed(url, settings.but(max_feed_episodes=40))
    assert len(episodes) == 40 and feed.paging_error is None


def test_an_opml_list_of_more_than_max_opml_feeds_gives_the_first_ones_saying_so(
    settings: Settings, tmp_path: Path
) -> None:
    outlines = "".join(f'<outline xmlUrl="https://feeds.example.org/{n}.xml"/>' for n in range(100))
    path = tmp_path / "list.opml"
    path.write_text(f"<opml><body>{outlines}</body></opml>")
    urls, left_out = read_opml(str(path), settings.but(max_opml_feeds=25))
    assert urls == [f"https://feeds.example.org/{n}.xml" for n in range(25)]
    assert left_out is not None and "max_opml_feeds=25" in left_out


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b"a\n\n" * 2**20, "text/plain"),  # 3 MiB of paragraphs
        (b"WEBVTT\n\n" + b"00:00.000 --> 00:01.000\na\n\n" * 60_000, "text/vtt"),
        (b'{"segments": [' + b'{"startTime": 0, "endTime": 1, "body": "a"},' * 60_000 + b"{}]}", "application/json"),
        (b"<p><time>0:01</time>a</p>" * 60_000, "text/html"),
    ],
)
def test_a_transcript_of_more_segments_than_max_transcript_segments_is_refused(
    body: bytes, media_type: str, server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/t", body, content_type=media_type)
    episode = Episode(episode_id="e1", title="e1", transcripts=(TranscriptLink(url=url, type=media_type),))
    limited = published_settings(settings, max_transcript_segments=50_000)
    with pytest.raises(TranscriptionError, match="more than the max_transcript_segments=50,000 limit"):
        published_transcript(episode, live_audio(tmp_path, 10), limited)


def test_a_transcript_within_max_transcript_segments_is_taken(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/t.txt", b"a\n\n" * 500, content_type="text/plain")
    episode = Episode(episode_id="e1", title="e1", transcripts=(TranscriptLink(url=url, type="text/plain"),))
    audio: AudioFile = live_audio(tmp_path, 10)
    transcript = published_transcript(episode, audio, published_settings(settings, max_transcript_segments=500))
    assert transcript is not None and len(transcript.segments) == 500


MAIN_SCRIPT = """
import sys
from pathlib import Path
with open(sys.argv[1], "a") as marker:
    marker.write("imported\\n")  # once, by this process: a parse child must not import the parent's __main__
from tasks.errors import FeedError
from tasks.feed_parse import parse_page
from tasks.isolation import parse_isolated
from tasks.models import Settings
if __name__ == "__main__":
    url = "https://feeds.example.org/feed.xml"
    body = Path("flows/demo/feed.xml").read_bytes()
    pages = [parse_isolated(parse_page, (body, url, url, {}, 10), Settings(), url, FeedError) for _ in range(3)]
    print(len(pages[-1].episodes))
"""


@pytest.mark.integration  # a subprocess with a __main__ of its own
def test_a_parse_child_starts_from_the_preloaded_parsers_not_the_parents_main(tmp_path: Path) -> None:
    script, marker = tmp_path / "main.py", tmp_path / "imports"
    script.write_text(MAIN_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(marker)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.stdout.strip() == "4", result.stderr[-2000:]
    assert marker.read_text() == "imported\n"


def test_an_item_keeps_at_most_max_transcript_links_of_its_transcript_links(
    server: FeedServer, settings: Settings
) -> None:
    links = "".join(f'<podcast:transcript url="t/{n}.vtt" type="text/vtt"/>' for n in range(10_000))
    url = server.add("/feed.xml", rss([rss_item("One", guid="one", enclosure="a.mp3", extra=links)]))
    _, [episode] = fetch_feed(url, settings)
    assert [link.url for link in episode.transcripts] == [
        server.url(f"/t/{n}.vtt") for n in range(MAX_TRANSCRIPT_LINKS)
    ]


@pytest.mark.parametrize("max_items", [1, 2, 2_999])
def test_a_cut_feed_is_well_formed_and_keeps_what_its_items_hold(max_items: int) -> None:
    links = (
        '<podcast:transcript url="t.vtt" type="text/vtt"/><podcast:transcript url="t.json" type="application/json"/>'
    )
    body = rss([rss_item(f"E{n}", guid=f"g{n}", enclosure=f"{n}.mp3", extra=links) for n in range(3_000)])
    cut, left_out = first_items(body, max_items)
    assert left_out and len(ET.fromstring(cut).findall("./channel/item")) == max_items  # well-formed, cut right
    page = parse_page(body, "https://x.org/f.xml", "https://x.org/f.xml", {}, max_items)
    assert [e.title for e in page.episodes] == [f"E{n}" for n in range(max_items)] and page.items_left_out
    assert all(len(e.transcripts) == 2 for e in page.episodes)  # read by the XML tree, which a malformed cut loses
    assert first_items(body, 3_000) == (body, False)
