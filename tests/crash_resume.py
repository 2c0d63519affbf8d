"""Kill `podflow ingest` with SIGKILL at random moments, many times in a row, then run it to the end, and check that
nothing was lost or redone.

The test runs one round; for more, run `.venv/bin/python -m tests.crash_resume --rounds 10`, which prints a table.
A round is a fresh output folder, a few killed runs, then a run to the end. Each kill hits the whole process group
(the CLI and its ephemeral Prefect server): every third one at a random moment of start-up, the others at a random
moment up to 6 s after the run first wrote the ledger, among downloads, transcriptions, metadata and file writes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tasks.ledger_db import LEDGER
from tasks.models import EpisodeMetadata, Transcript
from tests.conftest import DEMO_EPISODES
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.ledgers import ledger_written_at, read_folder_ledger

ROOT = Path(__file__).resolve().parents[1]
COPIES = 2  # each demo clip twice: 8 episodes


@dataclass
class CrashReport:
    kills: int = 0
    kills_with_work_left: int = 0  # episodes registered and not all complete: the killed run had work to lose
    episodes: int = 0
    downloads_redone: int = 0  # audio fetched again after a kill found it downloaded
    transcripts_redone: int = 0  # transcript.json rewritten after a kill found it written
    complete_episodes_touched: int = 0  # an episode complete at a kill whose ledger entry changed afterwards
    leftovers: list[str] = field(default_factory=list)  # .part and temp files after the final run
    problems: list[str] = field(default_factory=list)  # outputs that do not check out


@dataclass(frozen=True)
class Snapshot:
    audio_hits: dict[str, int]
    registered: int  # episodes in the ledger
    downloaded: set[str]  # episode ids
    transcript_mtimes: dict[str, int]
    complete: dict[str, str]  # episode id -> its ledger entry as JSON


def serve_feed(server: FeedServer) -> tuple[str, dict[str, bytes]]:
    items, audio = [], {}
    for copy in range(COPIES):
        for demo in DEMO_EPISODES:
            guid = f"{demo.slug}-{copy}"
            audio[guid] = demo.audio
            server.add(f"/{guid}.mp3", demo.audio, delay_s=0.2)
            items.append(rss_item(f"{demo.title} ({copy})", guid=guid, enclosure=f"{guid}.mp3"))
    return server.add("/feed.xml", rss(items, title="Crash Test Show")), audio


def ingest(feed_url: str, output: Path, prefect_home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    with open(log, "ab") as log_file:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("podflow")),
                "ingest",
                feed_url,
                "--output",
                str(output),
                "--retry-backoff-s",
                "0.05",
                "--allow-network",
                "127.0.0.0/8",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_ledger_write(output: Path, after: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        folder = feed_dir(output)
        if folder is not None and ledger_written_at(folder) > after:
            return
        time.sleep(0.05)


def feed_dir(output: Path) -> Path | None:
    return next((path.parent for path in output.glob(f"*/{LEDGER}")), None)


def snapshot(server: FeedServer, output: Path) -> Snapshot:
    hits = {guid: server.count(f"/{guid}.mp3") for guid in _guids()}
    folder = feed_dir(output)
    if folder is None:
        return Snapshot(hits, 0, set(), {}, {})
    ledger = read_folder_ledger(folder)
    downloaded, mtimes, complete = set(), {}, {}
    for episode_id, entry in ledger.episodes.items():
        episode_dir = folder / "episodes" / entry.folder
        if (done := entry.stages.get("download")) is not None and done.status == "done":
            downloaded.add(episode_id)
        if (episode_dir / "transcript.json").is_file():
            mtimes[episode_id] = (episode_dir / "transcript.json").stat().st_mtime_ns
        if entry.complete and (episode_dir / "metadata.json").is_file():
            complete[episode_id] = entry.model_dump_json()
    return Snapshot(hits, len(ledger.episodes), downloaded, mtimes, complete)


def _guids() -> list[str]:
    return [f"{demo.slug}-{copy}" for copy in range(COPIES) for demo in DEMO_EPISODES]


def check_outputs(output: Path, audio: dict[str, bytes], report: CrashReport) -> None:
    folder = feed_dir(output)
    assert folder is not None, "the final run wrote no ledger"
    ledger = read_folder_ledger(folder)
    report.episodes += len(ledger.episodes)
    for episode_id, entry in ledger.episodes.items():
        episode_dir = folder / "episodes" / entry.folder
        try:
            document = EpisodeMetadata.model_validate_json((episode_dir / "metadata.json").read_bytes())
            transcript = Transcript.model_validate_json((episode_dir / "transcript.json").read_bytes())
            audio_bytes = (episode_dir / document.audio.file).read_bytes()
        except (OSError, ValueError) as error:
            report.problems.append(f"{episode_id}: {error}")
            continue
        if not entry.complete:
            report.problems.append(f"{episode_id}: not complete in the ledger")
        if hashlib.sha256(audio_bytes).hexdigest() != hashlib.sha256(audio[episode_id]).hexdigest():
            report.problems.append(f"{episode_id}: audio differs from the served file")
        if document.audio.sha256 != transcript.audio_sha256 or not transcript.text.strip():
            report.problems.append(f"{episode_id}: transcript missing, empty or from other audio")
    report.leftovers += [str(p.relative_to(output)) for pattern in ("*.part", ".*.tmp") for p in output.rglob(pattern)]


def run_round(kills: int, rng: random.Random, workdir: Path, report: CrashReport) -> None:
    """`kills` killed runs of one feed into a fresh output folder, then a run to the end; adds what was lost or
    redone to `report`."""
    output, prefect_home, log = workdir / "out", workdir / "prefect", workdir / "ingest.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with FeedServer() as server:
        feed_url, audio = serve_feed(server)
        seen: list[Snapshot] = []
        for kill in range(kills):
            process = ingest(feed_url, output, prefect_home, log)
            if kill % 3 == 2:  # during start-up: the ephemeral API, the feed fetch, the first ledger write
                time.sleep(rng.uniform(0.5, 6.0))
            else:  # once this run has written the ledger: somewhere in downloads, transcriptions and metadata
                wait_for_ledger_write(output, after=time.time(), process=process)
                time.sleep(rng.uniform(0.0, 6.0))
            if process.poll() is not None and process.returncode != 0:  # it failed on its own: nothing to kill
                report.problems.append(f"run {kill + 1} exited with {process.returncode}: {log.read_text()[-2000:]}")
                return
            with contextlib.suppress(ProcessLookupError):  # it may have finished its work just before the kill
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            seen.append(snapshot(server, output))
        final = ingest(feed_url, output, prefect_home, log)
        if final.wait(timeout=600) != 0:
            report.problems.append(f"the final run exited with {final.returncode}: {log.read_text()[-2000:]}")
            return
        end = snapshot(server, output)
    report.kills += kills
    for at_kill in seen:
        report.kills_with_work_left += bool(at_kill.registered) and len(at_kill.complete) < len(audio)
        report.downloads_redone += sum(end.audio_hits[e] > at_kill.audio_hits[e] for e in at_kill.downloaded)
        report.transcripts_redone += sum(
            end.transcript_mtimes.get(e) != m for e, m in at_kill.transcript_mtimes.items()
        )
        report.complete_episodes_touched += sum(end.complete.get(e) != entry for e, entry in at_kill.complete.items())
    check_outputs(output, audio, report)


def run_trials(rounds: int, kills_per_round: int, seed: int, workdir: Path) -> CrashReport:
    rng, report = random.Random(seed), CrashReport()
    for round_number in range(rounds):
        run_round(kills_per_round, rng, workdir / f"round-{round_number}", report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kills-per-round", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="podflow-crash-") as workdir:
        started = time.monotonic()
        report = run_trials(args.rounds, args.kills_per_round, args.seed, Path(workdir))
    table = Table(title=f"SIGKILL at random moments, then a run to the end ({time.monotonic() - started:.0f} s)")
    for column in (
        "kills",
        "with work left",
        "episodes",
        "downloads redone",
        "transcripts redone",
        "complete episodes touched",
        "leftover files",
        "bad outputs",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.kills),
        str(report.kills_with_work_left),
        str(report.episodes),
        str(report.downloads_redone),
        str(report.transcripts_redone),
        str(report.complete_episodes_touched),
        str(len(report.leftovers)),
        str(len(report.problems)),
    )
    Console(width=150).print(table)
    for problem in report.problems + report.leftovers:
        print(problem)


if __name__ == "__main__":
    main()
