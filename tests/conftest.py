"""Shared fixtures: a real HTTP server on 127.0.0.1, one Prefect test harness per run, the demo episodes."""

from __future__ import annotations

import os
import tempfile

# Before Prefect is imported anywhere: its own home, no analytics, quiet console.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="podflow-test-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
# The bundled models are converted for openai-whisper into a fresh cache, so every run tests the conversion.
os.environ["PODFLOW_CACHE"] = tempfile.mkdtemp(prefix="podflow-test-cache-")

import json  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Helper modules that assert on a test's behalf: pytest rewrites their asserts as it does a test module's.
pytest.register_assert_rewrite("tests.transcripts")

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from tasks.models import Settings  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parents[1] / "flows" / "demo"


@dataclass(frozen=True)
class DemoEpisode:
    slug: str
    title: str
    published: str
    script: str

    @property
    def audio(self) -> bytes:
        return (DEMO_DIR / f"{self.slug}.mp3").read_bytes()


DEMO_EPISODES = [DemoEpisode(**episode) for episode in json.loads((DEMO_DIR / "episodes.json").read_text())]


# Whole modules that run Whisper, subprocesses or a Prefect server; any test using the Prefect API is one too.
INTEGRATION_MODULES = {
    "test_transcribe",
    "test_long_episodes",
    "test_openai_transcribe",
    "test_ct2",
    "test_operate",
    "test_crash_resume",
    "test_cluster",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tests `integration`, so `make check` can leave them to `make test`."""
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module in INTEGRATION_MODULES or "prefect_api" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """The real Prefect engine against a temporary local API; it takes seconds to start, so once per run."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        yield feed_server


# Every test server listens on loopback, which podflow refuses unless an operator allows it.
LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.of(output_dir=tmp_path / "out", retry_backoff_s=0.01, allowed_networks=LOOPBACK)
