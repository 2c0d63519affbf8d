"""Long-episode benchmark: what `podflow ingest` takes, in time and memory, to transcribe one episode of 10, 60 or
180 minutes, and which of its sentences the transcript loses or repeats, for each transcription backend.

Each episode is built from the sentence bank by tests/long_episode.py (cached in bench/out/long/, since encoding takes
about 35 s per hour of audio) and served with a one-item RSS feed by tests/feedserver.py on 127.0.0.1. Each run is
the real CLI in a fresh process with a fresh output folder, so its wall time holds everything a user waits for:
Python and Prefect start-up, the download, the transcription and the metadata. Its memory is the peak of the summed
RSS of the process and all its descendants (Prefect's ephemeral API server included), sampled every 0.1 s; pages
shared between those processes count once per process. The transcribe stage's own time is read from the feed's
ledger. `--baseline PATH` runs the same rows from another checkout as well (a `git worktree` of an older commit),
side by side; a row whose flags that checkout does not know shows n/a.
Run: `.venv/bin/python bench/long.py [--minutes 10 60 180] [--rows faster-whisper whisper] [--baseline PATH]
[--json bench/out/long.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.models import Ledger, Transcript  # noqa: E402
from tests.feeds import rss, rss_item  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402
from tests.long_episode import Spoken, compare, heard_sentences, write_episode  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPISODES_DIR = ROOT / "bench" / "out" / "long"
OPENAI_BASE_URL = "{openai_base_url}"  # in a row's flags: replaced with the local OpenAI-compatible server's URL
# `python -m flows.cli` imports the module without running the app.
CLI = ("-c", "from flows.cli import app; app()")
USAGE_ERROR = 2  # click's exit status for an option the checkout does not know
POLL_S = 0.1


@dataclass(frozen=True)
class Row:
    """A backend configuration: the `podflow ingest` flags that choose it."""

    label: str
    flags: tuple[str, ...]

    @property
    def needs_openai_server(self) -> bool:
        return OPENAI_BASE_URL in self.flags


# The flags of each row, by the name `--rows` takes.
ROWS = {
    "faster-whisper": Row("faster-whisper (default)", ()),
    "faster-whisper-unbatched": Row("faster-whisper unbatched", ("--batch-size", "1")),
    "whisper": Row("whisper", ("--transcriber", "whisper")),
    "openai": Row("openai → local server¹", ("--transcriber", "openai", "--openai-base-url", OPENAI_BASE_URL)),
}


@dataclass(frozen=True)
class Episode:
    minutes: float
    path: Path
    script: list[Spoken]

    @property
    def route(self) -> str:
        return f"/long-{self.minutes:g}min"


@dataclass(frozen=True)
class Checkout:
    """A source tree whose `flows` and `tasks` a run imports."""

    name: str  # "this" or "baseline"
    path: Path

    def describe(self) -> str:
        """The commit, marked -dirty when the tree has changes, or the path when it is no git checkout."""
        described = subprocess.run(
            ["git", "-C", str(self.path), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return described.stdout.strip() if described.returncode == 0 else str(self.path)


@dataclass
class Result:
    code: str
    row: str  # its name in ROWS
    minutes: float
    status: str  # "ok", "failed", or "n/a" (the checkout does not know a flag of the row)
    wall_s: float | None = None
    audio_s: float | None = None
    transcribe_s: float | None = None
    peak_rss_mib: float | None = None
    sentences: int | None = None
    missing_at_s: list[float] | None = None  # where in the audio each lost sentence was said
    repeated_at_s: list[float] | None = None  # where each sentence heard once too often was heard


def built_episode(minutes: float, seed: int, console: Console) -> Episode:
    """The episode from the cache, or built and cached: the audio first, its script last, so a build cut short is
    never taken for a finished one."""
    stem = f"episode-{minutes:g}min-seed{seed}"  # not a Path's stem: 0.5 minutes has a dot
    audio, script_path = EPISODES_DIR / f"{stem}.mp3", EPISODES_DIR / f"{stem}.json"
    if not (audio.exists() and script_path.exists()):
        console.print(f"building the {minutes:g}-minute episode (seed {seed}) in {audio}")
        EPISODES_DIR.mkdir(parents=True, exist_ok=True)
        partial = EPISODES_DIR / f"{stem}.mp3.partial"
        script = write_episode(partial, minutes * 60, seed)
        partial.replace(audio)
        partial_script = EPISODES_DIR / f"{stem}.json.partial"
        partial_script.write_text(json.dumps(script))
        partial_script.replace(script_path)
    return Episode(minutes, audio, [Spoken(*spoken) for spoken in json.loads(script_path.read_text())])


def tree_rss_bytes(process: psutil.Process) -> int:
    """The RSS of the process and all its descendants; those that exit while being read count nothing."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass(frozen=True)
class Finished:
    returncode: int
    wall_s: float
    peak_rss_mib: float
    stderr: str


def run_cli(checkout: Checkout, feed_url: str, output: Path, flags: list[str], env: dict[str, str]) -> Finished:
    """`podflow ingest` from the checkout in a fresh process, its wall time and its tree's peak RSS."""
    command = [sys.executable, *CLI, "ingest", feed_url, "--output", str(output), "--allow-network", "127.0.0.1/32"]
    peak = 0
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a pipe nobody reads while polling fills up
        started = time.perf_counter()
        process = subprocess.Popen(
            [*command, *flags],
            cwd=checkout.path,
            env={**env, "PYTHONPATH": str(checkout.path)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            peak = max(peak, tree_rss_bytes(watched))
            time.sleep(POLL_S)
        wall_s = time.perf_counter() - started
        stderr.seek(0)
        return Finished(process.returncode, wall_s, peak / 2**20, stderr.read().decode(errors="replace"))


def failed(finished: Finished) -> bool:
    """Whether the run exited with an error; if so, says why on stderr."""
    if finished.returncode != 0:
        tail = "\n".join(finished.stderr.splitlines()[-20:])
        print(f"\n  exit status {finished.returncode}; the end of its stderr:\n{tail}", file=sys.stderr)
    return finished.returncode != 0


def transcribe_stage_s(output: Path) -> float | None:
    """How long the episode's transcribe stage took, from the feed's ledger."""
    ledger = Ledger.model_validate_json(next(output.glob("*/ledger.json")).read_bytes())
    outcomes = [entry.stages["transcribe"] for entry in ledger.episodes.values() if "transcribe" in entry.stages]
    return (outcomes[0].ended - outcomes[0].started).total_seconds() if outcomes else None


def measure(
    checkout: Checkout, name: str, episode: Episode, feed_url: str, openai_base_url: str, env: dict[str, str]
) -> Result:
    row = ROWS[name]
    flags = [flag.replace(OPENAI_BASE_URL, openai_base_url) for flag in row.flags]
    result = Result(checkout.name, name, episode.minutes, "failed")
    with tempfile.TemporaryDirectory(prefix="podflow-bench-long-") as output:
        finished = run_cli(checkout, feed_url, Path(output), flags, env)
        result.wall_s, result.peak_rss_mib = finished.wall_s, finished.peak_rss_mib
        if finished.returncode == USAGE_ERROR and "No such option" in finished.stderr:
            result.status = "n/a"
            return result
        if failed(finished):
            return result
        transcript = Transcript.model_validate_json(next(Path(output).glob("**/transcript.json")).read_bytes())
        comparison = compare(episode.script, heard_sentences(transcript.segments))
        result.status, result.audio_s = "ok", transcript.audio_duration_s
        result.transcribe_s = transcribe_stage_s(Path(output))
        result.sentences = len(episode.script)
        result.missing_at_s = [round(spoken.start_s, 1) for spoken in comparison.missing]
        result.repeated_at_s = [round(spoken.start_s, 1) for spoken in comparison.repeated]
    return result


def shown(value: float | int | None, format_spec: str) -> str:
    return "-" if value is None else format(value, format_spec)


COLUMNS = (
    "code",
    "row",
    "minutes",
    "wall s",
    "× real time",
    "transcribe s",
    "peak RSS MiB (process tree)",
    "sentences in script",
    "missing",
    "repeated",
)


def table_row(result: Result) -> list[str]:
    first = [result.code, ROWS[result.row].label, f"{result.minutes:g}"]
    if result.status != "ok" or result.wall_s is None or result.audio_s is None:
        status = "[yellow]n/a" if result.status == "n/a" else "[red]failed"
        return [*first, status, *[""] * (len(COLUMNS) - len(first) - 1)]
    return [
        *first,
        f"{result.wall_s:.1f}",
        f"{result.audio_s / result.wall_s:.1f}",
        shown(result.transcribe_s, ".1f"),
        shown(result.peak_rss_mib, ".0f"),
        shown(result.sentences, "d"),
        str(len(result.missing_at_s or ())),
        str(len(result.repeated_at_s or ())),
    ]


@dataclass
class Bench:
    results: list[Result]
    start_up: dict[str, Finished]  # by checkout: an ingest of an empty feed


def run_bench(checkouts: list[Checkout], episodes: list[Episode], rows: list[str], progress: Console) -> Bench:
    """Every row from every checkout on every episode, against one Prefect database made for this bench run."""
    bench = Bench([], {})
    with (
        tempfile.TemporaryDirectory(prefix="podflow-bench-prefect-") as prefect_home,
        FeedServer() as feeds,
        OpenAIServer() as openai_server,
    ):
        env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # ephemeral mode
        env |= {"PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OPENAI_API_KEY": "bench"}
        empty_feed = feeds.add("/empty.xml", rss([]))
        for episode in episodes:
            feeds.add(episode.route + ".mp3", episode.path.read_bytes())
            title = f"A {episode.minutes:g}-minute episode"
            feeds.add(episode.route + ".xml", rss([rss_item(title, enclosure=episode.route + ".mp3")]))
        with tempfile.TemporaryDirectory() as output:
            # The first run creates and migrates Prefect's database: outside the timings. The next measure what
            # every run pays before its first episode: start-up, the ephemeral API and a flow with nothing to do.
            progress.print("creating Prefect's database (an ingest of an empty feed)")
            failed(run_cli(checkouts[0], empty_feed, Path(output) / "first", [], env))
            for checkout in checkouts:
                start_up = run_cli(checkout, empty_feed, Path(output) / checkout.name, [], env)
                if not failed(start_up):
                    bench.start_up[checkout.name] = start_up
        for episode in episodes:
            feed_url = feeds.url(episode.route + ".xml")
            for name in rows:
                for checkout in checkouts:
                    progress.print(f"{checkout.name}: {ROWS[name].label}, {episode.minutes:g} min …", end=" ")
                    result = measure(checkout, name, episode, feed_url, openai_server.base_url, env)
                    progress.print(result.status, shown(result.wall_s, ".1f"), "s")
                    bench.results.append(result)
    return bench


def print_bench(bench: Bench, checkouts: list[Checkout]) -> None:
    described = ", ".join(f"{checkout.name} = {checkout.describe()}" for checkout in checkouts)
    table = Table(title=f"One long episode through `podflow ingest` ({described}; {os.cpu_count()} CPUs)")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for result in bench.results:
        table.add_row(*table_row(result))
    console = Console(width=160)
    console.print(table)
    for name, finished in bench.start_up.items():
        console.print(
            f"Start-up ({name}): an ingest of an empty feed takes {finished.wall_s:.1f} s and peaks at "
            f"{finished.peak_rss_mib:.0f} MiB; every wall time above includes it."
        )
    if any(ROWS[result.row].needs_openai_server for result in bench.results):
        console.print(
            "¹ The OpenAI-compatible server (tests/openai_server.py, faster-whisper bundled tiny.en) runs in the bench "
            "process: its transcription's memory is not in the podflow process tree's RSS."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60], help="episode lengths (default 10 60)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="default: all")
    parser.add_argument("--seed", type=int, default=0, help="the episodes' sentence order")
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same rows from, side by side")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    progress = Console(stderr=True)
    checkouts = [Checkout("this", ROOT)]
    if args.baseline and not (args.baseline / "flows" / "cli.py").is_file():
        parser.error(f"{args.baseline} is no podflow checkout: it has no flows/cli.py")
    if args.baseline:
        checkouts.append(Checkout("baseline", args.baseline.resolve()))
    episodes = [built_episode(minutes, args.seed, progress) for minutes in args.minutes]
    bench = run_bench(checkouts, episodes, args.rows, progress)
    print_bench(bench, checkouts)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "checkouts": {checkout.name: checkout.describe() for checkout in checkouts},
            "start_up": {
                name: {"wall_s": f.wall_s, "peak_rss_mib": f.peak_rss_mib} for name, f in bench.start_up.items()
            },
            "results": [asdict(result) for result in bench.results],
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
