"""Golden files: each tests/data/feeds/NAME.xml parses into what NAME.json beside it holds. No server.

`PODFLOW_REGOLD=1 .venv/bin/python -m pytest tests/test_golden_feeds.py` rewrites the JSON from today's parser;
read every changed value against the XML before keeping it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tasks.feed_parse import parse_page

FEEDS = Path(__file__).parent / "data" / "feeds"


def parsed(name: str) -> dict[str, Any]:
    """The parse of NAME.xml, as if fetched from https://feeds.example.com/NAME.xml, in the golden files' shape."""
    url = f"https://feeds.example.com/{name}.xml"
    page = parse_page((FEEDS / f"{name}.xml").read_bytes(), url, url, headers={}, max_items=1_000)
    feed, episodes = page.feed, page.episodes
    return {
        "title": feed.title,
        "episodes": [
            {
                "episode_id": episode.episode_id,
                "title": episode.title,
                "published": episode.published.isoformat() if episode.published else None,
                "enclosure_url": episode.enclosure_url,
                "enclosure_type": episode.enclosure_type,
                "itunes_duration_s": episode.itunes_duration_s,
                "transcripts": [transcript.model_dump() for transcript in episode.transcripts],
            }
            for episode in episodes
        ],
    }


@pytest.mark.parametrize("name", sorted(path.stem for path in FEEDS.glob("*.xml")))
def test_a_feed_parses_as_its_golden_file(name: str) -> None:
    golden = FEEDS / f"{name}.json"
    if os.environ.get("PODFLOW_REGOLD"):
        golden.write_text(json.dumps(parsed(name), indent=2, ensure_ascii=False) + "\n")
    assert parsed(name) == json.loads(golden.read_text())
