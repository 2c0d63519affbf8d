"""Transcription benchmark: every engine, bundled model and worker layout on the shipped speech, in one table.

Each row runs in a fresh Python process, so model load time and peak memory are its own. A row loads the engine
(timed), warms every worker on a short clip, then transcribes the demo clips `--rounds` times with its workers
through `tasks.transcribe.stage.transcribe_audio`, the code the flow's transcribe task runs. Worker processes are
spawned like Prefect's ProcessPoolTaskRunner spawns them, each loading its own model once. Ratios (`/ reference`) are
to faster-whisper tiny.en with one worker, measured in the same run. On a machine with CUDA the rows run there, and
the title names the device.

`--baseline PATH` runs every row from another checkout as well (a `git worktree` of an older commit): its row process
imports that checkout's `tasks`, while this script, the clips and the scoring stay this checkout's. The two alternate,
and which runs first alternates from one pair of runs to the next, so a drift in the machine's load hits both
alike; `--repeats N` runs each pair N times and shows medians. "this / baseline" is the throughput ratio.
Run: `.venv/bin/python bench/transcribe.py [--rounds 2] [--rows faster-whisper:tiny.en:1:threads ...]
[--baseline PATH [--repeats 3]] [--json bench/out/transcribe.json]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The checkout whose code the rows import: this script's own, or the one a --baseline row's process is started for.
# Named in the environment, not on PYTHONPATH: what this line puts first on sys.path wins over PYTHONPATH (and over an
# editable install of another checkout). Worker processes spawned from a row inherit it.
CODE_ENV = "PODFLOW_BENCH_CODE"
CODE_ROOT = Path(os.environ.get(CODE_ENV, ROOT))
sys.path.insert(0, str(CODE_ROOT))

from checkout import Checkout  # noqa: E402  (bench/, beside this script: whichever checkout a row imports)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import tasks  # noqa: E402  (first: it sets OpenMP's wait policy, which torch reads when it loads)

DEMO_DIR = ROOT / "flows" / "demo"  # this checkout's clips for every row, so both checkouts hear the same audio


@dataclass(frozen=True)
class Layout:
    """An engine, a model and its workers: one row."""

    transcriber: str
    model: str
    workers: int
    pool: str

    @property
    def name(self) -> str:
        """What `--rows` takes: faster-whisper:tiny.en:1:threads."""
        return f"{self.transcriber}:{self.model.removeprefix('bundled:')}:{self.workers}:{self.pool}"


REFERENCE = Layout("faster-whisper", "bundled:tiny.en", 1, "threads")  # the row the "/ reference" ratios are to
ROWS = {
    layout.name: layout
    for layout in (
        REFERENCE,
        Layout("faster-whisper", "bundled:tiny.en", 2, "threads"),
        Layout("faster-whisper", "bundled:tiny.en", 2, "processes"),
        Layout("faster-whisper", "bundled:base", 1, "threads"),
        Layout("faster-whisper", "bundled:base", 2, "threads"),
        Layout("whisper", "bundled:tiny.en", 1, "threads"),
        Layout("whisper", "bundled:tiny.en", 2, "threads"),
        Layout("whisper", "bundled:tiny.en", 2, "processes"),
        Layout("whisper", "bundled:base", 1, "threads"),
        Layout("whisper", "bundled:base", 2, "threads"),
        Layout("whisper", "bundled:base", 2, "processes"),
    )
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def transcribe_clip(job: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """One clip in a worker: its text, seconds of audio and of work, and the worker's peak memory."""
    from tasks.download import sha256_of
    from tasks.models import AudioFile, Episode, Settings
    from tasks.transcribe.stage import transcribe_audio

    clip, folder, settings_fields = job
    path = DEMO_DIR / f"{clip}.mp3"
    audio = AudioFile(episode_id=clip, path=path, source_url="bench", bytes=path.stat().st_size, sha256=sha256_of(path))
    started = time.perf_counter()
    transcript = transcribe_audio(
        audio, Episode(episode_id=clip, title=clip), Path(folder), Settings.of(**settings_fields)
    )
    return {
        "clip": clip,
        "text": transcript.text,
        "audio_s": transcript.audio_duration_s,
        "work_s": time.perf_counter() - started,
        "pid": os.getpid(),
        "rss_mib": peak_rss_mib(),
    }


def warm_worker(job: tuple[dict[str, Any], Any, str]) -> float:
    """Load the engine (timed), then, with every other worker at once, transcribe a first clip: each worker holds
    its own model (openai-whisper checks one out per concurrent transcription) before the clock starts."""
    from tasks.models import Settings
    from tasks.transcribe.base import load_backend, workers_in_process

    settings_fields, all_workers_ready, folder = job
    started = time.perf_counter()
    settings = Settings.of(**settings_fields)
    load_backend(settings, workers_in_process(settings))
    load_s = time.perf_counter() - started
    all_workers_ready.wait()
    transcribe_clip(("bees", folder, settings_fields))
    return load_s


def one_row(layout: Layout, device: str, rounds: int) -> dict[str, Any]:
    """Runs in its own process: load and warm every worker, then the timed run."""
    from tests.speech import word_error_rate

    scripts = {e["slug"]: e["script"] for e in json.loads((DEMO_DIR / "episodes.json").read_text())}
    settings = {
        "transcriber": layout.transcriber,
        "model": layout.model,
        "device": device,
        "transcribe_workers": layout.workers,
        "transcribe_pool": layout.pool,
    }
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        if layout.pool == "processes":
            spawn = multiprocessing.get_context("spawn")
            executor: Executor = stack.enter_context(ProcessPoolExecutor(layout.workers, mp_context=spawn))
            barrier = stack.enter_context(spawn.Manager()).Barrier(layout.workers)
        else:
            executor, barrier = (
                stack.enter_context(ThreadPoolExecutor(layout.workers)),
                threading.Barrier(layout.workers),
            )
        load_s = max(
            executor.map(warm_worker, [(settings, barrier, f"{scratch}/warm-{i}") for i in range(layout.workers)])
        )
        jobs = [(clip, f"{scratch}/{round_}-{clip}", settings) for round_ in range(rounds) for clip in scripts]
        started = time.perf_counter()
        results = list(executor.map(transcribe_clip, jobs))
        wall_s = time.perf_counter() - started
    peaks = {result["pid"]: result["rss_mib"] for result in results}
    audio_s = sum(result["audio_s"] for result in results)
    return {
        "load_s": load_s,
        "rtf": statistics.mean(result["work_s"] / result["audio_s"] for result in results),
        "throughput": audio_s / wall_s,
        "wer": statistics.mean(word_error_rate(scripts[r["clip"]], r["text"]) for r in results),
        "rss_mib": sum(peaks.values()) + (peak_rss_mib() if layout.pool == "processes" else 0),
        "code": str(Path(tasks.__file__).resolve().parents[1]),  # the checkout it ran, checked by the caller
    }


def device_in_use() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name()
    return "cpu", f"CPU, {os.cpu_count()} cores"


def run_row(checkout: Checkout, layout: Layout, rounds: int) -> dict[str, Any]:
    """One row in a fresh process that imports the checkout's code; exits the bench when it fails or ran other code."""
    finished = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--row", layout.name, "--rounds", str(rounds)],
        cwd=checkout.path,
        env={**os.environ, CODE_ENV: str(checkout.path)},
        capture_output=True,
        text=True,
    )
    if finished.returncode != 0:
        sys.exit(f"{checkout.name}: {layout.name} exited with {finished.returncode}:\n{finished.stderr[-4000:]}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    if Path(result["code"]) != checkout.path:
        sys.exit(f"{checkout.name}: {layout.name} imported the code in {result['code']}, not {checkout.path}")
    return result


METRICS = {  # a result's key: its column and format
    "load_s": ("load s", ".2f"),
    "rtf": ("RTF per clip", ".3f"),
    "throughput": ("throughput × real time", ".1f"),
    "wer": ("WER", ".3f"),
    "rss_mib": ("peak RSS MiB", ".0f"),
}


def medians(runs: list[dict[str, Any]], layout: Layout, checkout: str) -> dict[str, float] | None:
    """Each metric's median over the row's repeats from the checkout; None where the row did not run."""
    own = [run for run in runs if run["row"] == layout.name and run["checkout"] == checkout]
    return {key: statistics.median(run[key] for run in own) for key in METRICS} if own else None


def print_table(runs: list[dict[str, Any]], layouts: list[Layout], checkouts: list[Checkout], title: str) -> None:
    """One line per row; with a baseline, each metric's cell holds "this | baseline"."""
    with_baseline = len(checkouts) > 1
    table = Table(title=title)
    for column in ("engine", "model", "workers"):
        table.add_column(column, justify="right")
    for key, (column, _) in METRICS.items():
        table.add_column(f"{column} (this | baseline)" if with_baseline else column, justify="right")
        if key == "throughput":
            table.add_column("/ reference", justify="right")
            if with_baseline:
                table.add_column("this / baseline", justify="right")
    reference = medians(runs, REFERENCE, "this")
    for layout in layouts:
        this = medians(runs, layout, "this")
        baseline = medians(runs, layout, "baseline") if with_baseline else None
        assert this is not None
        cells = [layout.transcriber, layout.model.removeprefix("bundled:"), f"{layout.workers} {layout.pool}"]
        for key, (_, format_spec) in METRICS.items():
            shown = format(this[key], format_spec)
            cells.append(shown if baseline is None else f"{shown} | {baseline[key]:{format_spec}}")
            if key == "throughput":
                cells.append(f"{this[key] / reference[key]:.2f}" if reference else "-")
                if baseline is not None:
                    cells.append(f"{this[key] / baseline[key]:.3f}")
        table.add_row(*cells)
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="times each demo clip is transcribed per row")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), metavar="ROW", help="default: all")
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same rows from, side by side")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each row per checkout; medians are shown")
    parser.add_argument("--json", type=Path, help="write every run's results here too")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row, print its JSON
    args = parser.parse_args()
    device, device_name = device_in_use()
    if args.row:
        print(json.dumps(one_row(ROWS[args.row], device=device, rounds=args.rounds)))
        return
    checkouts = [Checkout("this", ROOT)]
    if args.baseline and not (args.baseline / "tasks" / "transcribe").is_dir():
        parser.error(f"{args.baseline} is no podflow checkout: it has no tasks/transcribe")
    if args.baseline:
        checkouts.append(Checkout("baseline", args.baseline.resolve()))

    progress = Console(stderr=True)
    layouts = [ROWS[name] for name in args.rows]
    runs = []
    for index, layout in enumerate(layouts):
        for repeat in range(args.repeats):
            # Which checkout goes first alternates, so neither is always the one a warmer machine favours.
            for checkout in checkouts if (index + repeat) % 2 == 0 else checkouts[::-1]:
                progress.print(f"{checkout.name}: {layout.name} …", end=" ")
                result = run_row(checkout, layout, args.rounds)
                progress.print(f"{result['throughput']:.1f} × real time")
                runs.append({"row": layout.name, "checkout": checkout.name, "repeat": repeat, **result})

    described = "; ".join(f"{checkout.name} = {checkout.describe()}" for checkout in checkouts)
    medians_of = f", medians of {args.repeats} runs" if args.repeats > 1 else ""
    title = (
        f"Transcription of the 4 demo clips × {args.rounds} on {device_name} ({described}{medians_of}; "
        "/ reference: throughput over faster-whisper tiny.en, 1 worker, from this checkout)"
    )
    print_table(runs, layouts, checkouts, title)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "device": device_name,
            "rounds": args.rounds,
            "checkouts": {checkout.name: checkout.describe() for checkout in checkouts},
            "runs": runs,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
