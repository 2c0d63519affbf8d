"""Write output/: the folder podflow 0.1.0 (the release before readable folder names, commit a67fc90) left after
one run of feed.xml. A developer's tool, run once at that commit and committed: the tests copy the committed folder.

    git checkout a67fc90 && PYTHONPATH=. python tests/data/previous-release/write.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

from flows.ingest import ingest_feeds
from tasks.models import Settings
from tests.conftest import DEMO_DIR
from tests.feedserver import FeedServer

HERE = Path(__file__).parent

if __name__ == "__main__":
    output = HERE / "output"
    shutil.rmtree(output, ignore_errors=True)
    settings = Settings.of(output_dir=output, allowed_networks=("127.0.0.0/8",))
    with prefect_test_harness(server_startup_timeout=120), FeedServer() as server:
        for name in ("bees.mp3", "night-sky.mp3"):
            server.add(f"/{name}", (DEMO_DIR / name).read_bytes(), content_type="audio/mpeg")
        url = server.add("/feed.xml", (HERE / "feed.xml").read_bytes(), content_type="application/rss+xml")
        report = ingest_feeds([url], None, settings)
    print(report)
