"""What a stage's parameters cost its Prefect task run: the metadata stage's (the episode, the whole settings, the
audio record, and the transcript of its upstream task, with word timings) handed over as they are, and as
flows/pipeline.py's `task_call` hands them (the upstream's result read from its finished future, every value
quoted), for transcripts of several lengths, on the real Prefect engine and a local API.

Given as they are, Prefect walks every value twice per task run (its inputs collected, its futures resolved) and
fetches the upstream's result through its event loop thread. Each task run here is submitted alone and waited for,
so its time is its own: from submit to its final state, on the flow's thread.
Run: `.venv/bin/python bench/task_parameters.py [--minutes 0 10 60] [--runs 10]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="podflow-bench-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # 2 busy cores: 20 s may not do
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import PrefectFuture  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from flows.pipeline import task_call  # noqa: E402
from tasks.episode_folder import EpisodeFolder  # noqa: E402
from tasks.feed_run import FeedEpisode  # noqa: E402
from tasks.models import AudioFile, Episode, Feed, LedgerEntry, Settings, Transcript  # noqa: E402
from tasks.models.records import Segment, Word  # noqa: E402
from tasks.store import FeedStore  # noqa: E402

WORDS_PER_SEGMENT, SEGMENT_S = 12, 4.0  # about 180 words a minute
URL = "https://example.org/feed.xml"


def transcript(minutes: int) -> Transcript:
    segments = int(minutes * 60 / SEGMENT_S)
    return Transcript(
        episode_id="e",
        audio_sha256="0" * 64,
        backend="faster-whisper",
        model="tiny.en",
        language="en",
        audio_duration_s=minutes * 60.0,
        segments=tuple(
            Segment(
                start=n * SEGMENT_S,
                end=(n + 1) * SEGMENT_S,
                text=" word" * WORDS_PER_SEGMENT,
                words=tuple(
                    Word(start=n * SEGMENT_S + w / 3, end=n * SEGMENT_S + (w + 1) / 3, text=" word")
                    for w in range(WORDS_PER_SEGMENT)
                ),
            )
            for n in range(segments)
        ),
    )


def job(folder: Path) -> FeedEpisode:
    now = datetime.now(UTC)
    feed = Feed(url=URL, final_url=URL, title="A show", fetched_at=now)
    episode = Episode(episode_id="e", title="An episode", published=now)
    entry = LedgerEntry(episode_id="e", title=episode.title, folder="an-episode")
    return FeedEpisode(feed, FeedStore(folder, URL), episode, EpisodeFolder(path=folder, entry=entry), ("metadata",))


@task(cache_policy=NO_CACHE)
def heard(minutes: int) -> Transcript:
    return transcript(minutes)


@task(cache_policy=NO_CACHE)
def described(job: FeedEpisode, settings: Settings, audio: AudioFile, transcript: Transcript) -> int:
    return len(transcript.segments)


@flow(name="bench-task-parameters")
def task_run_seconds(minutes: int, runs: int, through_task_call: bool) -> list[float]:
    """Each of `runs` metadata-like task runs, submitted alone and waited for: seconds from submit to its end."""
    seconds = []
    with ThreadPoolTaskRunner(max_workers=1) as runner, tempfile.TemporaryDirectory() as folder:
        episode = job(Path(folder))
        audio = AudioFile(episode_id="e", path=episode.folder.file("audio"), source_url=URL, bytes=1, sha256="0" * 64)
        upstream: PrefectFuture[Transcript] = runner.submit(heard, {"minutes": minutes})
        upstream.wait()
        parameters = {"job": episode, "settings": Settings(), "audio": audio, "transcript": upstream}
        for _ in range(runs):
            started = time.perf_counter()
            given, inputs = task_call(parameters) if through_task_call else (parameters, None)
            future = runner.submit(described, given, dependencies=inputs)
            future.wait()
            seconds.append(time.perf_counter() - started)
            assert future.state.is_completed(), future.state
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, nargs="+", default=[0, 10, 60], help="transcript lengths")
    parser.add_argument("--runs", type=int, default=10, help="task runs a length and a way (default 10)")
    args = parser.parse_args()
    task_run_seconds(0, 1, True)  # start the ephemeral API outside the timings
    table = Table(title=f"The metadata stage's task run, parameters handed over two ways; median of {args.runs}")
    for column in ("transcript", "words", "as they are ms", "task_call ms", "saved ms"):
        table.add_column(column, justify="right")
    for minutes in args.minutes:
        plain = statistics.median(task_run_seconds(minutes, args.runs, False)) * 1000
        called = statistics.median(task_run_seconds(minutes, args.runs, True)) * 1000
        words = int(minutes * 60 / SEGMENT_S) * WORDS_PER_SEGMENT
        table.add_row(f"{minutes} min", f"{words:,}", f"{plain:.1f}", f"{called:.1f}", f"{plain - called:.1f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
