"""Transcription benchmark: every engine, bundled model and worker layout on the shipped speech, in one table.

Each row runs in a fresh Python process, so model load time and peak memory are its own. A row loads the engine
(timed), warms every worker on a short clip, then transcribes the demo clips `--rounds` times with its workers
through `tasks.transcribe.transcribe_audio`, the code the flow's transcribe task runs. Worker processes are
spawned like Prefect's ProcessPoolTaskRunner spawns them, each loading its own model once. Ratios are to
faster-whisper tiny.en with one worker, measured in the same run. On a machine with CUDA the rows run there, and the
title names the device. Run: `.venv/bin/python bench/transcribe.py [--rounds 2]`.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import tasks  # noqa: E402, F401  (first: it sets OpenMP's wait policy, which torch reads when it loads)

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "flows" / "demo"
BASELINE = ("faster-whisper", "bundled:tiny.en", 1, "threads")
ROWS = [
    BASELINE,
    ("faster-whisper", "bundled:tiny.en", 2, "threads"),
    ("faster-whisper", "bundled:tiny.en", 2, "processes"),
    ("faster-whisper", "bundled:base", 1, "threads"),
    ("faster-whisper", "bundled:base", 2, "threads"),
    ("whisper", "bundled:tiny.en", 1, "threads"),
    ("whisper", "bundled:tiny.en", 2, "threads"),
    ("whisper", "bundled:tiny.en", 2, "processes"),
    ("whisper", "bundled:base", 1, "threads"),
    ("whisper", "bundled:base", 2, "threads"),
    ("whisper", "bundled:base", 2, "processes"),
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def transcribe_clip(job: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """One clip in a worker: its text, seconds of audio and of work, and the worker's peak memory."""
    from tasks.download import sha256_of
    from tasks.models import AudioFile, Episode, Settings
    from tasks.transcribe import transcribe_audio

    clip, folder, settings_fields = job
    path = DEMO_DIR / f"{clip}.mp3"
    audio = AudioFile(episode_id=clip, path=path, source_url="bench", bytes=path.stat().st_size, sha256=sha256_of(path))
    started = time.perf_counter()
    transcript = transcribe_audio(
        audio, Episode(episode_id=clip, title=clip), Path(folder), Settings.model_validate(settings_fields)
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
    from tasks.transcribe.base import load_backend

    settings_fields, all_workers_ready, folder = job
    started = time.perf_counter()
    load_backend(Settings.model_validate(settings_fields))
    load_s = time.perf_counter() - started
    all_workers_ready.wait()
    transcribe_clip(("bees", folder, settings_fields))
    return load_s


def one_row(transcriber: str, model: str, workers: int, pool: str, device: str, rounds: int) -> dict[str, Any]:
    """Runs in its own process: load and warm every worker, then the timed run."""
    from tests.speech import word_error_rate

    scripts = {e["slug"]: e["script"] for e in json.loads((DEMO_DIR / "episodes.json").read_text())}
    settings = {
        "transcriber": transcriber,
        "model": model,
        "device": device,
        "transcribe_workers": workers,
        "transcribe_pool": pool,
    }
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        if pool == "processes":
            spawn = multiprocessing.get_context("spawn")
            executor: Executor = stack.enter_context(ProcessPoolExecutor(workers, mp_context=spawn))
            barrier = stack.enter_context(spawn.Manager()).Barrier(workers)
        else:
            executor, barrier = stack.enter_context(ThreadPoolExecutor(workers)), threading.Barrier(workers)
        load_s = max(executor.map(warm_worker, [(settings, barrier, f"{scratch}/warm-{i}") for i in range(workers)]))
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
        "rss_mib": sum(peaks.values()) + (peak_rss_mib() if pool == "processes" else 0),
    }


def device_in_use() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name()
    return "cpu", f"CPU, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="times each demo clip is transcribed per row")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row, print its JSON
    args = parser.parse_args()
    device, device_name = device_in_use()
    if args.row:
        print(json.dumps(one_row(*json.loads(args.row), device=device, rounds=args.rounds)))
        return

    table = Table(
        title=f"Transcription of the 4 demo clips × {args.rounds} on {device_name} "
        "(ratios to faster-whisper tiny.en, 1 worker)"
    )
    for column in (
        "engine",
        "model",
        "workers",
        "load s",
        "RTF per clip",
        "throughput × real time",
        "/ baseline",
        "WER",
        "peak RSS MiB",
    ):
        table.add_column(column, justify="right")
    baseline = None
    for transcriber, model, workers, pool in ROWS:
        row = json.dumps([transcriber, model, workers, pool])
        finished = subprocess.run(
            [sys.executable, __file__, "--row", row, "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        baseline = baseline or result["throughput"]
        table.add_row(
            transcriber,
            model.removeprefix("bundled:"),
            f"{workers} {pool}",
            f"{result['load_s']:.2f}",
            f"{result['rtf']:.3f}",
            f"{result['throughput']:.1f}",
            f"{result['throughput'] / baseline:.2f}",
            f"{result['wer']:.3f}",
            f"{result['rss_mib']:.0f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
