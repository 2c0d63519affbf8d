"""Credentials in feed and enclosure URLs (a private feed's password and tokens) never reach the output folder,
the Prefect API's logs, artifacts and states, or error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from flows.ingest import ingest_feed
from tasks.errors import FeedError
from tasks.folder_names import previous_feed_folder_name, slugify
from tasks.models import IngestReport, Ledger, Settings
from tasks.redaction import redact_url, redact_urls
from tests.conftest import DEMO_EPISODES
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer

PASSWORD, TOKEN = "pa55-w0rd-secret", "t0ken-secret-4711"
PATH_TOKEN = "aB3dE5gH7jK9mN1pQ3rS5tU7"  # a private feed's token in its path, as some hosts give them
RANDOM_VALUE, SHA1, PRIVATE = "Zq81mWx04bLr7TeY", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "s3cr3t-feed"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://me:pw@feeds.example.org/f.xml", "https://***@feeds.example.org/f.xml"),
        ("https://cdn.example.org/a.mp3?token=abc&episode=3", "https://cdn.example.org/a.mp3?token=***&episode=3"),
        ("https://x.org/a?X-Amz-Signature=abc&X-Amz-Date=1", "https://x.org/a?X-Amz-Signature=***&X-Amz-Date=1"),
        (
            "https://x.org/a?api_key=abc&accessKey=def&author=me&q=a%20b",
            "https://x.org/a?api_key=***&accessKey=***&author=me&q=a%20b",
        ),
        ("https://x.org/a#access_token=abc", "https://x.org/a#access_token=***"),
        ("https://x.org/a.mp3?episode=3", "https://x.org/a.mp3?episode=3"),
        ("https://me:p@ss@feeds.example.org/f.xml", "https://***@feeds.example.org/f.xml"),  # an @ in the password
        (
            "https://x.org/a?accesstoken=a&authtoken=b&privatekey=c&feedtoken=d&keyword=e",
            "https://x.org/a?accesstoken=***&authtoken=***&privatekey=***&feedtoken=***&keyword=e",
        ),  # run-together names
        ("https://x.org/a;jsessionid=abc", "https://x.org/a;jsessionid=***"),
    ],
)
def test_urls_are_shown_without_their_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_urls(f"GET {url}: failed, twice") == f"GET {shown}: failed, twice"


def test_bare_paths_in_library_messages_are_masked_too() -> None:
    message = "HTTPConnectionPool(host='cdn', port=80): Max retries exceeded with url: /a.mp3?token=abc (Caused by"
    assert redact_urls(message) == message.replace("token=abc", "token=***")


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/feeds/3f9a8b7c6d5e4f3a2b1c0d9e/rss", "3f9a8b7c6d5e4f3a2b1c0d9e"),  # hex
        (f"/private/{PATH_TOKEN}/feed.xml", PATH_TOKEN),
        (
            "/feed/podcast/123456/private/0a1b2c3d-4e5f-6789-abcd-ef0123456789.rss",
            "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        ),
        ("/m/aB3dE5-gH7jK9_mN1pQ3rS5tU7/a.mp3", "aB3dE5-gH7jK9_mN1pQ3rS5tU7"),  # base64url, split by - and _
        ("/m/AB3DE5GH7JK9MN1PQ3RS5TU7XZ?token=abc", "AB3DE5GH7JK9MN1PQ3RS5TU7XZ"),
    ],
)
def test_tokens_in_a_url_path_are_masked_everywhere_the_url_goes(path: str, token: str) -> None:
    url, shown = f"https://feeds.example.org{path}", f"https://feeds.example.org{path.replace(token, '***')}"
    shown = shown.replace("token=abc", "token=***")
    assert redact_url(url) == shown
    assert str(FeedError(f"{url} returned HTTP 404")) == f"{shown} returned HTTP 404"
    bare = shown.removeprefix("https://feeds.example.org")  # as urllib3 names it
    assert redact_urls(f"with url: {path} (Caused by") == f"with url: {bare} (Caused by"
    assert token not in Ledger(feed_url=url).model_dump_json()
    previous_name = previous_feed_folder_name(url)  # today's names are the show's title, or its host
    assert slugify(token) not in previous_name and "token" not in previous_name


@pytest.mark.parametrize(
    "url",
    [
        "https://x.org/shows/episode-2026-11-20-title/audio.mp3",
        "https://x.org/my-podcast-episode-12/feed.xml",
        "https://x.org/s01e02-the-pilot-of-the-series.mp3",
        "https://x.org/Ep12-Interview-With-Someone-Famous.mp3",
        "https://x.org/media/128kbps_stereo_episode_42_final_mix.mp3",
        "https://x.org/TheDailyShowWithSomeoneFamous/e/abc123/12345678901234567890123.mp3",  # words, short id, number
        "https://3f9a8b7c6d5e4f3a2b1c0d9e.cdn.example.org/a.mp3",  # a host is no path (and not caught)
        # podflow's own folders, as messages name them: a 16-hex hash is no token
        "/out/feeds-example-org-show-rss-xml-3f9a8b7c6d5e4f3a/episodes/2026-11-02-weekly-update-0123456789abcdef/a.mp3",
        "/out/the-weekly-show-3f9a8b/episodes/2026-11-02-weekly-update-0123ab/a.mp3",
    ],
)
def test_ordinary_paths_slugs_dates_ids_and_file_names_are_kept(url: str) -> None:
    assert redact_urls(url) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://x.org/f.xml?private=s3cr3t", "https://x.org/f.xml?private=***"),
        ("https://x.org/f.xml?access=abc&hash=def", "https://x.org/f.xml?access=***&hash=***"),
        (f"https://x.org/f.xml?k={RANDOM_VALUE}", "https://x.org/f.xml?k=***"),  # random-looking, whatever the name
        ("https://x.org/f.xml?p=Vb3nQ7%2BxL0aR9kT2mE5w%3D", "https://x.org/f.xml?p=***"),  # base64, percent-encoded
        (f"https://x.org/a.mp3?id={SHA1}", "https://x.org/a.mp3?id=***"),
        ("https://x.org/a.mp3?u=0a1b2c3d-4e5f-6789-abcd-ef0123456789", "https://x.org/a.mp3?u=***"),
        ("https://x.org/?p=123&v=1.2.3-beta4&t=2026-11-20", "https://x.org/?p=123&v=1.2.3-beta4&t=2026-11-20"),
        ("https://x.org/a.mp3?utm_campaign=spring2026sale", "https://x.org/a.mp3?utm_campaign=spring2026sale"),
    ],
)
def test_query_values_are_masked_by_their_name_or_their_look(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://www.narro.co/article/54e703933058540300000069",  # MongoDB ObjectIds: a time, then a counter
        "https://x.org/episodes/507f1f77bcf86cd799439011/audio.mp3",
        "https://x.org/a.mp3?episode=5f3c9a1e2b7d4c0012ab34cd",
    ],
)
def test_database_ids_stay_readable(url: str) -> None:
    assert redact_urls(url) == url


@pytest.mark.timeout(60)  # each text is 2 MB: a quadratic pattern would take hours, a linear one well under a second
@pytest.mark.parametrize(
    "text",
    [
        "x?" + ";" * 2_000_000,
        "https://x.org/?" + "a" * 2_000_000,
        "?a" * 1_000_000,
        "&a=" * 700_000,
        "x?a=" + "." * 2_000_000,
        "://" + "a" * 2_000_000,
        "://" + "@:" * 1_000_000,
        "/" + "a1" * 1_000_000,
        "/" + "a-" * 1_000_000,
        "/a" * 1_000_000,
    ],
)
def test_masking_a_strangers_text_takes_time_linear_in_its_length(text: str) -> None:
    masked = redact_urls(text)
    assert len(masked) <= len(text) + 3 and masked.count("***") <= len(text) // 3 + 1


@pytest.mark.usefixtures("prefect_api")
def test_nothing_a_run_writes_or_reports_holds_a_credential(server: FeedServer, settings: Settings) -> None:
    demo = DEMO_EPISODES[0]
    server.add(f"/private/{PATH_TOKEN}/a.mp3", demo.audio)
    feed_path = server.add(
        f"/private/{PATH_TOKEN}/feed.xml",
        rss(
            [
                rss_item("Good", guid="good", enclosure=f"a.mp3?token={TOKEN}"),
                rss_item("Gone", guid="gone", enclosure=f"gone.mp3?token={TOKEN}"),
                rss_item(
                    "Refused", guid="refused", enclosure=f"http://127.0.0.1:9/a.mp3?token={TOKEN}"
                ),  # nothing listens
                rss_item("Keyed", guid="keyed", enclosure=f"gone.mp3?k={RANDOM_VALUE}&id={SHA1}"),  # secret by look
            ]
        ),
    )
    feed_url = feed_path.replace("http://", f"http://listener:{PASSWORD}@") + f"?auth={TOKEN}&private={PRIVATE}"

    state = ingest_feed(feed_url, settings, return_state=True)
    report = state.result(raise_on_failure=False)

    assert isinstance(report, IngestReport) and state.is_failed()
    assert [e.status for e in report.episodes] == ["complete", "failed", "failed", "failed"]
    written = {path: path.read_bytes() for path in Path(settings.output.output_dir).rglob("*") if path.is_file()}
    assert any(b"token=***" in body for body in written.values())  # the URLs are there, masked
    with get_client(sync_client=True) as client:
        flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
        task_runs = client.read_task_runs(flow_run_filter=flow_run)
    reported = [
        state.message or "",
        report.model_dump_json(),
        *(log.message for log in logs),
        *(str(artifact.data) for artifact in artifacts),
        *(str(r.state.message) for r in task_runs if r.state),
        *(r.name for r in task_runs),
    ]
    assert any("gone.mp3?token=***" in text for text in reported)  # the failure names the URL, masked
    for secret in (PASSWORD, TOKEN, PATH_TOKEN, slugify(PATH_TOKEN), RANDOM_VALUE, SHA1, PRIVATE):
        leaks = [str(path) for path, body in written.items() if secret.encode() in body or secret in str(path)]
        leaks += [text[:200] for text in reported if secret in text]
        assert leaks == [], secret
