"""Credentials in feed and enclosure URLs (a private feed's password and tokens) never reach the output folder,
the Prefect API's logs, artifacts and states, or error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

from flows.feedserver import FeedServer
from flows.ingest import ingest_feed
from tasks.models import IngestReport, Settings
from tasks.redaction import redact_url, redact_urls
from tests.conftest import DEMO_EPISODES
from tests.feeds import rss, rss_item

PASSWORD, TOKEN = "pa55-w0rd-secret", "t0ken-secret-4711"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://me:pw@feeds.example.org/f.xml", "https://***@feeds.example.org/f.xml"),
    ("https://cdn.example.org/a.mp3?token=abc&episode=3", "https://cdn.example.org/a.mp3?token=***&episode=3"),
    ("https://x.org/a?X-Amz-Signature=abc&X-Amz-Date=1", "https://x.org/a?X-Amz-Signature=***&X-Amz-Date=1"),
    ("https://x.org/a?api_key=abc&accessKey=def&author=me&q=a%20b", "https://x.org/a?api_key=***&accessKey=***&author=me&q=a%20b"),
    ("https://x.org/a#access_token=abc", "https://x.org/a#access_token=***"),
    ("https://x.org/a.mp3?episode=3", "https://x.org/a.mp3?episode=3"),
])
def test_urls_are_shown_without_their_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_urls(f"GET {url}: failed, twice") == f"GET {shown}: failed, twice"


def test_bare_paths_in_library_messages_are_masked_too() -> None:
    message = "HTTPConnectionPool(host='cdn', port=80): Max retries exceeded with url: /a.mp3?token=abc (Caused by"
    assert redact_urls(message) == message.replace("token=abc", "token=***")


@pytest.mark.usefixtures("prefect_api")
def test_nothing_a_run_writes_or_reports_holds_a_credential(server: FeedServer, settings: Settings) -> None:
    demo = DEMO_EPISODES[0]
    server.add("/private/a.mp3", demo.audio)
    feed_path = server.add("/private/feed.xml", rss([
        rss_item("Good", guid="good", enclosure=f"a.mp3?token={TOKEN}"),
        rss_item("Gone", guid="gone", enclosure=f"gone.mp3?token={TOKEN}"),
        rss_item("Refused", guid="refused", enclosure=f"http://127.0.0.1:9/a.mp3?token={TOKEN}"),  # nothing listens
    ]))
    feed_url = feed_path.replace("http://", f"http://listener:{PASSWORD}@") + f"?auth={TOKEN}"

    state = ingest_feed(feed_url, settings, return_state=True)
    report = state.result(raise_on_failure=False)

    assert isinstance(report, IngestReport) and state.is_failed()
    assert [e.status for e in report.episodes] == ["complete", "failed", "failed"]
    written = {path: path.read_bytes() for path in Path(settings.output_dir).rglob("*") if path.is_file()}
    assert any(b"token=***" in body for body in written.values())  # the URLs are there, masked
    with get_client(sync_client=True) as client:
        flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[state.state_details.flow_run_id])))
        task_runs = client.read_task_runs(flow_run_filter=flow_run)
    reported = [state.message or "", report.model_dump_json(), *(log.message for log in logs),
                *(str(artifact.data) for artifact in artifacts), *(str(r.state.message) for r in task_runs if r.state)]
    assert any("gone.mp3?token=***" in text for text in reported)  # the failure names the URL, masked
    for secret in (PASSWORD, TOKEN):
        leaks = [str(path) for path, body in written.items() if secret.encode() in body or secret in str(path)]
        leaks += [text[:200] for text in reported if secret in text]
        assert leaks == [], secret
