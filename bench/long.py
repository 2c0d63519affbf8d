"""Long-episode benchmark: what `podflow ingest` takes, in time and memory, to transcribe one episode of 10, 60 or
180 minutes (or several at once), and which of its sentences the transcript loses or repeats, for each transcription
backend.

Each episode is built from the sentence bank by tests/long_episode.py (cached in bench/out/long/, since encoding takes
about 35 s per hour of audio) and served with an RSS feed by tests/feedserver.py on 127.0.0.1. Each run is the real
CLI in a fresh process with a fresh output folder, so its wall time holds everything a user waits for: Python and
Prefect start-up, the download, the transcription and the metadata. Its memory is the peak of the summed RSS of the
process and all its descendants (Prefect's ephemeral API server included), sampled every 0.1 s; pages shared between
those processes count once per process. The transcribe stage's own time is read from the feed's ledger: from the
first episode's start of it to the last one's end. `--baseline PATH` runs the same rows from another checkout as well
(a `git worktree` of an older commit), side by side; a row whose flags that checkout does not know shows n/a.

`--episodes N` puts N episodes of each length in the feed (seeds --seed, --seed + 1, …), for rows whose workers
transcribe several at once: × real time is then their total audio over the run's wall time, and lost and repeated
sentences are summed over them. `--device cuda` swaps the rows for CUDA ones (a GPU machine; see ROWS_BY_DEVICE).
`--bank real` builds the episodes from the real-speech bank (two public-domain recordings) instead of espeak-ng's.

`--vs-engine` measures instead the transcribe stage's own code against faster-whisper's own `BatchedInferencePipeline`
on the same episode file, each hearing in a fresh process (bench/hear_episode.py: same model, compute type, beam,
batch size and threads), the ways taking turns and the order turning each repeat (`--repeats N`, medians): the
time from audio file to segments, throughput against the engine's, CPU time, peak RSS, word error rate and the
sentences lost and repeated. With `--baseline PATH` the stage of that checkout runs in the same turns.
Run: `.venv/bin/python bench/long.py [--minutes 10 60 180] [--rows faster-whisper whisper] [--baseline PATH]
[--device cuda] [--episodes 4] [--bank real] [--json bench/out/long.json]`, or
`.venv/bin/python bench/long.py --vs-engine [--minutes 10 60] [--bank real] [--repeats 3] [--baseline PATH]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
from checkout import Checkout  # noqa: E402  (bench/, beside this script: whichever checkout a row imports)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.models import Ledger, Segment, Transcript  # noqa: E402
from tests.feeds import rss, rss_item  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402
from tests.long_episode import BANKS, Bank, Spoken, compare, heard_sentences, write_episode  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402
from tests.speech import word_error_rate  # noqa: E402

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

    @property
    def workers(self) -> int:
        """Episodes it transcribes at once."""
        if "--transcribe-workers" not in self.flags:
            return 1
        return int(self.flags[self.flags.index("--transcribe-workers") + 1])


CUDA = ("--device", "cuda")
CUDA_FASTER_WHISPER = (*CUDA, "--compute-type", "float16")
CUDA_WHISPER = ("--transcriber", "whisper", *CUDA, "--model", "bundled:tiny.en", "--transcribe-workers", "4")

# The flags of each row, by the name `--rows` takes, for each `--device`.
ROWS_BY_DEVICE = {
    "cpu": {
        "faster-whisper": Row("faster-whisper (default)", ()),
        "faster-whisper-unbatched": Row("faster-whisper unbatched", ("--batch-size", "1")),
        "whisper": Row("whisper", ("--transcriber", "whisper")),
        "openai": Row("openai → local server¹", ("--transcriber", "openai", "--openai-base-url", OPENAI_BASE_URL)),
    },
    "cuda": {
        "faster-whisper-tiny.en": Row(
            "faster-whisper tiny.en float16", (*CUDA_FASTER_WHISPER, "--model", "bundled:tiny.en")
        ),
        "faster-whisper-tiny.en-unbatched": Row(
            "faster-whisper tiny.en float16 unbatched",
            (*CUDA_FASTER_WHISPER, "--model", "bundled:tiny.en", "--batch-size", "1"),
        ),
        "faster-whisper-base": Row("faster-whisper base float16", (*CUDA_FASTER_WHISPER, "--model", "bundled:base")),
        "faster-whisper-base-unbatched": Row(
            "faster-whisper base float16 unbatched",
            (*CUDA_FASTER_WHISPER, "--model", "bundled:base", "--batch-size", "1"),
        ),
        "whisper-threads": Row("whisper tiny.en, 4 threads", (*CUDA_WHISPER, "--transcribe-pool", "threads")),
        "whisper-processes": Row("whisper tiny.en, 4 processes", (*CUDA_WHISPER, "--transcribe-pool", "processes")),
    },
}


@dataclass(frozen=True)
class Episode:
    minutes: float
    seed: int
    path: Path
    script: list[Spoken]
    bank: Bank

    @property
    def title(self) -> str:
        """Its title in the feed, by which its transcript is told from the others'."""
        return f"A {self.minutes:g}-minute episode, seed {self.seed}"

    @property
    def route(self) -> str:
        """Where the feed server serves its audio."""
        return f"/long-{self.minutes:g}min-seed{self.seed}.mp3"


@dataclass
class Heard:
    """One episode's transcript against its script."""

    seed: int
    audio_s: float
    sentences: int  # in its script
    missing_at_s: list[float]  # where in the audio each lost sentence was said
    repeated_at_s: list[float]  # where each sentence heard once too often was heard


@dataclass
class Result:
    code: str
    row: str  # its name in ROWS_BY_DEVICE
    minutes: float
    episodes: int
    status: str  # "ok", "failed", or "n/a" (the checkout does not know a flag of the row)
    wall_s: float | None = None
    transcribe_s: float | None = None
    peak_rss_mib: float | None = None
    heard: list[Heard] = field(default_factory=list)  # one per episode, when the run is ok


def episode_files(minutes: float, seed: int, bank: str) -> tuple[Path, Path]:
    """The cached episode's audio and script."""
    stem = f"{'' if bank == 'espeak' else bank + '-'}episode-{minutes:g}min-seed{seed}"  # 0.5 minutes has a dot
    return EPISODES_DIR / f"{stem}.mp3", EPISODES_DIR / f"{stem}.json"


def build_episode(minutes: float, seed: int, bank: str) -> None:
    """Builds and caches the episode: the audio first, its script last, so a build cut short is never taken for a
    finished one."""
    audio, script_path = episode_files(minutes, seed, bank)
    partial = audio.with_name(audio.name + ".partial")
    script = write_episode(partial, minutes * 60, seed, BANKS[bank])
    partial.replace(audio)
    partial_script = script_path.with_name(script_path.name + ".partial")
    partial_script.write_text(json.dumps(script))
    partial_script.replace(script_path)


def built_episodes(minutes: list[float], seeds: list[int], bank: str, console: Console) -> list[Episode]:
    """Every length with every seed, from the cache or built and cached; those missing are built at once, one per
    core, since a machine lent for a GPU run starts without the cache."""
    wanted = [(length, seed) for length in minutes for seed in seeds]
    missing = [
        (length, seed) for length, seed in wanted if not all(f.exists() for f in episode_files(length, seed, bank))
    ]
    if missing:
        console.print(
            "building " + ", ".join(f"the {length:g}-minute episode (seed {seed})" for length, seed in missing)
        )
        EPISODES_DIR.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(min(len(missing), os.cpu_count() or 1)) as pool:
            lengths, missing_seeds = zip(*missing, strict=True)
            list(pool.map(build_episode, lengths, missing_seeds, [bank] * len(missing)))
    episodes = []
    for length, seed in wanted:
        audio, script_path = episode_files(length, seed, bank)
        script = [Spoken(*spoken) for spoken in json.loads(script_path.read_text())]
        episodes.append(Episode(length, seed, audio, script, BANKS[bank]))
    return episodes


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


def transcribe_stage_s(ledger: Ledger) -> float | None:
    """How long the transcribe stage ran, from the first episode's start of it to the last one's end."""
    outcomes = [entry.stages["transcribe"] for entry in ledger.episodes.values() if "transcribe" in entry.stages]
    if not outcomes:
        return None
    return (max(outcome.ended for outcome in outcomes) - min(outcome.started for outcome in outcomes)).total_seconds()


def heard(episodes: list[Episode], ledger: Ledger, output: Path) -> list[Heard] | None:
    """Each episode's transcript against its script; None, and why on stderr, when one has no transcript."""
    titles = {entry.episode_id: entry.title for entry in ledger.episodes.values()}
    transcripts = (Transcript.model_validate_json(path.read_bytes()) for path in output.glob("**/transcript.json"))
    by_title = {titles[transcript.episode_id]: transcript for transcript in transcripts}
    if untranscribed := [episode.title for episode in episodes if episode.title not in by_title]:
        print(f"\n  no transcript of: {', '.join(untranscribed)}", file=sys.stderr)
        return None
    result = []
    for episode in episodes:
        transcript = by_title[episode.title]
        comparison = compare(episode.script, heard_sentences(transcript.segments, episode.bank))
        missing_at_s = [round(spoken.start_s, 1) for spoken in comparison.missing]
        repeated_at_s = [round(spoken.start_s, 1) for spoken in comparison.repeated]
        result.append(
            Heard(episode.seed, transcript.audio_duration_s, len(episode.script), missing_at_s, repeated_at_s)
        )
    return result


def measure(
    checkout: Checkout,
    name: str,
    row: Row,
    episodes: list[Episode],
    feed_url: str,
    openai_base_url: str,
    env: dict[str, str],
) -> Result:
    """One run of the row from the checkout on a feed of the episodes, all of one length."""
    flags = [flag.replace(OPENAI_BASE_URL, openai_base_url) for flag in row.flags]
    result = Result(checkout.name, name, episodes[0].minutes, len(episodes), "failed")
    with tempfile.TemporaryDirectory(prefix="podflow-bench-long-") as output:
        finished = run_cli(checkout, feed_url, Path(output), flags, env)
        result.wall_s, result.peak_rss_mib = finished.wall_s, finished.peak_rss_mib
        if finished.returncode == USAGE_ERROR and "No such option" in finished.stderr:
            result.status = "n/a"
            return result
        if failed(finished):
            return result
        ledger = Ledger.model_validate_json(next(Path(output).glob("*/ledger.json")).read_bytes())
        if (heard_episodes := heard(episodes, ledger, Path(output))) is None:
            return result
        result.status, result.heard, result.transcribe_s = "ok", heard_episodes, transcribe_stage_s(ledger)
    return result


def shown(value: float | int | None, format_spec: str) -> str:
    return "-" if value is None else format(value, format_spec)


COLUMNS = (
    "code",
    "row",
    "minutes",
    "episodes",
    "wall s",
    "× real time",
    "transcribe s",
    "peak RSS MiB (process tree)",
    "sentences in script",
    "missing",
    "repeated",
)


def table_row(result: Result, rows: dict[str, Row]) -> list[str]:
    first = [result.code, rows[result.row].label, f"{result.minutes:g}", str(result.episodes)]
    if result.status != "ok" or result.wall_s is None:
        status = "[yellow]n/a" if result.status == "n/a" else "[red]failed"
        return [*first, status, *[""] * (len(COLUMNS) - len(first) - 1)]
    return [
        *first,
        f"{result.wall_s:.1f}",
        f"{sum(episode.audio_s for episode in result.heard) / result.wall_s:.1f}",
        shown(result.transcribe_s, ".1f"),
        shown(result.peak_rss_mib, ".0f"),
        str(sum(episode.sentences for episode in result.heard)),
        str(sum(len(episode.missing_at_s) for episode in result.heard)),
        str(sum(len(episode.repeated_at_s) for episode in result.heard)),
    ]


@dataclass
class Bench:
    results: list[Result]
    start_up: dict[str, Finished]  # by checkout: an ingest of an empty feed


def run_bench(checkouts: list[Checkout], episodes: list[Episode], rows: dict[str, Row], progress: Console) -> Bench:
    """Every row from every checkout on a feed of the episodes of each length, against one Prefect database made
    for this bench run."""
    bench = Bench([], {})
    lengths: dict[float, list[Episode]] = {}  # each length's episodes, one feed
    for episode in episodes:
        lengths.setdefault(episode.minutes, []).append(episode)
    with (
        tempfile.TemporaryDirectory(prefix="podflow-bench-prefect-") as prefect_home,
        FeedServer() as feeds,
        OpenAIServer() as openai_server,
    ):
        env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # ephemeral mode
        env |= {"PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OPENAI_API_KEY": "bench"}
        empty_feed = feeds.add("/empty.xml", rss([]))
        for episode in episodes:
            feeds.add(episode.route, episode.path.read_bytes())
        feed_urls = {
            minutes: feeds.add(
                f"/long-{minutes:g}min.xml", rss([rss_item(episode.title, enclosure=episode.route) for episode in same])
            )
            for minutes, same in lengths.items()
        }
        with tempfile.TemporaryDirectory() as output:
            # The first run creates and migrates Prefect's database: outside the timings. The next measure what
            # every run pays before its first episode: start-up, the ephemeral API and a flow with nothing to do.
            progress.print("creating Prefect's database (an ingest of an empty feed)")
            failed(run_cli(checkouts[0], empty_feed, Path(output) / "first", [], env))
            for checkout in checkouts:
                start_up = run_cli(checkout, empty_feed, Path(output) / checkout.name, [], env)
                if not failed(start_up):
                    bench.start_up[checkout.name] = start_up
        for minutes, same in lengths.items():
            for name, row in rows.items():
                for checkout in checkouts:
                    progress.print(f"{checkout.name}: {row.label}, {len(same)} × {minutes:g} min …", end=" ")
                    result = measure(checkout, name, row, same, feed_urls[minutes], openai_server.base_url, env)
                    progress.print(result.status, shown(result.wall_s, ".1f"), "s")
                    bench.results.append(result)
    return bench


# --vs-engine: each way of hearing an episode, by its label in the table.
WAYS = {
    "podflow": "podflow's transcribe stage",
    "podflow-greedy": "podflow's stage, greedy_first",
    "engine-words": "BatchedInferencePipeline, word timings",
    "engine": "BatchedInferencePipeline",
}
HEAR_EPISODE = ROOT / "bench" / "hear_episode.py"


@dataclass
class Hearing:
    way: str
    code: str  # the checkout whose `tasks` heard it
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    word_error_rate: float
    missing_at_s: list[float]
    repeated_at_s: list[float]


def hear_in_fresh_process(way: str, checkout: Checkout, episode: Episode) -> Hearing:
    """One hearing of the episode by bench/hear_episode.py in a fresh process, scored against its script."""
    done = subprocess.run(
        [sys.executable, str(HEAR_EPISODE), way, str(episode.path)],
        cwd=checkout.path,
        env={**os.environ, "PYTHONPATH": str(checkout.path)},
        capture_output=True,
        text=True,
        check=True,
    )
    heard = json.loads(done.stdout)
    segments = [Segment(start=start, end=end, text=text) for start, end, text in heard["segments"]]
    comparison = compare(episode.script, heard_sentences(segments, episode.bank))
    said = " ".join(episode.bank.sentences[spoken.sentence] for spoken in episode.script)
    return Hearing(
        way,
        checkout.name,
        heard["wall_s"],
        heard["cpu_s"],
        heard["peak_rss_mib"],
        word_error_rate(said, " ".join(segment.text for segment in segments)),
        [round(spoken.start_s, 1) for spoken in comparison.missing],
        [round(spoken.start_s, 1) for spoken in comparison.repeated],
    )


def vs_engine(
    checkouts: list[Checkout], episodes: list[Episode], chosen: list[str], repeats: int, progress: Console
) -> list[tuple[Episode, list[Hearing]]]:
    """Every chosen way on every episode (podflow's from every checkout), `repeats` times, taking turns: the order
    turns by one each repeat, so a drift in the machine's load falls on every way alike."""
    ways = [(way, checkout) for way in chosen if way.startswith("podflow") for checkout in checkouts]
    ways += [(way, checkouts[0]) for way in chosen if not way.startswith("podflow")]
    hearings: list[tuple[Episode, list[Hearing]]] = []
    for episode in episodes:
        hearings.append((episode, []))
        for repeat in range(repeats):
            turn = repeat % len(ways)
            for way, checkout in ways[turn:] + ways[:turn]:
                progress.print(f"{episode.minutes:g} min, repeat {repeat + 1}: {checkout.name} {way} …", end=" ")
                hearing = hear_in_fresh_process(way, checkout, episode)
                progress.print(f"{hearing.wall_s:.1f} s")
                hearings[-1][1].append(hearing)
    return hearings


def print_vs_engine(hearings: list[tuple[Episode, list[Hearing]]], bank: str, machine_name: str) -> None:
    table = Table(title=f"The transcribe stage against the engine's own pipeline ({BANKS[bank].name}; {machine_name})")
    for column in (
        "episode",
        "code",
        "way",
        "s",
        "× real time",
        "/ engine, words",
        "/ engine",
        "CPU s",
        "peak RSS MiB",
        "WER %",
        "sentences",
        "lost",
        "repeated",
    ):
        table.add_column(column, justify="right")
    for episode, all_hearings in hearings:
        by_way: dict[tuple[str, str], list[Hearing]] = {}
        for hearing in all_hearings:
            by_way.setdefault((hearing.code, hearing.way), []).append(hearing)
        median_s = {key: statistics.median(h.wall_s for h in same) for key, same in by_way.items()}
        engine_s = {way: s for (_, way), s in median_s.items() if way != "podflow"}
        for (code, way), same in by_way.items():
            last = same[-1]
            table.add_row(
                f"{episode.minutes:g} min",
                code,
                WAYS[way],
                f"{median_s[code, way]:.1f}",
                f"{episode.minutes * 60 / median_s[code, way]:.1f}",
                *(
                    f"{engine_s[engine] / median_s[code, way]:.2f}" if engine in engine_s else "-"
                    for engine in ("engine-words", "engine")
                ),
                f"{statistics.median(h.cpu_s for h in same):.1f}",
                f"{max(h.peak_rss_mib for h in same):.0f}",
                f"{100 * last.word_error_rate:.1f}",
                str(len(episode.script)),
                str(max(len(h.missing_at_s) for h in same)),
                str(max(len(h.repeated_at_s) for h in same)),
            )
    console = Console(width=200)
    console.print(table)
    console.print("Times are medians; lost and repeated, the most of any repeat. Where sentences were lost (s):")
    for episode, all_hearings in hearings:
        for hearing in all_hearings:
            if hearing.missing_at_s or hearing.repeated_at_s:
                console.print(
                    f"  {episode.minutes:g} min, {hearing.code} {WAYS[hearing.way]}: lost at {hearing.missing_at_s}, "
                    f"repeated at {hearing.repeated_at_s}"
                )


def machine(device: str) -> str | None:
    """The machine in words: its CPUs, and on CUDA its GPU; None when --device cuda finds no GPU."""
    cpus = f"{os.cpu_count()} CPUs"
    if device == "cpu":
        return cpus
    try:
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        gpus = subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{gpus[0]}, {cpus}" if gpus else None


def print_bench(bench: Bench, checkouts: list[Checkout], rows: dict[str, Row], machine_name: str) -> None:
    described = ", ".join(f"{checkout.name} = {checkout.describe()}" for checkout in checkouts)
    table = Table(title=f"Long episodes through `podflow ingest` ({described}; {machine_name})")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for result in bench.results:
        table.add_row(*table_row(result, rows))
    console = Console(width=160)
    console.print(table)
    for name, finished in bench.start_up.items():
        console.print(
            f"Start-up ({name}): an ingest of an empty feed takes {finished.wall_s:.1f} s and peaks at "
            f"{finished.peak_rss_mib:.0f} MiB; every wall time above includes it."
        )
    if any(rows[result.row].needs_openai_server for result in bench.results):
        console.print(
            "¹ The OpenAI-compatible server (tests/openai_server.py, faster-whisper bundled tiny.en) runs in the bench "
            "process: its transcription's memory is not in the podflow process tree's RSS."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60], help="episode lengths (default 10 60)")
    parser.add_argument("--device", choices=list(ROWS_BY_DEVICE), default="cpu", help="the rows' device (default cpu)")
    all_rows = [name for rows in ROWS_BY_DEVICE.values() for name in rows]
    parser.add_argument("--rows", nargs="+", choices=all_rows, metavar="ROW", help="default: all of the device's")
    parser.add_argument("--episodes", type=int, default=1, help="episodes of each length in the feed (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="the first episode's sentence order")
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same rows from, side by side")
    parser.add_argument("--bank", choices=list(BANKS), default="espeak", help="the episodes' sentences")
    parser.add_argument("--vs-engine", action="store_true", help="the stage's code against the engine's pipeline")
    parser.add_argument("--repeats", type=int, default=1, help="--vs-engine: hearings of each way (default 1)")
    parser.add_argument(
        "--ways", nargs="+", choices=list(WAYS), default=["podflow", "engine-words", "engine"], help="--vs-engine's"
    )
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    device_rows = ROWS_BY_DEVICE[args.device]
    if unknown := [name for name in args.rows or () if name not in device_rows]:
        parser.error(f"--device {args.device} has no rows {', '.join(unknown)}; it has {', '.join(device_rows)}")
    rows = {name: device_rows[name] for name in args.rows or device_rows}
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    if (machine_name := machine(args.device)) is None:
        parser.error(f"--device {args.device}: nvidia-smi finds no GPU here")
    checkouts = [Checkout("this", ROOT)]
    if args.baseline and not (args.baseline / "flows" / "cli.py").is_file():
        parser.error(f"{args.baseline} is no podflow checkout: it has no flows/cli.py")
    if args.baseline:
        checkouts.append(Checkout("baseline", args.baseline.resolve()))
    progress = Console(stderr=True)
    for name, row in rows.items():
        if row.workers > args.episodes:
            progress.print(f"[yellow]{name} has {row.workers} workers but the feed {args.episodes} episode(s)")
    seeds = list(range(args.seed, args.seed + args.episodes))
    episodes = built_episodes(args.minutes, seeds, args.bank, progress)
    if args.vs_engine:
        print_vs_engine(vs_engine(checkouts, episodes, args.ways, args.repeats, progress), args.bank, machine_name)
        return
    bench = run_bench(checkouts, episodes, rows, progress)
    print_bench(bench, checkouts, rows, machine_name)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "checkouts": {checkout.name: checkout.describe() for checkout in checkouts},
            "machine": machine_name,
            "rows": {name: {"label": row.label, "flags": list(row.flags)} for name, row in rows.items()},
            "start_up": {
                name: {"wall_s": f.wall_s, "peak_rss_mib": f.peak_rss_mib} for name, f in bench.start_up.items()
            },
            "results": [asdict(result) for result in bench.results],
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
