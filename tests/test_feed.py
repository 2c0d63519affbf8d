"""Feed fetching and parsing against a real HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.episode_id import enclosure_identity, guid_episode_id, normalise_url
from tasks.errors import FeedError
from tasks.feed import fetch_feed
from tasks.feed_parse import media_rank
from tasks.feed_run import FeedRun, register
from tasks.ledger_db import LEDGER
from tasks.models import FeedValidators, Settings
from tasks.store import FeedStore
from tests.conftest import DEMO_DIR, DEMO_EPISODES, LOOPBACK
from tests.feeds import page, rss, rss_item, serve_pages
from tests.feedserver import FeedServer


def test_demo_feed_parses_into_episodes_with_absolute_enclosures(server: FeedServer, settings: Settings) -> None:
    server.add_directory(DEMO_DIR)
    feed, episodes = fetch_feed(server.url("/feed.xml"), settings)

    assert feed.title == "The podflow Demo Show"
    assert [e.title for e in episodes] == [d.title for d in DEMO_EPISODES]
    first = episodes[0]
    assert first.episode_id == "podflow-demo-rivers"
    assert first.enclosure_url == server.url("/rivers.mp3")
    assert first.enclosure_type == "audio/mpeg"
    assert first.enclosure_length == len(DEMO_EPISODES[0].audio)
    assert first.published is not None and first.published.isoformat() == "2026-11-02T08:00:00+00:00"
    assert first.episode_number == 1
    assert first.itunes_duration_s == 14.0


def test_relative_urls_resolve_against_the_final_url_after_redirects(server: FeedServer, settings: Settings) -> None:
    server.add("/new/feed.xml", rss([rss_item("One", guid="g1", enclosure="media/one.mp3")]))
    server.add("/old/feed.xml", redirect_to=server.url("/new/feed.xml"))

    feed, [episode] = fetch_feed(server.url("/old/feed.xml"), settings)

    assert feed.url == server.url("/old/feed.xml")
    assert feed.final_url == server.url("/new/feed.xml")
    assert episode.enclosure_url == server.url("/new/media/one.mp3")


def test_every_podcast_transcript_link_is_kept(server: FeedServer, settings: Settings) -> None:
    links = (
        '<podcast:transcript url="t/one.vtt" type="text/vtt"/>'
        '<podcast:transcript url="https://cdn.example.org/one.json" type="application/json" language="en"/>'
    )
    url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("One", guid="g1", enclosure="one.mp3", extra=links),
                rss_item("Two", guid="g2", enclosure="two.mp3"),
            ]
        ),
    )

    _, (one, two) = fetch_feed(url, settings)

    assert [(t.url, t.type, t.language) for t in one.transcripts] == [
        (server.url("/t/one.vtt"), "text/vtt", None),
        ("https://cdn.example.org/one.json", "application/json", "en"),
    ]
    assert two.transcripts == ()


def test_an_episode_without_guid_keeps_its_id_when_title_and_query_string_change(
    server: FeedServer, settings: Settings
) -> None:
    before = server.add(
        "/before.xml",
        rss(
            [
                rss_item("Original title", enclosure="https://cdn.example.org/ep.mp3?a=1"),
                rss_item("Download one", enclosure="https://cdn.example.org/download.php?id=1"),
            ]
        ),
    )
    after = server.add(
        "/after.xml",
        rss(
            [
                rss_item("Renamed", enclosure="http://user:pw@CDN.example.org/ep.mp3?utm_source=feed&aid=rss&ts=99"),
                rss_item("Renamed too", enclosure="https://cdn.example.org/download.php?utm_medium=rss&id=1"),
            ]
        ),
    )
    other = server.add(
        "/other.xml",
        rss(
            [
                rss_item("Original title", enclosure="https://cdn.example.org/ep2.mp3?a=1"),
                rss_item("Download two", enclosure="https://cdn.example.org/download.php?id=2"),
            ]
        ),
    )

    [(_, first), (_, second), (_, third)] = [fetch_feed(url, settings) for url in (before, after, other)]

    assert [e.episode_id for e in first] == [e.episode_id for e in second]
    assert all(e.episode_id.startswith("sha256:") for e in first)
    # A file's query string is not its identity; a script's may be.
    assert not {e.episode_id for e in third} & {e.episode_id for e in first}


@pytest.mark.parametrize(
    ("path", "body", "route", "message"),
    [
        ("/gone.xml", b"", {"status": 404}, "returned HTTP 404"),
        ("/broken.xml", b"", {"status": 500}, "returned HTTP 500"),
        ("/page.html", b"<html><body><p>Welcome to my blog</p></body></html>", {}, "is not a podcast feed"),
        ("/empty.xml", b"", {}, "is not a podcast feed"),
        ("/huge.xml", rss([rss_item(f"Episode {i}", guid=str(i)) for i in range(4000)]), {}, "document limit"),
    ],
)
def test_bad_feeds_fail_with_the_url_and_the_reason(
    server: FeedServer, path: str, body: bytes, route: dict, message: str, tmp_path
) -> None:
    url = server.add(path, body, **route)
    with pytest.raises(FeedError) as error:
        fetch_feed(url, Settings.of(output_dir=tmp_path, max_feed_bytes=100_000, allowed_networks=LOOPBACK))
    assert url in str(error.value)
    assert message in str(error.value)


def test_an_unreachable_host_is_a_feed_error(settings: Settings) -> None:
    with FeedServer() as server:
        url = server.url("/feed.xml")
    with pytest.raises(FeedError, match=f"{url}: could not connect to 127.0.0.1:[0-9]+: connection refused"):
        fetch_feed(url, settings)


def test_one_malformed_item_does_not_take_the_feed_down(server: FeedServer, settings: Settings) -> None:
    url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("Bad URL", guid="bad", enclosure="http://[::1/broken.mp3"),
                rss_item("\x1b]0;pwned\x07Title\x1b[2J with \u202eoverride", guid="escapes", enclosure="ok.mp3"),
                rss_item("Fine", guid="fine", enclosure="fine.mp3"),
            ]
        ),
    )
    _, (bad, escapes, fine) = fetch_feed(url, settings)
    assert bad.enclosure_url == "http://[::1/broken.mp3"  # kept as written: that episode fails alone, saying so
    assert escapes.title == "]0;pwnedTitle[2J with override"
    assert fine.enclosure_url == server.url("/fine.mp3")


def test_a_gzip_encoded_feed_is_read(server: FeedServer, settings: Settings) -> None:
    body = rss([rss_item("Zipped", guid="z", enclosure="z.mp3")])
    url = server.add("/feed.xml", gzip.compress(body), headers={"Content-Encoding": "gzip"})
    feed, [episode] = fetch_feed(url, settings)
    assert (feed.title, episode.title) == ("Test Show", "Zipped")


def test_a_feed_cut_off_mid_item_keeps_the_items_before_the_cut(server: FeedServer, settings: Settings) -> None:
    body = rss([rss_item(f"Episode {i}", guid=str(i), enclosure=f"{i}.mp3") for i in range(3)])
    url = server.add("/feed.xml", body[: body.index(b"<item>", body.index(b"Episode 1"))] + b"<item><title>Epi")
    _, episodes = fetch_feed(url, settings)
    assert [e.title for e in episodes][:2] == ["Episode 0", "Episode 1"]


ENTITY_BOMB = """
import resource, sys
from tasks.feed_parse import parse_page
entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
bomb = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e0 "lol">{entities}]><rss version="2.0"><channel>'
        '<title>&e9;</title><item><title>x</title><enclosure url="http://x/a.mp3" type="audio/mpeg"/></item>'
        '</channel></rss>').encode()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
page = parse_page(bomb, "http://x/f.xml", "http://x/f.xml", {}, max_items=10)
print(len(page.feed.title), len(page.episodes), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.integration  # a subprocess
def test_an_entity_expansion_bomb_does_not_blow_up_memory() -> None:
    """Ten levels of ten: 3 GB of 'lol' if expanded. expat refuses the amplification; feedparser's fallback parser
    leaves the entity unexpanded. Measured: 61 MiB more at peak than before parsing."""
    result = subprocess.run(
        [sys.executable, "-c", ENTITY_BOMB], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1]
    )
    title_chars, episodes, peak_growth_mib = map(int, result.stdout.split())
    assert title_chars < 1_000_000 and episodes == 1
    assert peak_growth_mib < 256, f"peak RSS grew {peak_growth_mib} MiB"


def test_a_feed_without_a_title_is_named_by_its_url_without_its_token(server: FeedServer, settings: Settings) -> None:
    url = server.add("/private.xml", b'<rss version="2.0"><channel><item><title>x</title></item></channel></rss>')
    feed, _ = fetch_feed(url + "?token=SEKRIT", settings)
    assert feed.title == url + "?token=***"


def test_a_body_naming_a_local_file_is_not_read_as_that_file(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(rss([rss_item("Local secret", guid="local", enclosure="local.mp3")], title="Local Show"))
    url = server.add("/feed.xml", str(local).encode())

    with pytest.raises(FeedError, match="is not a podcast feed") as error:
        fetch_feed(url, settings)
    assert "Local" not in str(error.value)


DEV_ZERO = """
import resource, time
from tests.feedserver import FeedServer
from tasks.errors import FeedError
from tasks.feed import fetch_feed
from tasks.models import Settings
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))  # a reader of /dev/zero stops here
with FeedServer() as server:
    url = server.add("/feed.xml", b"/dev/zero")
    started = time.monotonic()
    try:
        fetch_feed(url, Settings.of(allowed_networks=("127.0.0.0/8",)))
    except FeedError as error:
        print(f"{time.monotonic() - started:.2f} {error}")
"""


@pytest.mark.integration  # a subprocess
def test_a_body_naming_dev_zero_is_a_quick_feed_error() -> None:
    """Once, the 9 bytes `/dev/zero` were opened as a file and read until 1.5 GiB; a child with bounded memory
    shows a regression as a MemoryError, not as a stalled machine."""
    result = subprocess.run(
        [sys.executable, "-c", DEV_ZERO], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1]
    )
    assert result.stdout, result.stderr[-1000:]
    seconds, message = result.stdout.split(" ", 1)
    assert float(seconds) < 5
    assert "is not a podcast feed" in message


def test_why_a_document_is_no_feed_is_said_without_quoting_it(server: FeedServer, settings: Settings) -> None:
    url = server.add("/feed.xml", b'<?xml version="1.0" encoding="leaked-canary"?><html>leaked-canary</html>')
    with pytest.raises(FeedError, match="is not a podcast feed") as error:
        fetch_feed(url, settings)
    assert "canary" not in str(error.value)


def test_parsing_fetches_nothing_the_document_names(server: FeedServer, settings: Settings) -> None:
    dtd, entity = server.add("/rss.dtd", b""), server.add("/entity.xml", b"pwned")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{dtd}" [<!ENTITY remote SYSTEM "{entity}">]>'
        '<rss version="2.0"><channel><title>Show &remote;</title>'
        '<item><title>One</title><guid>1</guid><enclosure url="one.mp3" type="audio/mpeg"/></item>'
        "</channel></rss>"
    ).encode()
    feed, [episode] = fetch_feed(server.add("/feed.xml", body), settings)
    assert "pwned" not in feed.title and episode.title == "One"
    assert [hit.path for hit in server.hits] == ["/feed.xml"]


@pytest.mark.parametrize(
    "namespace",
    [
        "https://podcastindex.org/namespace/1.0",
        "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md",  # most P2.0 feeds in the wild
        "http://podcastindex.org/namespace/1.0",
    ],
)
def test_transcripts_are_read_under_every_podcasting_2_namespace_uri(
    server: FeedServer, settings: Settings, namespace: str
) -> None:
    links = (
        '<podcast:transcript url="t/one.vtt" type="text/vtt" language="en" rel="captions"/>'
        '<podcast:transcript url="t/one.srt" type="application/x-subrip" language="en"/>'
        '<podcast:transcript url="t/one.json" type="application/json" language="es"/>'
    )
    body = rss([rss_item("One", guid="g1", enclosure="one.mp3", extra=links)])
    url = server.add("/feed.xml", body.replace(b"https://podcastindex.org/namespace/1.0", namespace.encode()))

    _, [episode] = fetch_feed(url, settings)

    assert [(t.url, t.type, t.language, t.rel) for t in episode.transcripts] == [
        (server.url("/t/one.vtt"), "text/vtt", "en", "captions"),
        (server.url("/t/one.srt"), "application/x-subrip", "en", None),
        (server.url("/t/one.json"), "application/json", "es", None),
    ]


def test_normalise_url_keeps_what_names_the_resource_and_drops_what_tracks_it() -> None:
    assert normalise_url(" HTTPS://CDN.Example.org/Show/Ep.MP3?b=2&utm_source=rss&a=1&fbclid=x#t=30 ") == (
        "https://cdn.example.org/Show/Ep.MP3?a=1&b=2"
    )
    assert normalise_url("http://[::1/broken.mp3") == "http://[::1/broken.mp3"


@pytest.mark.parametrize(
    ("one", "two"),
    [
        # A prefix-redirect service with the target in its query: the query is the episode.
        (
            "https://www.podtrac.com/pts/redirect.mp3?http://host.example/ep1.mp3",
            "https://www.podtrac.com/pts/redirect.mp3?http://host.example/ep2.mp3",
        ),
        (
            "https://www.podtrac.com/pts/redirect.mp3?dts.example.net/shows/ep1.mp3",
            "https://www.podtrac.com/pts/redirect.mp3?dts.example.net/shows/ep2.mp3",
        ),
        (
            "https://tracker.example/redirect.mp3?url=https%3A%2F%2Fhost.example%2Fep1.mp3",
            "https://tracker.example/redirect.mp3?url=https%3A%2F%2Fhost.example%2Fep2.mp3",
        ),
        # A script's query may be its identity.
        ("https://cdn.example.org/download.php?id=1", "https://cdn.example.org/download.php?id=2"),
    ],
)
def test_enclosure_identity_keeps_a_query_that_names_the_episode(one: str, two: str) -> None:
    assert enclosure_identity(one) != enclosure_identity(two)


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("https://cdn.example.org/ep.mp3?aid=rss&ts=99", "http://user:pw@CDN.example.org/ep.mp3?utm_source=x"),
        # podtrac's and chartable's path form: the target is in the path, the query is the host's rotation.
        (
            "https://dts.podtrac.com/redirect.mp3/chtbl.com/track/A1/traffic.megaphone.fm/ABC123.mp3?updated=1",
            "https://dts.podtrac.com/redirect.mp3/chtbl.com/track/A1/traffic.megaphone.fm/ABC123.mp3?updated=2",
        ),
        (
            "https://www.podtrac.com/pts/redirect.mp3?http://host.example/ep1.mp3",
            "https://WWW.podtrac.com/pts/redirect.mp3?http://host.example/ep1.mp3&utm_medium=rss",
        ),
    ],
)
def test_enclosure_identity_ignores_what_rotates(one: str, two: str) -> None:
    assert enclosure_identity(one) == enclosure_identity(two)


def test_podtrac_wrapped_episodes_without_guids_stay_apart(server: FeedServer, settings: Settings) -> None:
    url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item(
                    f"Episode {n}", enclosure=f"https://www.podtrac.com/pts/redirect.mp3?http://host.example/ep{n}.mp3"
                )
                for n in range(3)
            ]
        ),
    )
    _, episodes = fetch_feed(url, settings)
    assert len({e.episode_id for e in episodes}) == 3


TOKENIZED_GUIDS = ("https://host.example/ep/1?token=SECRET-ONE", "https://host.example/ep/1?token=SECRET-TWO")


def test_a_guid_holding_a_credential_is_masked_in_the_episode_id(server: FeedServer, settings: Settings) -> None:
    url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("One", guid=TOKENIZED_GUIDS[0], enclosure="1.mp3"),
                rss_item("Two", guid=TOKENIZED_GUIDS[1], enclosure="2.mp3"),
                rss_item("Plain", guid="https://host.example/ep/3", enclosure="3.mp3"),
            ]
        ),
    )
    _, (one, two, plain) = fetch_feed(url, settings)

    digest = hashlib.sha256(TOKENIZED_GUIDS[0].encode()).hexdigest()[:16]
    assert one.episode_id == f"https://host.example/ep/1?token=*** sha256:{digest}"
    assert two.episode_id != one.episode_id and "SECRET" not in two.episode_id
    assert plain.episode_id == "https://host.example/ep/3"
    assert guid_episode_id(one.episode_id) == one.episode_id  # today's ids are never re-keyed


def test_a_ledger_keyed_by_an_unmasked_guid_is_rekeyed_keeping_its_folder(
    server: FeedServer, settings: Settings
) -> None:
    url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("One", guid=TOKENIZED_GUIDS[0], enclosure="1.mp3"),
                rss_item("Plain", guid="plain", enclosure="2.mp3"),
            ]
        ),
    )
    feed, episodes = fetch_feed(url, settings)
    store = FeedStore.for_feed(settings.output.output_dir, url)
    # As podflow wrote it before GUIDs were masked.
    [old] = store.register([episodes[0].model_copy(update={"episode_id": TOKENIZED_GUIDS[0]})]).values()

    register(FeedRun(url, store, feed, episodes), settings)

    ledger = store.read_ledger()
    assert set(ledger.episodes) == {episodes[0].episode_id, "plain"}
    assert ledger.episodes[episodes[0].episode_id].folder == old.folder
    store.ledger.close()  # its write-ahead log checkpointed into the database
    assert b"SECRET" not in (store.feed_dir / LEDGER).read_bytes()


def with_media_rss(body: bytes) -> bytes:
    return body.replace(b'<rss version="2.0" ', b'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" ')


def test_audio_only_in_media_rss_is_the_episodes_audio(server: FeedServer, settings: Settings) -> None:
    group = (
        '<media:group><media:content url="b.m4a" type="audio/mp4" fileSize="20"/>'
        '<media:content url="b.mp3" type="audio/mpeg" fileSize="30" isDefault="true"/></media:group>'
    )
    url = server.add(
        "/feed.xml",
        with_media_rss(
            rss(
                [
                    rss_item(
                        "Media only", guid="a", extra='<media:content url="a.mp3" type="audio/mpeg" fileSize="10"/>'
                    ),
                    rss_item(
                        "Video beside audio", guid="b", enclosure="b.mp4", enclosure_type="video/mp4", extra=group
                    ),
                    rss_item("Typeless audio", guid="c", extra='<media:content url="c.mp3" medium="audio"/>'),
                ]
            )
        ),
    )
    _, episodes = fetch_feed(url, settings)
    assert [(e.enclosure_url, e.enclosure_type, e.enclosure_length) for e in episodes] == [
        (server.url("/a.mp3"), "audio/mpeg", 10),
        (server.url("/b.mp3"), "audio/mpeg", 30),  # the group's default rendition
        (server.url("/c.mp3"), None, None),
    ]


@pytest.mark.parametrize(
    ("media_type", "rank"),
    [
        ("audio/mpeg", 0),
        ("Audio/MP4; codecs=mp4a.40.2", 0),
        ("x-audio/mp3", 0),
        ("video/mp4", 1),
        ("video/x-m4v", 1),
        (None, 2),
        ("", 2),
        ("application/octet-stream", 2),
        ("application/ogg", 2),
        ("image/jpeg", None),
        ("text/html", None),
        ("text/plain", None),
        ("application/x-shockwave-flash", None),
        ("application/pdf", None),
        ("application/xhtml+xml", None),
        ("application/xml", None),
        ("application/json", None),
        ("application/rss+xml", None),
    ],
)
def test_media_rank_puts_audio_first_and_never_takes_a_document(media_type: str | None, rank: int | None) -> None:
    assert media_rank(media_type) == rank


def test_a_cover_image_is_never_taken_for_the_audio(server: FeedServer, settings: Settings) -> None:
    url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("Cover only", guid="a", enclosure="cover.jpg", enclosure_type="image/jpeg"),
                rss_item(
                    "Cover and file",
                    guid="b",
                    enclosure="cover.jpg",
                    enclosure_type="image/jpeg",
                    extra='<enclosure url="file.bin" type="application/octet-stream"/>',
                ),
                rss_item(
                    "Video and x-audio",
                    guid="c",
                    enclosure="c.mp4",
                    enclosure_type="video/mp4",
                    extra='<enclosure url="c.mp3" type="x-audio/mp3"/>',
                ),
            ]
        ),
    )
    _, (cover, file, audio) = fetch_feed(url, settings)
    assert (cover.enclosure_url, cover.enclosure_type) == (None, None)
    assert file.enclosure_url == server.url("/file.bin")
    assert audio.enclosure_url == server.url("/c.mp3")


def test_the_show_title_is_the_channels_own_not_a_live_items(server: FeedServer, settings: Settings) -> None:
    live = (
        '<podcast:liveItem status="live" start="2026-11-02T08:00:00Z"><title>LIVE NOW: Q&amp;A</title>'
        '<guid>live-1</guid><enclosure url="https://live.example/stream.mp3" type="audio/mpeg"/>'
        "</podcast:liveItem>"
    )
    url = server.add(
        "/feed.xml",
        rss(
            [
                "<image><url>https://example.org/cover.jpg</url></image>",  # resets feedparser's memory of the title
                live,
                rss_item("One", guid="g1", enclosure="one.mp3"),
            ]
        ),
    )
    feed, episodes = fetch_feed(url, settings)
    assert feed.title == "Test Show"
    assert [e.title for e in episodes] == ["One"]


def test_every_page_of_a_paged_feed_is_read_in_order(server: FeedServer, settings: Settings) -> None:
    url = serve_pages(
        server,
        [
            (
                "/feed.xml",
                page(
                    [rss_item("A", guid="a", enclosure="a.mp3"), rss_item("B", guid="b", enclosure="b.mp3")],
                    next_href="/archive/2.xml",
                ),
            ),
            ("/archive/2.xml", page([rss_item("C", guid="c", enclosure="c.mp3")], next_href="3.xml")),
            (
                "/archive/3.xml",
                page([rss_item("B again", guid="b", enclosure="b.mp3"), rss_item("D", guid="d", enclosure="d.mp3")]),
            ),
        ],
    )
    validators = FeedValidators(etag='"an older version"', last_modified=None, selection=settings.selection.key())

    feed, episodes = fetch_feed(url, settings, validators)

    assert [e.title for e in episodes] == ["A", "B", "C", "D"]
    assert episodes[2].enclosure_url == server.url("/archive/c.mp3")  # against its own page's URL
    assert feed.paging_error is None and feed.etag == server.routes["/feed.xml"].etag
    assert [("If-None-Match" in hit.headers, hit.path) for hit in server.hits] == [
        (True, "/feed.xml"),
        (False, "/archive/2.xml"),
        (False, "/archive/3.xml"),
    ]


def test_a_page_linking_back_ends_the_paging(server: FeedServer, settings: Settings) -> None:
    url = serve_pages(
        server,
        [
            ("/feed.xml", page([rss_item("A", guid="a", enclosure="a.mp3")], next_href="/2.xml")),
            ("/2.xml", page([rss_item("B", guid="b", enclosure="b.mp3")], next_href="/feed.xml")),
        ],
    )
    feed, episodes = fetch_feed(url, settings)
    assert [e.title for e in episodes] == ["A", "B"] and feed.paging_error is None
    assert [hit.path for hit in server.hits] == ["/feed.xml", "/2.xml"]


def test_paging_stops_at_max_feed_pages_saying_so(server: FeedServer, settings: Settings) -> None:
    url = serve_pages(
        server,
        [
            (
                f"/{n}.xml",
                page([rss_item(f"Episode {n}", guid=str(n), enclosure=f"{n}.mp3")], next_href=f"/{n + 1}.xml"),
            )
            for n in range(1, 5)
        ],
    )
    feed, episodes = fetch_feed(url, settings.but(max_feed_pages=2))
    assert [e.title for e in episodes] == ["Episode 1", "Episode 2"]
    assert feed.paging_error is not None and "max_feed_pages" in feed.paging_error
    assert server.count("/3.xml") == 0


def test_a_failing_page_keeps_the_pages_before_it_and_no_validators(server: FeedServer, settings: Settings) -> None:
    url = serve_pages(
        server,
        [
            ("/feed.xml", page([rss_item("A", guid="a", enclosure="a.mp3")], next_href="/2.xml")),
            ("/2.xml", page([rss_item("B", guid="b", enclosure="b.mp3")], next_href="/3.xml?token=SEKRIT")),
        ],
    )
    server.add("/3.xml", b"", status=500)

    feed, episodes = fetch_feed(url, settings)

    assert [e.title for e in episodes] == ["A", "B"]
    assert feed.paging_error is not None and "HTTP 500" in feed.paging_error
    assert "/3.xml?token=***" in feed.paging_error
    # A 304 next run would hide the episodes of the pages never read.
    store = FeedStore.for_feed(settings.output.output_dir, url)
    register(FeedRun(url, store, feed, episodes), settings)
    assert store.read_ledger().validators is None
    assert b"SEKRIT" not in (store.feed_dir / "feed.json").read_bytes()
