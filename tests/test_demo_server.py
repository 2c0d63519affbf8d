"""The demo's tiny feed server: it serves the bundled feed, and a rerun's conditional GET gets 304."""

from __future__ import annotations

import requests

from flows.cli import DEMO_DIR
from flows.demo_server import serving
from tasks.feed import fetch_feed
from tasks.models import FeedValidators, Settings


def test_it_serves_the_demo_folder_and_answers_if_modified_since_with_304() -> None:
    with serving(DEMO_DIR) as base_url:
        response = requests.get(base_url + "feed.xml", timeout=5)
        assert response.status_code == 200
        assert response.content == (DEMO_DIR / "feed.xml").read_bytes()
        since = response.headers["Last-Modified"]
        again = requests.get(base_url + "feed.xml", headers={"If-Modified-Since": since}, timeout=5)
        assert again.status_code == 304 and again.content == b""
        assert requests.get(base_url + "missing.xml", timeout=5).status_code == 404


def test_podflow_reads_the_demo_feed_from_it_and_its_rerun_is_not_modified() -> None:
    settings = Settings.of(allowed_networks=("127.0.0.1/32",))
    with serving(DEMO_DIR) as base_url:
        fetched = fetch_feed(base_url + "feed.xml", settings, operator_url=True)
        assert fetched is not None
        feed, episodes = fetched
        assert feed.title == "The podflow Demo Show" and len(episodes) == 4
        assert requests.get(str(episodes[0].enclosure_url), timeout=5).content == (DEMO_DIR / "rivers.mp3").read_bytes()
        validators = FeedValidators(
            etag=feed.etag, last_modified=feed.last_modified, selection=settings.selection.key()
        )
        assert fetch_feed(base_url + "feed.xml", settings, validators, operator_url=True) is None
