"""Pipeline wiring benchmark: podflow's stage wiring against a naive chained `.map` and the ideal, side by side.

Both variants run on the real Prefect engine with the same synthetic stages (sleeps of fixed length, untagged like
podflow's tasks when no stage limit exists; transcription bound to a capacity of 2, like the 2 cores it would
use); only the wiring differs. The ideal is the makespan of a zero-overhead pipeline with the same
durations and limits. Run: `.venv/bin/python bench/pipeline.py [--episodes 20]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="podflow-bench-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import wait  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from flows.pipeline import Stage, run_pipeline  # noqa: E402

STAGES = ("download", "transcribe", "metadata")


# Transcription is bound by the machine (2 cores here): however many run at once, only this many progress.
# Without it, a wiring that ignores the transcribe limit would look faster than any real machine allows.
TRANSCRIBE_CAPACITY = threading.Semaphore(2)


@dataclass(frozen=True)
class Span:
    episode: int
    stage: str
    start: float
    end: float


SPANS: list[Span] = []  # what every synthetic task did; list.append is atomic under the GIL


def _work(episode: int, stage: str, seconds: float) -> Span:
    start = time.perf_counter()
    if stage == "transcribe":
        with TRANSCRIBE_CAPACITY:
            time.sleep(seconds)
    else:
        time.sleep(seconds)
    span = Span(episode, stage, start, time.perf_counter())
    SPANS.append(span)
    return span


@task(name="download", cache_policy=NO_CACHE)
def fake_download(episode: int, seconds: float) -> Span:
    return _work(episode, "download", seconds)


@task(name="transcribe", cache_policy=NO_CACHE)
def fake_transcribe(episode: int, upstream: Span, seconds: float) -> Span:
    return _work(episode, "transcribe", seconds)


@task(name="metadata", cache_policy=NO_CACHE)
def fake_metadata(episode: int, upstream: Span, seconds: float) -> Span:
    return _work(episode, "metadata", seconds)


@dataclass(frozen=True)
class Workload:
    episodes: int
    seconds: Mapping[str, float]
    workers: Mapping[str, int]


@flow(name="bench-podflow-wiring")
def podflow_wiring(workload: Workload) -> None:
    s, w = workload.seconds, workload.workers

    def upstream_of(stage: str):  # the previous stage's finished future, as podflow's flow passes it
        return lambda episode, done: {"episode": episode, "upstream": done[stage], "seconds": s[STAGES[STAGES.index(stage) + 1]]}

    stages = [
        Stage("download", fake_download, w["download"], lambda e, done: {"episode": e, "seconds": s["download"]}),
        Stage("transcribe", fake_transcribe, w["transcribe"], upstream_of("download")),
        Stage("metadata", fake_metadata, w["metadata"], upstream_of("transcribe")),
    ]
    run_pipeline(list(range(workload.episodes)), stages)


@flow(name="bench-naive-map")
def naive_map(workload: Workload) -> None:
    s, episodes = workload.seconds, list(range(workload.episodes))
    with ThreadPoolTaskRunner(max_workers=sum(workload.workers.values())) as runner:
        downloads = runner.map(fake_download, {"episode": episodes, "seconds": s["download"]})
        transcripts = runner.map(fake_transcribe, {"episode": episodes, "upstream": downloads, "seconds": s["transcribe"]})
        documents = runner.map(fake_metadata, {"episode": episodes, "upstream": transcripts, "seconds": s["metadata"]})
        wait([*downloads, *transcripts, *documents])


def ideal_makespan(workload: Workload) -> float:
    """Zero-overhead pipeline: each stage a pool of identical workers taking episodes in upstream-finish order."""
    ready = [0.0] * workload.episodes
    for stage in STAGES:
        free = [0.0] * workload.workers[stage]
        finished = []
        for at in sorted(ready):
            worker = min(range(len(free)), key=free.__getitem__)
            free[worker] = max(free[worker], at) + workload.seconds[stage]
            finished.append(free[worker])
        ready = finished
    return max(ready)


def peak_overlap(spans: list[Span]) -> int:
    events = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


class ThreadSampler:
    """The most threads alive at once while the block runs."""

    def __enter__(self) -> ThreadSampler:
        self.peak, self._stop = threading.active_count(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, threading.active_count())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(name: str, variant: Any, workload: Workload, ideal: float) -> list[str]:
    SPANS.clear()
    with ThreadSampler() as threads:
        started = time.perf_counter()
        variant(workload)
        makespan = time.perf_counter() - started
    spans = list(SPANS)
    by_key = {(s.episode, s.stage): s for s in spans}
    handoffs = sorted(
        (by_key[(e, after)].start - by_key[(e, before)].end) * 1000
        for e in range(workload.episodes)
        for before, after in zip(STAGES, STAGES[1:])
    )
    peaks = [peak_overlap([s for s in spans if s.stage == stage]) for stage in STAGES]
    first_transcribe_wait = (by_key[(0, "transcribe")].start - by_key[(0, "download")].end) * 1000
    return [
        name, f"{makespan:.2f}", f"{makespan / ideal:.3f}",
        f"{statistics.median(handoffs):.0f}", f"{handoffs[int(0.95 * (len(handoffs) - 1))]:.0f}", f"{handoffs[-1]:.0f}",
        f"{first_transcribe_wait:.0f}",
        " / ".join(f"{p}≤{workload.workers[s]}" if p <= workload.workers[s] else f"[red]{p}>{workload.workers[s]}"
                   for p, s in zip(peaks, STAGES)),
        str(threads.peak),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    workload = Workload(
        episodes=args.episodes,
        seconds={"download": 0.3, "transcribe": 1.0, "metadata": 0.2},
        workers={"download": 4, "transcribe": 2, "metadata": 4},
    )
    ideal = ideal_makespan(workload)
    podflow_wiring(Workload(1, workload.seconds, workload.workers))  # start the ephemeral API outside the timings

    table = Table(title=f"{workload.episodes} episodes; stage seconds {dict(workload.seconds)}; "
                        f"limits {dict(workload.workers)}; ideal makespan {ideal:.2f} s")
    for column in ("wiring", "makespan s", "/ ideal", "handoff p50 ms", "p95 ms", "max ms",
                   "ep 0 download→transcribe ms", "peak running per stage", "threads"):
        table.add_column(column, justify="right")
    table.add_row(*measure("podflow (run_pipeline)", podflow_wiring, workload, ideal))
    table.add_row(*measure(f"naive .map, one pool of {sum(workload.workers.values())}", naive_map, workload, ideal))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
