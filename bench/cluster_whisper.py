"""Cluster throughput with real Whisper: the same episodes heard by a Dask cluster of 1, 2 and 4 worker processes
(one transcribe slot each, all on this machine, so on a GPU machine they share the GPU), through
`ClusterClient.transcribe`, the call the transcribe stage makes. Prints audio-hours per hour for each size.

The workers are started as `podflow worker` starts them (`dask_worker_command`: `dask worker` with the podflow
preload), each loads its model before the clock starts, as on a cluster that outlives its flow runs. The episodes
are built from the sentence bank (tests/long_episode.py), so every row also reports the sentences not heard.
No Prefect is imported: a GPU machine needs only the workers' packages.

Run: `.venv/bin/python bench/cluster_whisper.py --workers 1 2 4 --episodes 8 --minutes 10
[--transcriber whisper --model PATH.pt --device cuda] [--json FILE]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distributed  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.events import nobody  # noqa: E402
from tasks.files import sha256_of  # noqa: E402
from tasks.models import AudioFile, Episode, Settings  # noqa: E402
from tasks.transcribe.cluster import ClusterClient  # noqa: E402
from tasks.transcribe.cluster_worker import dask_worker_command  # noqa: E402
from tests.long_episode import Spoken, compare, heard_sentences, write_episode  # noqa: E402


@dataclass
class Row:
    workers: int
    episodes: int
    audio_h: float
    wall_s: float
    sentences: int
    lost: int
    repeated: int

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_h * 3600 / self.wall_s


def started(command: list[str], log: Path, **options: object) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, **options)  # type: ignore[call-overload]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


def measure(workers: int, episodes: list[tuple[AudioFile, list[Spoken]]], settings: Settings, folder: Path) -> Row:
    folder.mkdir(parents=True)
    address_file = folder / "scheduler.json"
    with ExitStack() as stack:
        scheduler = started(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
            + ["--no-dashboard", "--scheduler-file", str(address_file)],
            folder / "scheduler.log",
        )
        stack.callback(stop, scheduler)
        address = distributed.utils.json_load_robust(str(address_file), timeout=60)["address"]
        worker_settings = settings.but(worker_slots=1)
        for number in range(workers):
            command, environment = dask_worker_command(address, worker_settings, ["--no-dashboard"])
            stack.callback(stop, started(command, folder / f"w{number}.log", env=environment))
        client = ClusterClient(address, 60)
        stack.callback(client.client.close)
        deadline = time.monotonic() + 600
        while client.slots() < workers:  # each worker registers once its model is loaded
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client.slots()} of {workers} workers came up: see {folder}")
            time.sleep(0.5)
        begun = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            transcripts = list(
                pool.map(
                    lambda item: client.transcribe(
                        item[0], Episode(episode_id=item[0].episode_id, title="bench"), settings, nobody
                    ),
                    episodes,
                )
            )
        wall_s = time.monotonic() - begun
    lost = repeated = 0
    for (_, script), transcript in zip(episodes, transcripts):
        comparison = compare(script, heard_sentences(transcript.segments))
        lost, repeated = lost + len(comparison.missing), repeated + len(comparison.repeated)
    audio_h = sum(transcript.audio_duration_s for transcript in transcripts) / 3600
    return Row(workers, len(episodes), audio_h, wall_s, sum(len(s) for _, s in episodes), lost, repeated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--transcriber", default="faster-whisper")
    parser.add_argument("--model", default="bundled:tiny.en")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute-type")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    settings = Settings.of(
        transcriber=args.transcriber, model=args.model, device=args.device, compute_type=args.compute_type
    )
    console = Console()
    folder = Path(tempfile.mkdtemp(prefix="podflow-cluster-bench-"))
    paths = [folder / f"episode-{seed}.mp3" for seed in range(args.episodes)]
    with ProcessPoolExecutor() as pool:
        scripts = list(pool.map(write_episode, paths, [args.minutes * 60] * len(paths), range(len(paths))))
    episodes = [
        (AudioFile(episode_id=p.stem, path=p, source_url="bench", bytes=p.stat().st_size, sha256=sha256_of(p)), script)
        for p, script in zip(paths, scripts)
    ]
    rows = []
    for workers in args.workers:
        rows.append(measure(workers, episodes, settings, folder / f"cluster-{workers}"))
        console.print(rows[-1])
    table = Table(title=f"{args.transcriber} {args.model} on {args.device}: {args.episodes} × {args.minutes:g} min")
    for column in ("workers", "audio h", "wall s", "audio-hours per hour", "vs 1 worker", "lost / repeated"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row.workers),
            f"{row.audio_h:.2f}",
            f"{row.wall_s:.1f}",
            f"{row.audio_hours_per_hour:.0f}",
            f"{row.audio_hours_per_hour / rows[0].audio_hours_per_hour:.2f}×",
            f"{row.lost} / {row.repeated} of {row.sentences}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))


if __name__ == "__main__":
    main()
