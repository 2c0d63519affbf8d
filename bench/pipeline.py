"""Pipeline benchmark: podflow's stage wiring against a naive Prefect `.map`, the original design and the ideal,
side by side in one run, on synthetic stages of controlled duration.

- podflow: `flows.pipeline.run_pipeline`, the code the product runs, with the stage functions swapped for
  synthetic ones.
- naive map: `download.map` -> `transcribe.map` -> `metadata.map` on one ThreadPoolTaskRunner sized to the sum of
  the stage limits.
- original design (docs/design.md): a download thread pool; one transcription thread fed by
  a queue, running transcriptions one after another, each followed inline by its metadata.
- ideal: the makespan of a zero-overhead pipeline with the same durations and limits, each stage a pool of
  workers taking episodes in the order their upstream stage finished them (a discrete-event simulation).

I/O-like stages sleep; in the transcription-bound workload, transcription burns CPU (hashing, which releases the
GIL as real inference does). Transcription is capped at 2 running at once in every variant, like the 2 cores it
would use here, so a wiring that ignores the limit cannot look faster than a real machine allows.

With --cluster, transcription on a Dask cluster (tasks/transcribe/cluster.py) against today's local stage, in one
run, on a real local cluster of separate processes (tests/dask_cluster.py: a `dask scheduler` and plain
`dask worker --nthreads 1 --resources transcribe=1` processes, started and stopped by PID):
- podflow, cluster: the same `run_pipeline` wiring, whose transcribe stage task (two threads a slot, as
  flows/ingest.py sizes it from cluster_slots with stage_workers) does what the product does minus Whisper:
  `Client.submit(fn, seconds, resources={"transcribe": 1}, pure=False)` and waits for the result. `fn` sleeps the
  episode's transcription seconds on the worker. The transcribe spans are the worker's, so "peak running" counts
  what ran on the workers at once and the handoffs include the trip to the worker and back.
- dispatch: per transcription, from just before `submit` in the stage task (or, where it waited for the slot,
  from the end of the worker's previous one) to the first line of `fn` on the worker; return: from the last line
  of `fn` to `result()` returning in the stage task. Both by time.time() on either side (one machine, one clock).
- throughput curve: 1, 2 and 4 workers of one slot each. The transcriptions SLEEP rather than compute: this
  machine has 2 cores, so computing ones would measure CPU contention; sleeping ones show how dispatch scales.
With --baseline PATH, the podflow rows of the chosen workloads only, from this checkout and from the one at PATH
(this script, that checkout's run_pipeline), each in a fresh process with its own Prefect API, taking turns
--repeats times: on a shared machine, load that comes and goes then falls on both alike. The medians are compared.
Run: `.venv/bin/python bench/pipeline.py [--chart bench/out/pipeline-gantt.png] [--workloads NAME ...] [--cluster
[--episodes 100 1000] [--curve-scale 1]] [--baseline PATH [--repeats 3]]` (bench/out/ is ignored by git; the
docs' picture is docs/images/pipeline-gantt.png).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="podflow-bench-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # 2 busy cores: 20 s may not do
# --baseline runs this script again on another checkout's code: the child finds that checkout here.
CHECKOUT_VARIABLE = "PODFLOW_BENCH_CHECKOUT"
sys.path.insert(0, os.environ.get(CHECKOUT_VARIABLE) or str(Path(__file__).resolve().parents[1]))

import distributed  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import wait  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from flows.pipeline import Stage, run_pipeline  # noqa: E402
from tasks.transcribe.cluster import stage_workers  # noqa: E402
from tasks.transcribe.cluster_worker import RESOURCE  # noqa: E402
from tests.dask_cluster import DASK_WORKER, DASK_WORKER_OPTIONS, DaskProcesses, dask_cluster, stop  # noqa: E402

STAGES = ("download", "transcribe", "metadata")
LIMITS = {"download": 4, "transcribe": 2, "metadata": 4}
TRANSCRIBE_CAPACITY = threading.Semaphore(LIMITS["transcribe"])
BURN_BLOCK = os.urandom(1 << 20)


@dataclass(frozen=True)
class Workload:
    name: str
    seconds: tuple[tuple[float, float, float], ...]  # per episode: download, transcribe, metadata
    burn: bool = False  # transcription burns CPU instead of sleeping
    transcribe_limit: int = LIMITS["transcribe"]  # on a cluster: its slots

    @property
    def limits(self) -> dict[str, int]:
        return LIMITS | {"transcribe": self.transcribe_limit}

    @property
    def episodes(self) -> int:
        return len(self.seconds)


def uniform(
    name: str,
    episodes: int,
    download: float,
    transcribe: float,
    metadata: float,
    burn: bool = False,
    first_download: float | None = None,
) -> Workload:
    seconds = [(download, transcribe, metadata)] * episodes
    if first_download is not None:
        seconds[0] = (first_download, transcribe, metadata)
    return Workload(name, tuple(seconds), burn)


@dataclass(frozen=True)
class Span:
    episode: int
    stage: str
    start: float
    end: float
    worker: str


@dataclass
class Recorder:
    spans: list[Span] = field(default_factory=list)  # list.append is atomic under the GIL
    burn: bool = False
    remote: list[tuple[str, float, float, float]] = field(default_factory=list)  # worker, submitted, started, ended
    returns: list[float] = field(default_factory=list)  # s, fn ends on the worker -> result() in the stage task
    client: distributed.Client | None = None  # the cluster's, while its rows run
    # Wall clock -> this process's perf_counter, read once a run: read per call, a thread switch between the two
    # reads shifts a span by milliseconds, as much as the gap between two transcriptions on a worker.
    clock: float = 0.0


RECORDER = Recorder()


def _work(episode: int, stage: str, seconds: float) -> Span:
    start = time.perf_counter()
    if stage != "transcribe":
        time.sleep(seconds)
    else:
        with TRANSCRIBE_CAPACITY:
            if RECORDER.burn:
                cpu_started = time.thread_time()
                while time.thread_time() - cpu_started < seconds:
                    hashlib.sha256(BURN_BLOCK).digest()
            else:
                time.sleep(seconds)
    span = Span(episode, stage, start, time.perf_counter(), threading.current_thread().name)
    RECORDER.spans.append(span)
    return span


@task(name="download", cache_policy=NO_CACHE)
def fake_download(episode: int, seconds: float) -> Span:
    return _work(episode, "download", seconds)


@task(name="transcribe", cache_policy=NO_CACHE)
def fake_transcribe(episode: int, upstream: Span, seconds: float) -> Span:
    return _work(episode, "transcribe", seconds)


def synthetic_transcription(seconds: float) -> tuple[float, float, str]:
    """Runs on a Dask worker: a transcription minus Whisper. Its start and end by the wall clock, and the worker."""
    started = time.time()
    time.sleep(seconds)
    return started, time.time(), distributed.get_worker().name


@task(name="transcribe", cache_policy=NO_CACHE)
def cluster_transcribe(episode: int, upstream: Span, seconds: float) -> Span:
    """What tasks/transcribe/cluster.py does, minus Whisper: submit to a worker with a transcribe slot, wait."""
    assert RECORDER.client is not None, "no cluster"
    submitted = time.time()
    future = RECORDER.client.submit(synthetic_transcription, seconds, resources={RESOURCE: 1}, pure=False)
    started, ended, worker = future.result()
    RECORDER.returns.append(time.time() - ended)
    future.release()
    RECORDER.remote.append((worker, submitted, started, ended))
    span = Span(episode, "transcribe", started - RECORDER.clock, ended - RECORDER.clock, f"dask {worker}")
    RECORDER.spans.append(span)
    return span


@task(name="metadata", cache_policy=NO_CACHE)
def fake_metadata(episode: int, upstream: Span, seconds: float) -> Span:
    return _work(episode, "metadata", seconds)


@flow(name="bench-podflow-wiring")
def podflow_wiring(workload: Workload, on_cluster: bool = False) -> None:
    s = workload.seconds
    stages: list[Stage[int]] = [
        Stage("download", fake_download, LIMITS["download"], lambda e, done: {"episode": e, "seconds": s[e][0]}),
        Stage(
            "transcribe",
            cluster_transcribe if on_cluster else fake_transcribe,
            stage_workers(workload.transcribe_limit) if on_cluster else workload.transcribe_limit,
            lambda e, done: {"episode": e, "upstream": done["download"], "seconds": s[e][1]},
            after=("download",),
        ),
        Stage(
            "metadata",
            fake_metadata,
            LIMITS["metadata"],
            lambda e, done: {"episode": e, "upstream": done["transcribe"], "seconds": s[e][2]},
            after=("transcribe",),
        ),
    ]
    run_pipeline(list(range(workload.episodes)), stages)


@flow(name="bench-naive-map")
def naive_map(workload: Workload) -> None:
    episodes, s = list(range(workload.episodes)), workload.seconds
    with ThreadPoolTaskRunner(max_workers=sum(LIMITS.values())) as runner:
        downloads = runner.map(fake_download, {"episode": episodes, "seconds": [x[0] for x in s]})
        transcripts = runner.map(
            fake_transcribe, {"episode": episodes, "upstream": downloads, "seconds": [x[1] for x in s]}
        )
        documents = runner.map(
            fake_metadata, {"episode": episodes, "upstream": transcripts, "seconds": [x[2] for x in s]}
        )
        wait([*downloads, *transcripts, *documents])


def original_design(workload: Workload) -> None:
    """Downloads on a pool; each finished download queued for the one transcription thread, which also writes the
    metadata right after each transcription."""
    jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def transcriber() -> None:
        while (episode := jobs.get()) is not None:
            _work(episode, "transcribe", workload.seconds[episode][1])
            _work(episode, "metadata", workload.seconds[episode][2])

    def download(episode: int) -> None:
        _work(episode, "download", workload.seconds[episode][0])
        jobs.put(episode)

    transcription = threading.Thread(target=transcriber, name="transcription")
    transcription.start()
    with ThreadPoolExecutor(LIMITS["download"], thread_name_prefix="download") as pool:
        list(pool.map(download, range(workload.episodes)))
    jobs.put(None)
    transcription.join()


def podflow_on_cluster(workload: Workload) -> None:
    podflow_wiring(workload, on_cluster=True)


def ideal_makespan(workload: Workload) -> float:
    """Zero-overhead pipeline: each stage a pool of identical workers taking episodes in upstream-finish order."""
    ready = [0.0] * workload.episodes
    for index, stage in enumerate(STAGES):
        free = [0.0] * workload.limits[stage]
        finished = [0.0] * workload.episodes
        for episode in sorted(range(workload.episodes), key=ready.__getitem__):
            worker = min(range(len(free)), key=free.__getitem__)
            free[worker] = max(free[worker], ready[episode]) + workload.seconds[episode][index]
            finished[episode] = free[worker]
        ready = finished
    return max(ready)


def peak_overlap(spans: Sequence[Span]) -> int:
    events = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def reset_peak_rss() -> None:
    """Linux: start the VmHWM (peak resident memory) count afresh, so each variant reports its own peak."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


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


@dataclass(frozen=True)
class Result:
    variant: str
    makespan: float
    spans: list[Span]
    threads: int
    rss_mib: float
    dispatch: list[float]
    returns: list[float]


def dispatch_delays(remote: Sequence[tuple[str, float, float, float]]) -> list[float]:
    """Per transcription, how long a worker's slot could have run it and did not: from its submit, or from the end
    of the slot's previous transcription if that came later (it waited for the slot), to its start."""
    delays: list[float] = []
    free_at: dict[str, float] = {}
    for worker, submitted, started, ended in sorted(remote, key=lambda call: call[2]):
        delays.append(started - max(submitted, free_at.get(worker, submitted)))
        free_at[worker] = ended
    return delays


def measure(variant: str, run: Callable[[Workload], None], workload: Workload) -> Result:
    RECORDER.spans, RECORDER.burn, RECORDER.remote, RECORDER.returns = [], workload.burn, [], []
    RECORDER.clock = time.time() - time.perf_counter()
    reset_peak_rss()
    with ThreadSampler() as threads:
        started = time.perf_counter()
        run(workload)
        makespan = time.perf_counter() - started
    dispatch = dispatch_delays(RECORDER.remote)
    return Result(variant, makespan, RECORDER.spans, threads.peak, peak_rss_mib(), dispatch, RECORDER.returns)


def percentile_ms(seconds: Sequence[float], fraction: float) -> str:
    """The value below which `fraction` of them lie, nearest rank, in ms; "-" when there are none."""
    if not seconds:
        return "-"
    ordered = sorted(seconds)
    return f"{ordered[int(fraction * (len(ordered) - 1))] * 1000:.1f}"


def row(result: Result, workload: Workload, ideal: float) -> list[str]:
    by_key = {(s.episode, s.stage): s for s in result.spans}
    handoffs = sorted(
        (by_key[(e, after)].start - by_key[(e, before)].end) * 1000
        for e in range(workload.episodes)
        for before, after in zip(STAGES, STAGES[1:])
    )
    peaks = [peak_overlap([s for s in result.spans if s.stage == stage]) for stage in STAGES]
    limits = workload.limits
    return [
        result.variant,
        f"{result.makespan:.2f}",
        f"{result.makespan / ideal:.3f}",
        f"{statistics.median(handoffs):.0f}",
        f"{handoffs[int(0.95 * (len(handoffs) - 1))]:.0f}",
        f"{handoffs[-1]:.0f}",
        " / ".join(
            f"{p}≤{limits[s]}" if p <= limits[s] else f"[red]{p}>{limits[s]}[/red]" for p, s in zip(peaks, STAGES)
        ),
        str(result.threads),
        f"{result.rss_mib:.0f}",
    ]


# (workload, whether the naive map runs it too). Shorter stages at 1,000 keep `make bench` under 10 minutes;
# they also make the orchestration cost a larger share than real transcriptions (minutes each) would.
WORKLOADS = [
    (uniform("20 equal", 20, 0.3, 1.0, 0.2), True),
    (uniform("100 equal", 100, 0.1, 0.4, 0.08), True),
    (uniform("1,000 equal", 1000, 0.006, 0.03, 0.006), False),  # 3,000 tasks queued on one pool take minutes
    (uniform("20 skewed: episode 0 downloads for 8 s", 20, 0.3, 1.0, 0.2, first_download=8.0), True),
    (uniform("20 transcription-bound (CPU)", 20, 0.1, 1.0, 0.05, burn=True), True),
]


def gantt(results: Sequence[Result], workload: Workload, path: Path) -> None:
    """One panel per variant, one row per stage worker, one bar per episode and stage, on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"download": "#4c78a8", "transcribe": "#f58518", "metadata": "#54a24b"}
    figure, axes = plt.subplots(len(results), 1, figsize=(12, 3.2 * len(results)), sharex=True)
    for axis, result in zip(axes, results):
        origin = min(s.start for s in result.spans)
        rows = sorted({(STAGES.index(s.stage), s.worker) for s in result.spans})
        for span in result.spans:
            y = rows.index((STAGES.index(span.stage), span.worker))
            axis.barh(y, span.end - span.start, left=span.start - origin, color=colours[span.stage], edgecolor="white")
        labels = [
            f"{STAGES[stage]} {sum(1 for earlier, _ in rows[:n] if earlier == stage) + 1}"
            for n, (stage, _) in enumerate(rows)
        ]
        axis.set_yticks(range(len(rows)), labels, fontsize=7)
        axis.invert_yaxis()
        axis.set_title(f"{result.variant}: {result.makespan:.1f} s", loc="left", fontsize=10)
    axes[-1].set_xlabel(f"seconds ({workload.name} episodes; ideal {ideal_makespan(workload):.1f} s)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


ROW_COLUMNS = (
    "wiring",
    "makespan s",
    "/ ideal",
    "handoff p50 ms",
    "p95 ms",
    "max ms",
    "peak running per stage",
    "threads",
    "peak RSS MiB",
)


def reference(episodes: int, scale: float, transcribe_limit: int = LIMITS["transcribe"]) -> Workload:
    """The reference workload: 0.3 s download, 1.0 s transcription, 0.2 s metadata per episode, times `scale`."""
    d, t, m = 0.3 * scale, 1.0 * scale, 0.2 * scale
    workload = uniform(f"{episodes:,} × {d:.3g} / {t:.3g} / {m:.3g} s", episodes, d, t, m)
    return Workload(workload.name, workload.seconds, transcribe_limit=transcribe_limit)


def resize(cluster: DaskProcesses, workers: int, timeout_s: float = 120.0) -> None:
    """Start or stop (by PID) workers of one slot until the cluster has `workers`, and wait until it says so."""
    while len(cluster.workers) < workers:
        cluster.start_worker(f"w{len(cluster.workers) + 1}", DASK_WORKER_OPTIONS)
    while len(cluster.workers) > workers:
        stop(cluster.workers.pop())
    deadline = time.monotonic() + timeout_s
    while cluster.slots() != workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster offers {cluster.slots()} slots, not {workers}, after {timeout_s} s")
        time.sleep(0.25)


@contextmanager
def local_cluster(workers: int) -> Iterator[DaskProcesses]:
    """A scheduler and plain Dask workers of one transcribe slot each, separate processes; the bench's client on
    it in RECORDER while it runs. Its logs stay in a temporary folder, named in the output."""
    folder = Path(tempfile.mkdtemp(prefix="podflow-bench-dask-"))
    with (
        dask_cluster(folder, workers, DASK_WORKER_OPTIONS, worker_command=DASK_WORKER) as cluster,
        distributed.Client(cluster.address, timeout=30, set_as_default=False) as client,
    ):
        RECORDER.client = client
        try:
            yield cluster
        finally:
            RECORDER.client = None


def throughput_curve(console: Console, cluster: DaskProcesses, curve_workers: Sequence[int], scale: float) -> None:
    """Podflow on the cluster resized to each worker count (one slot each), on sleeping transcriptions."""
    base = reference(100, scale)
    table = Table(
        title=f"Throughput by Dask workers (1 transcribe slot each; SLEEPING transcriptions: 2 cores here), "
        f"{base.name}, podflow on the cluster"
    )
    for column in (
        "workers",
        "makespan s",
        "ideal s",
        "/ ideal",
        "episodes / min",
        "ideal / min",
        "speed-up vs first",
        "peak running per stage",
        "dispatch p50 ms",
        "p95 ms",
        "max ms",
    ):
        table.add_column(column, justify="right")
    first: float | None = None
    for workers in curve_workers:
        resize(cluster, workers)
        workload = Workload(base.name, base.seconds, transcribe_limit=workers)
        ideal = ideal_makespan(workload)
        result = measure(f"{workers} workers", podflow_on_cluster, workload)
        per_minute = workload.episodes / result.makespan * 60
        first = first or per_minute
        table.add_row(
            str(workers),
            f"{result.makespan:.2f}",
            f"{ideal:.2f}",
            f"{result.makespan / ideal:.3f}",
            f"{per_minute:.0f}",
            f"{workload.episodes / ideal * 60:.0f}",
            f"{per_minute / first:.2f}",
            row(result, workload, ideal)[6],
            percentile_ms(result.dispatch, 0.5),
            percentile_ms(result.dispatch, 0.95),
            percentile_ms(result.dispatch, 1.0),
        )
    console.print(table)


def cluster_rows(console: Console, episodes: Sequence[int], curve_workers: Sequence[int], curve_scale: float) -> None:
    """Today's local transcribe stage and the cluster's, side by side; then the throughput by workers."""
    with local_cluster(LIMITS["transcribe"]) as cluster:
        console.print(f"Dask cluster at {cluster.address}: logs in {cluster.folder}")
        measure("warm-up", podflow_on_cluster, reference(4, 0.01))
        for count in episodes:
            workload = reference(count, min(1.0, 100 / count))  # ~50 s each: 1,000 episodes at a tenth the durations
            ideal = ideal_makespan(workload)
            table = Table(
                title=f"{workload.name} (download / transcribe / metadata); limits {workload.limits}; "
                f"the cluster: {len(cluster.workers)} workers of 1 slot; ideal makespan {ideal:.2f} s"
            )
            for column in (*ROW_COLUMNS, "dispatch p50 ms", "p95 ms", "max ms", "return p50 ms", "p95 ms"):
                table.add_column(column, justify="right")
            for name, run in (
                ("podflow, threads (local stage)", podflow_wiring),
                ("podflow, Dask cluster", podflow_on_cluster),
            ):
                result = measure(name, run, workload)
                dispatch, returns = result.dispatch, result.returns
                table.add_row(
                    *row(result, workload, ideal),
                    percentile_ms(dispatch, 0.5),
                    percentile_ms(dispatch, 0.95),
                    percentile_ms(dispatch, 1.0),
                    percentile_ms(returns, 0.5),
                    percentile_ms(returns, 0.95),
                )
            console.print(table)

        if curve_workers:
            throughput_curve(console, cluster, curve_workers, curve_scale)
    logged = [
        f"{log.name}: {line.strip()}"
        for log in sorted(cluster.folder.glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "WARNING" in line or "ERROR" in line or "Traceback" in line
    ]
    console.print(f"Warnings and errors in the cluster's logs: {len(logged)}", *logged[:20], sep="\n  ")


@dataclass(frozen=True)
class PodflowRun:
    """One podflow row of one process, as a --baseline child hands it back."""

    workload: str
    makespan: float
    ratio: float
    handoff_p50_ms: float
    peaks: str


def podflow_rows(workloads: Sequence[Workload]) -> list[PodflowRun]:
    """Each workload's podflow row, after a run that starts the ephemeral API outside the timings."""
    measure("warm-up", podflow_wiring, uniform("warm-up", 1, 0, 0, 0))
    runs = []
    for workload in workloads:
        ideal = ideal_makespan(workload)
        result = measure("podflow", podflow_wiring, workload)
        cells = row(result, workload, ideal)
        runs.append(PodflowRun(workload.name, result.makespan, result.makespan / ideal, float(cells[3]), cells[6]))
    return runs


def child_runs(checkout: Path, workloads: Sequence[Workload]) -> list[PodflowRun]:
    """This script's podflow rows on `checkout`'s code, in a process of its own with a Prefect API of its own."""
    with tempfile.TemporaryDirectory(prefix="podflow-bench-") as home:
        env = os.environ | {CHECKOUT_VARIABLE: str(checkout), "PREFECT_HOME": home}
        names = [argument for workload in workloads for argument in ("--workloads", workload.name)]
        done = subprocess.run(
            [sys.executable, __file__, *names, "--child"], env=env, cwd=checkout, capture_output=True, text=True
        )
    if done.returncode != 0:
        raise RuntimeError(f"the run on {checkout} failed:\n{done.stderr[-3000:]}")
    return [PodflowRun(**fields) for fields in json.loads(done.stdout.splitlines()[-1])]


def compare(console: Console, baseline: Path, workloads: Sequence[Workload], repeats: int) -> None:
    """The podflow rows from this checkout and from `baseline`, taking turns `repeats` times; their medians."""
    checkouts = {"this checkout": Path(__file__).resolve().parents[1], f"baseline {baseline}": baseline.resolve()}
    load_before = os.getloadavg()
    runs: dict[tuple[str, str], list[PodflowRun]] = {}
    for _ in range(repeats):
        for name, checkout in checkouts.items():
            for run in child_runs(checkout, workloads):
                runs.setdefault((run.workload, name), []).append(run)
    table = Table(
        title=f"podflow (run_pipeline), each checkout {repeats}×, taking turns; load average (1, 5, 15 min) "
        f"{' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in os.getloadavg())} after"
    )
    for column in ("workload", "code", "/ ideal, each run", "median / ideal", "median makespan s", "handoff p50 ms"):
        table.add_column(column, justify="right")
    for (workload, name), found in runs.items():
        table.add_row(
            workload,
            name,
            " ".join(f"{run.ratio:.3f}" for run in found),
            f"{statistics.median(run.ratio for run in found):.3f}",
            f"{statistics.median(run.makespan for run in found):.2f}",
            f"{statistics.median(run.handoff_p50_ms for run in found):.0f}",
        )
    console.print(table)
    console.print("Most running per stage, each run:", *{run.peaks for found in runs.values() for run in found})


def main() -> None:
    names = [workload.name for workload, _ in WORKLOADS]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chart", type=Path, help="write a Gantt chart of the first workload here (PNG)")
    parser.add_argument(
        "--workloads",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run this workload (repeat for more; default all): {', '.join(repr(name) for name in names)}",
    )
    parser.add_argument("--baseline", type=Path, help="another checkout: its podflow rows and this one's, compared")
    parser.add_argument("--repeats", type=int, default=3, help="--baseline: runs of each checkout (default 3)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cluster", action="store_true", help="add the Dask cluster rows and the throughput curve")
    parser.add_argument("--cluster-only", action="store_true", help="the cluster rows only (implies --cluster)")
    parser.add_argument(
        "--episodes",
        type=int,
        nargs="+",
        default=[100],
        help="cluster rows: these episode counts, the reference durations scaled to ~50 s each (default: 100)",
    )
    parser.add_argument(
        "--curve-workers",
        type=int,
        nargs="*",
        default=[1, 2, 4],
        help="throughput curve: these worker counts (none: no curve)",
    )
    parser.add_argument(
        "--curve-scale",
        type=float,
        default=0.3,
        help="throughput curve: 100 episodes of the reference durations times this (default 0.3: about a minute)",
    )
    args = parser.parse_args()
    chosen = [(workload, naive) for workload, naive in WORKLOADS if workload.name in (args.workloads or names)]
    if args.child:
        print(json.dumps([vars(run) for run in podflow_rows([workload for workload, _ in chosen])]))
        return
    console = Console(width=200)
    if args.baseline:
        compare(console, args.baseline, [workload for workload, _ in chosen], args.repeats)
        return
    measure("warm-up", podflow_wiring, uniform("warm-up", 1, 0, 0, 0))  # start the ephemeral API outside the timings
    for workload, with_naive in [] if args.cluster_only else chosen:
        ideal = ideal_makespan(workload)
        variants: list[tuple[str, Callable[[Workload], None]]] = [("podflow (run_pipeline)", podflow_wiring)]
        if with_naive:
            variants.append((f"naive .map, one pool of {sum(LIMITS.values())}", naive_map))
        variants.append(("original design (queue, 1 transcriber)", original_design))
        results = [measure(name, run, workload) for name, run in variants]
        table = Table(title=f"{workload.name}; limits {LIMITS}; ideal makespan {ideal:.2f} s")
        for column in ROW_COLUMNS:
            table.add_column(column, justify="right")
        for result in results:
            table.add_row(*row(result, workload, ideal))
        console.print(table)
        if args.chart and workload is WORKLOADS[0][0]:
            gantt(results, workload, args.chart)
            console.print(f"Gantt chart: {args.chart}")
    if args.cluster or args.cluster_only:
        cluster_rows(console, args.episodes, args.curve_workers, args.curve_scale)
    noop = measure("no-op", podflow_wiring, uniform("no-op", 200, 0, 0, 0))  # last: it leaves the API busy a while
    console.print(
        f"Orchestration per episode (3 task runs of stages that do nothing, 200 episodes): "
        f"{noop.makespan / 200 * 1000:.1f} ms of makespan"
    )


if __name__ == "__main__":
    main()
