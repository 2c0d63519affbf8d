"""What a whole run costs per episode as a feed grows: one feed of N episodes whose enclosures all answer 404.

Each size runs in a child process of its own, with a fresh PREFECT_HOME and so its own ephemeral Prefect API (a
SQLite database no earlier size has filled), started by a one-episode warm-up run outside the timings. The feed is
served by tests/feedserver.py on 127.0.0.1 and every enclosure answers 404, so each episode costs one download
attempt (`download_attempts=1`) and one ledger outcome, and nothing is transcribed. The real flow
`flows.ingest.ingest_feeds` runs in-process; its report must say N failed episodes, each with a 404, or the child
fails. With --second-run the flow runs again on the same output folder: every episode failed once, so the feed is
fetched in full again and every download is retried.

Phases are timed from the bench, by replacing functions in the child process only (product code is not edited):
flows.ingest's `ingest`, `open_feeds`, `fetch_feeds`, `unique_episodes` and `selected_episodes` (selection),
`register`, `limited_stage_tags`, `create_progress_artifact` and `update_progress_artifact` (the progress
artifact, one API call per percent of the run), `run_pipeline`, `feed_report` and `publish`; tasks.feed's `fetch_feed`
(fetch and parse) and `parsed_page` (the parse, in its child process); tasks.download's `download_episode` (the
HTTP attempt) and the `download` task's function; FeedStore's `record`, `register` and `validators_for`; and
FeedStore.read_ledger, LedgerDB's `record` and `entry` and tasks.store's write_record, each counted under the
innermost timed phase that called it ("ledger write in record", "ledger read in report", ...). Phases run inside
the pipeline on the download workers are summed over those threads (thread-seconds, lock waits included), so they
can add up to more than the pipeline's wall time. "flow overhead" is the flow's wall time less `ingest()`: the flow
run's start and end in Prefect. "pace" is the time between settled episodes over the first and the last tenth of
the pipeline.

Run: `.venv/bin/python bench/feed_scale.py --episodes 300 3000 30000 [--workers 4] [--second-run]
[--max-minutes M]` (default `--episodes 300 3000`). A size still running after --max-minutes is killed (its
process group, the ephemeral API included) and reported with how far it got.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

# The phases shown as columns of the first table (all of them are rows of the second), and their column names.
SUMMARY_PHASES = {
    "fetch+parse": "fetch+parse s",
    "selection": "selection s",
    "register": "register s",
    "pipeline": "pipeline s",
    "record": "record thread-s",
    "report": "report s",
    "publish artifacts": "publish s",
    "progress artifact (API)": "progress API s",
    "flow overhead": "flow overhead s",
}


@dataclass
class Result:
    """One measured flow run of one size, as the child hands it to the parent (JSON)."""

    episodes: int
    run: str  # "first" or "second"
    wall_s: float
    cpu_s: float
    phases: dict[str, tuple[float, int]]  # name -> (seconds, calls)
    failed: int
    ledger_bytes: int
    peak_rss_mib: float
    pace_first_ms: float | None  # ms per settled episode over the first tenth of the pipeline
    pace_last_ms: float | None  # and over the last tenth


@dataclass
class Phases:
    """Seconds and calls per phase, from any thread; each thread's stack of timed phases names a contextual one."""

    totals: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)
    originals: list[tuple[object, str, object]] = field(default_factory=list)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            total = self.totals.setdefault(name, [0.0, 0])
            total[0] += seconds
            total[1] += 1

    def stack(self) -> list[str]:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        stack: list[str] = self.local.stack
        return stack

    def wrap(self, owner: object, attribute: str, name: str, contextual: bool = False) -> None:
        """Replace `owner.attribute` with a timed call of it. A contextual phase is named after the innermost timed
        phase it runs in on its thread (`ledger read in record`), or `... elsewhere`."""
        original: Callable[..., Any] = getattr(owner, attribute)
        self.originals.append((owner, attribute, original))

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self.stack()
            label = f"{name} in {stack[-1] if stack else 'elsewhere'}" if contextual else name
            if not contextual:
                stack.append(name)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - started)
                if not contextual:
                    stack.pop()

        setattr(owner, attribute, timed)

    def restore(self) -> None:
        for owner, attribute, original in reversed(self.originals):
            setattr(owner, attribute, original)
        self.originals.clear()

    def snapshot(self) -> dict[str, tuple[float, int]]:
        with self.lock:
            return {name: (total[0], int(total[1])) for name, total in self.totals.items()}


def instrument(phases: Phases) -> None:
    import flows.ingest as ingest_module
    import tasks.download as download_module
    import tasks.feed as feed_module
    import tasks.store as store_module
    from tasks.ledger_db import LedgerDB
    from tasks.store import FeedStore

    for owner, attribute, name in (
        (ingest_module, "ingest", "ingest()"),
        (ingest_module, "open_feeds", "open feeds"),
        (ingest_module, "fetch_feeds", "fetch_feeds()"),
        (feed_module, "fetch_feed", "fetch+parse"),
        (feed_module, "parsed_page", "parse (child process)"),
        (ingest_module, "unique_episodes", "selection"),
        (ingest_module, "selected_episodes", "selection"),
        (ingest_module, "register", "register"),
        (ingest_module, "limited_stage_tags", "stage limits (API)"),
        (ingest_module, "create_progress_artifact", "progress artifact (API)"),
        (ingest_module, "update_progress_artifact", "progress artifact (API)"),
        (ingest_module, "run_pipeline", "pipeline"),
        (download_module.download, "fn", "download task"),
        (download_module, "download_episode", "download attempt"),
        (FeedStore, "record", "record"),
        (FeedStore, "register", "FeedStore.register"),
        (FeedStore, "validators_for", "validators_for"),
        (ingest_module, "feed_report", "report"),
        (ingest_module, "publish", "publish artifacts"),
    ):
        phases.wrap(owner, attribute, name)
    phases.wrap(FeedStore, "read_ledger", "ledger read", contextual=True)
    phases.wrap(LedgerDB, "record", "ledger write", contextual=True)
    phases.wrap(LedgerDB, "entry", "ledger lookup", contextual=True)
    phases.wrap(store_module, "write_record", "write", contextual=True)


def feed_document(server_url: Callable[[str], str], episodes: int, prefix: str) -> bytes:
    from tests.feeds import rss, rss_item

    return rss(
        [
            rss_item(f"Episode {i}", guid=f"{prefix}-{i}", enclosure=server_url(f"/{prefix}/{i}.mp3"))
            for i in range(episodes)
        ],
        title=f"Scale {prefix}",
    )


@dataclass
class Pace:
    """When each episode settled, from the CLI's progress hook; written to `progress_file` every few seconds, so a
    run killed at --max-minutes still says how far it got."""

    progress_file: Path | None
    settled_at: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    written: float = 0.0
    total: int = 0

    def __call__(self, progress: Any) -> None:
        self.total = progress.total
        now = time.perf_counter()
        while len(self.settled_at) < progress.settled:
            self.settled_at.append(now)
        if self.progress_file is not None and now - self.written > 5:
            self.written = now
            self.progress_file.write_text(
                json.dumps({"settled": len(self.settled_at), "total": self.total, "elapsed_s": now - self.started})
            )

    def tenth_ms(self, last: bool) -> float | None:
        times = self.settled_at
        tenth = len(times) // 10
        if tenth < 2:
            return None
        part = times[-tenth:] if last else times[:tenth]
        return (part[-1] - part[0]) / (len(part) - 1) * 1000


def run_flow(episodes: int, output: Path, feed_url: str, workers: int, run: str, progress_file: Path | None) -> Result:
    from flows.ingest import ingest_feeds, listening
    from tasks.models import RunReport, Settings

    settings = Settings.of(
        output_dir=output,
        allowed_networks=("127.0.0.1/32",),
        download_attempts=1,
        retry_backoff_s=0.0,
        download_workers=workers,
    )
    phases = Phases()
    pace = Pace(progress_file)
    instrument(phases)
    try:
        with listening(pace):
            started, cpu = time.perf_counter(), time.process_time()
            state = ingest_feeds([feed_url], None, settings, return_state=True)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        phases.restore()
    report = state.result(raise_on_failure=False)
    if not isinstance(report, RunReport):
        raise SystemExit(f"the flow returned no RunReport: {report!r}")
    failed = [e for e in report.episodes if e.status == "failed" and "404" in (e.error or "")]
    if len(report.episodes) != episodes or len(failed) != episodes:
        counts = {s: report.count(s) for s in ("failed", "complete", "skipped", "already complete")}
        raise SystemExit(
            f"expected {episodes} episodes failed with a 404, the report says {counts}: {report.failure()}"
        )
    measured = phases.snapshot()
    ingest_s = measured.get("ingest()", (0.0, 0))[0]
    measured["flow overhead"] = (wall - ingest_s, 1)
    ledgers = list(output.glob("*/ledger.sqlite"))
    return Result(
        episodes=episodes,
        run=run,
        wall_s=wall,
        cpu_s=cpu,
        phases=measured,
        failed=len(failed),
        ledger_bytes=sum(path.stat().st_size for path in ledgers),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        pace_first_ms=pace.tenth_ms(last=False),
        pace_last_ms=pace.tenth_ms(last=True),
    )


def child(episodes: int, workers: int, second_run: bool, result_file: Path, progress_file: Path) -> None:
    """One size, in this process: warm-up (the ephemeral API starts), then the measured run(s)."""
    from flows.ingest import ingest_feeds
    from tasks.models import Settings
    from tests.feedserver import FeedServer

    work = Path(tempfile.mkdtemp(prefix="podflow-bench-scale-"))
    with FeedServer() as server:
        warm_url = server.add("/warm.xml", feed_document(server.url, 1, "warm"), content_type="application/rss+xml")
        warm = Settings.of(output_dir=work / "warm", allowed_networks=("127.0.0.1/32",), download_attempts=1)
        ingest_feeds([warm_url], None, warm, return_state=True)
        feed_url = server.add(
            "/feed.xml", feed_document(server.url, episodes, "ep"), content_type="application/rss+xml"
        )
        results: list[Result] = []
        for run in ("first", "second") if second_run else ("first",):
            results.append(run_flow(episodes, work / "out", feed_url, workers, run, progress_file))
            result_file.write_text(json.dumps([asdict(result) for result in results]))  # each, in case of a kill
            progress_file.unlink(missing_ok=True)


@dataclass
class Killed:
    episodes: int
    after_s: float  # since the child started: its warm-up and any run before included
    progress: dict[str, Any]  # the run in progress: settled, total, elapsed_s of its flow
    run: str = "first"


def measure_size(
    episodes: int, args: argparse.Namespace, folder: Path, console: Console
) -> tuple[list[Result], Killed | None]:
    """Run one size in a child process of its own (a fresh PREFECT_HOME), in a process group of its own: the runs
    it finished, and how far it got where it was killed at --max-minutes."""
    result_file, progress_file, log_file = (folder / f"{episodes}.{ext}" for ext in ("json", "progress", "log"))
    env = {
        **{key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"},  # ephemeral mode
        "PREFECT_HOME": tempfile.mkdtemp(prefix="podflow-bench-scale-prefect-"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # 2 busy cores: 20 s may not do
    }
    command = [sys.executable, __file__, "--child", str(episodes), "--workers", str(args.workers)]
    command += ["--result", str(result_file), "--progress", str(progress_file)]
    command += ["--second-run"] if args.second_run else []
    console.print(f"{episodes:,} episodes: running (log: {log_file})")
    started = time.perf_counter()
    killed = None
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=args.max_minutes * 60 if args.max_minutes else None)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the child's own group: it and its ephemeral API server
            process.wait()
            progress = json.loads(progress_file.read_text()) if progress_file.exists() else {}
            killed = Killed(episodes, time.perf_counter() - started, progress)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if killed is None and process.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{episodes:,} episodes: the child failed ({process.returncode}):\n" + "\n".join(tail))
    rows = json.loads(result_file.read_text()) if result_file.exists() else []
    return [Result(**{**row, "phases": {k: tuple(v) for k, v in row["phases"].items()}}) for row in rows], killed


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def seconds(value: float) -> str:
    return f"{value:.2f}"


def tables(results: list[Result], killed: list[Killed], workers: int) -> list[Table]:
    smallest = {
        run: min((r for r in results if r.run == run), key=lambda r: r.episodes) for run in {r.run for r in results}
    }
    summary = Table(title=f"A whole run per episode, enclosures all 404, {workers} download workers")
    for column in (
        "episodes",
        "run",
        "wall s",
        "ms / episode",
        "× smallest",
        *SUMMARY_PHASES.values(),
        "pace first 10% ms",
        "pace last 10% ms",
        "CPU s",
        "ledger MiB",
        "peak RSS MiB",
    ):
        summary.add_column(column, justify="right")
    for r in results:
        per_episode = r.wall_s / r.episodes * 1000
        base = smallest[r.run]
        summary.add_row(
            f"{r.episodes:,}",
            r.run,
            seconds(r.wall_s),
            f"{per_episode:.1f}",
            f"{per_episode / (base.wall_s / base.episodes * 1000):.2f}",
            *(seconds(r.phases.get(name, (0.0, 0))[0]) for name in SUMMARY_PHASES),
            f"{r.pace_first_ms:.1f}" if r.pace_first_ms is not None else "",
            f"{r.pace_last_ms:.1f}" if r.pace_last_ms is not None else "",
            seconds(r.cpu_s),
            f"{r.ledger_bytes / 2**20:.2f}",
            f"{r.peak_rss_mib:.0f}",
        )
    notes = []
    for k in killed:
        done, elapsed = k.progress.get("settled"), k.progress.get("elapsed_s", 0.0)
        pace = f"{elapsed / done * 1000:.1f}" if done else ""
        summary.add_row(f"{k.episodes:,}", f"{k.run}: killed", f"> {elapsed:.0f}", pace)
        notes.append(
            f"{k.episodes:,} episodes, {k.run} run: killed at --max-minutes, {done:,} of {k.progress.get('total'):,} "
            f"settled {elapsed:.0f} s into its flow (ms / episode: so far)"
            if done is not None
            else f"{k.episodes:,} episodes, {k.run} run: killed at --max-minutes before its pipeline reported progress"
        )
    summary.caption = "\n".join(notes) or None

    names = sorted(
        {name for r in results for name in r.phases},
        key=lambda n: -max(r.phases.get(n, (0.0, 0))[0] / r.episodes for r in results),
    )
    phases = Table(title="Every phase timed: seconds (calls) and ms per episode; '… in X' is counted inside X")
    phases.add_column("phase")
    for r in results:
        phases.add_column(f"{r.episodes:,} {r.run}: s (calls)", justify="right")
        phases.add_column("ms / ep", justify="right")
    for name in names:
        cells: list[str] = []
        for r in results:
            spent, calls = r.phases.get(name, (0.0, 0))
            cells += [f"{spent:.2f} ({calls:,})", f"{spent / r.episodes * 1000:.2f}"] if calls else ["", ""]
        phases.add_row(name, *cells)
    return [summary, phases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, nargs="+", default=[300, 3000], help="feed sizes (default 300 3000)")
    parser.add_argument("--workers", type=int, default=4, help="download workers (default 4)")
    parser.add_argument("--second-run", action="store_true", help="run the flow again on the same output folder")
    parser.add_argument("--max-minutes", type=float, default=0, help="kill a size still running after this long")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--progress", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.workers, args.second_run, args.result, args.progress)
        return
    console = Console(width=260)
    import prefect

    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {os.cpu_count()} CPUs, {cpu_model()}; Python "
        f"{platform.python_version()}, Prefect {prefect.__version__}; commit {git_commit()}; load average "
        f"{' '.join(f'{load:.1f}' for load in os.getloadavg())} at the start\n"
        f"$ {shlex.join(['.venv/bin/python', *sys.argv])}"
    )
    folder = Path(tempfile.mkdtemp(prefix="podflow-bench-scale-logs-"))
    results: list[Result] = []
    killed: list[Killed] = []
    for episodes in sorted(args.episodes):
        measured, stopped = measure_size(episodes, args, folder, console)
        results += measured
        for r in measured:
            console.print(
                f"{episodes:,} episodes, {r.run} run: {r.wall_s:.1f} s, {r.wall_s / episodes * 1000:.1f} ms each"
            )
        if stopped is not None and len(measured) < (2 if args.second_run else 1):  # not killed while exiting
            stopped.run = "second" if measured else "first"
            killed.append(stopped)
            console.print(
                f"{episodes:,} episodes: {stopped.run} run killed after {stopped.after_s:.0f} s, {stopped.progress}"
            )
            break  # a bigger feed would take longer still
    if results:
        for table in tables(results, killed, args.workers):
            console.print(table)


if __name__ == "__main__":
    main()
