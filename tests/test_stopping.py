"""SIGTERM, as Prefect's cancel and a supervisor's stop send it, ends `podflow ingest` within seconds, in the middle
of parsing a feed and in the middle of hearing an episode, and the next run completes from what was left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.ledger_db import LEDGER
from tests.feeds import ATTRIBUTES_ON_ONE_ELEMENT, rss, rss_item
from tests.feedserver import FeedServer
from tests.ledgers import read_folder_ledger
from tests.long_episode import write_episode

ROOT = Path(__file__).resolve().parents[1]
STOPPED_WITHIN_S = 5.0  # the promised bound; podflow exits at most tasks/stopping.py's STOP_GRACE_S after the signal


def ingest(feed_url: str, output: Path, prefect_home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [str(Path(sys.executable).with_name("podflow")), "ingest", feed_url, "--output", str(output)]
    return subprocess.Popen(
        [*command, "--allow-network", "127.0.0.0/8"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while not condition():
        assert process.poll() is None, process.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.05)


def seconds_to_stop(process: subprocess.Popen[bytes]) -> float:
    assert process.poll() is None  # still at work: the signal lands mid-way
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("podflow ignored SIGTERM for a minute")
    return time.monotonic() - sent


@pytest.mark.integration  # three podflow processes
def test_sigterm_stops_a_run_mid_parse_and_mid_decode_within_seconds_and_the_next_run_completes(
    server: FeedServer, tmp_path: Path
) -> None:
    output, prefect_home = tmp_path / "out", tmp_path / "prefect"
    # feedparser takes minutes over this feed's attributes, within the default max_parse_s
    slow_feed = server.add("/slow.xml", ATTRIBUTES_ON_ONE_ELEMENT)
    run = ingest(slow_feed, output, prefect_home)
    wait_until(lambda: server.count("/slow.xml") > 0, run)
    time.sleep(1.0)  # the parse under way
    assert seconds_to_stop(run) < STOPPED_WITHIN_S

    write_episode(tmp_path / "long.mp3", 150, seed=3)
    server.add("/long.mp3", (tmp_path / "long.mp3").read_bytes())
    feed = server.add("/feed.xml", rss([rss_item("Long", guid="long", enclosure="long.mp3")]))
    run = ingest(feed, output, prefect_home)
    wait_until(lambda: any(output.glob("*/episodes/*/audio.mp3")), run)
    time.sleep(2.0)  # decoding and hearing
    assert seconds_to_stop(run) < STOPPED_WITHIN_S
    assert not any(output.glob("*/episodes/*/transcript.json"))  # it was stopped before the end

    run = ingest(feed, output, prefect_home)
    assert run.wait(timeout=600) == 0, run.communicate()[0].decode()[-3000:]
    (ledger_path,) = output.glob(f"*/{LEDGER}")
    (entry,) = read_folder_ledger(ledger_path.parent).episodes.values()
    assert entry.complete and entry.stages["transcribe"].status == "done"
    assert not [path for path in output.rglob("*") if path.name.endswith((".part", ".tmp"))]
    assert server.count("/long.mp3") == 1
