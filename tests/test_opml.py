"""OPML import from real files and a real HTTP server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasks.errors import FeedError
from tasks.models import Settings
from tasks.opml import parse_opml, read_opml
from tests.conftest import LOOPBACK
from tests.feedserver import FeedServer

SUBSCRIPTIONS = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My podcasts</title></head>
  <body>
    <outline text="Top" type="rss" xmlUrl="https://example.org/top.xml"/>
    <outline text="News">
      <outline text="Daily" type="rss" xmlUrl="  http://example.org/daily.xml  "/>
      <outline text="Local">
        <outline text="Town" type="rss" xmlurl="https://town.example.org/feed"/>
        <outline text="Town again" type="rss" XMLURL="https://town.example.org/feed"/>
      </outline>
    </outline>
    <outline text="Science">
      <outline text="Space" type="rss" xmlUrl="HTTPS://space.example.org/rss"/>
      <outline text="Local file" type="rss" xmlUrl="file:///etc/passwd"/>
      <outline text="Script" type="rss" xmlUrl="javascript:alert(1)"/>
      <outline text="Broken" type="rss" xmlUrl="http://[::1/feed.xml"/>
      <outline text="Homepage only" htmlUrl="https://example.org/"/>
      <outline text="Top again" type="rss" xmlUrl="https://example.org/top.xml"/>
    </outline>
  </body>
</opml>
"""
FEEDS = [
    "https://example.org/top.xml",
    "http://example.org/daily.xml",
    "https://town.example.org/feed",
    "HTTPS://space.example.org/rss",
]


def opml(outlines: str) -> bytes:
    return f'<?xml version="1.0"?><opml version="1.0"><head/><body>{outlines}</body></opml>'.encode()


def test_every_feed_at_any_depth_in_document_order_once(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "subscriptions.opml"
    path.write_bytes(SUBSCRIPTIONS)
    assert read_opml(str(path), settings) == (FEEDS, None)


def test_an_opml_url_is_fetched(server: FeedServer, settings: Settings) -> None:
    server.add("/new.opml", SUBSCRIPTIONS, content_type="text/x-opml")
    url = server.add("/subscriptions.opml", redirect_to=server.url("/new.opml"))
    assert read_opml(url, settings) == (FEEDS, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<opml><body><outline xmlUrl='https://x/f.xml'>", "malformed XML"),
        (b"", "malformed XML"),
        (b"<html><body><p>Not a list</p></body></html>", "no <opml> root"),
        (b"<opml version='2.0'><head><title>No body</title></head></opml>", "no <opml> root with a <body>"),
        (b"<rss version='2.0'><channel><title>A feed</title></channel></rss>", "no <opml> root"),
        (opml(""), "no feeds"),
        (opml('<outline text="Folder"><outline text="Site" htmlUrl="https://x/"/></outline>'), "no feeds"),
        (opml('<outline text="Local" xmlUrl="file:///tmp/feed.xml"/>'), "no feeds"),
    ],
)
def test_what_is_not_a_list_of_feeds_fails_naming_the_source(body: bytes, message: str) -> None:
    with pytest.raises(FeedError) as error:
        parse_opml(body, "subscriptions.opml", 100)
    assert "subscriptions.opml" in str(error.value)
    assert message in str(error.value)


def test_an_entity_expansion_bomb_is_refused_at_once() -> None:
    """Ten levels of ten: 3 GB of 'lol' if expanded. expat (2.4+) stops at its amplification limit; measured
    0.1 s and about 80 MiB at peak in a fresh process."""
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY e0 "lol">{entities}]><opml version="2.0">'
        '<head><title>&e9;</title></head><body><outline xmlUrl="https://x/f.xml"/></body></opml>'
    ).encode()
    started = time.monotonic()
    with pytest.raises(FeedError, match="bomb.opml is not an OPML document: malformed XML.*amplification"):
        parse_opml(bomb, "bomb.opml", 100)
    assert time.monotonic() - started < 5


def test_a_missing_file_is_named(tmp_path: Path, settings: Settings) -> None:
    missing = tmp_path / "nowhere.opml"
    with pytest.raises(FeedError, match=f"{missing} \\(OPML\\) does not exist"):
        read_opml(str(missing), settings)


def test_a_folder_is_not_an_opml_file(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(FeedError, match="could not be read"):
        read_opml(str(tmp_path), settings)


def test_a_missing_url_fails_with_its_status(server: FeedServer, settings: Settings) -> None:
    url = server.add("/gone.opml", status=404)
    with pytest.raises(FeedError, match=f"{url} \\(OPML\\) returned HTTP 404"):
        read_opml(url, settings)


def test_an_unparseable_url_is_a_feed_error(settings: Settings) -> None:
    with pytest.raises(FeedError, match="is not a valid URL"):
        read_opml("http://[::1/subscriptions.opml", settings)


def test_an_oversize_file_or_url_is_refused(server: FeedServer, tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path, max_feed_bytes=len(SUBSCRIPTIONS) - 1, allowed_networks=LOOPBACK)
    path = tmp_path / "big.opml"
    path.write_bytes(SUBSCRIPTIONS)
    url = server.add("/big.opml", SUBSCRIPTIONS)
    for source in (str(path), url):
        with pytest.raises(FeedError, match="larger than the .*-byte document limit") as error:
            read_opml(source, settings)
        assert source in str(error.value)
    # At the limit exactly, it is read.
    assert read_opml(str(path), settings.but(max_feed_bytes=len(SUBSCRIPTIONS))) == (FEEDS, None)
