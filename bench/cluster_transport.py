"""What it costs to get an episode's audio to a cluster worker: as bytes through Dask (the flow reads the file,
scatters it, the task takes it), against as a path (the worker reads the flow's file, then checks its SHA-256, as
`audio_on_worker` does). A real scheduler and one worker, separate processes on this machine; each size is an
hour of MP3 at a bitrate, so the table reads as seconds per hour of audio.

Run: `.venv/bin/python bench/cluster_transport.py [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distributed  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.files import sha256_of  # noqa: E402
from tests.dask_cluster import DASK_WORKER, DASK_WORKER_OPTIONS, dask_cluster  # noqa: E402

BITRATES_KBPS = (64, 128, 192)


def took_bytes(data: bytes) -> int:
    return len(data)


def read_and_checked(path: str) -> int:
    sha256_of(Path(path))
    return os.stat(path).st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="podflow-transport-"))
    # The tests' launcher: a scheduler and a plain Dask worker, by PID (no model: nothing here hears audio).
    with dask_cluster(folder / "dask", 1, DASK_WORKER_OPTIONS, worker_command=DASK_WORKER) as cluster:
        address = cluster.address
        table = Table(title=f"An hour of audio to one worker (median of {args.rounds})")
        for column in ("MP3 bitrate", "MB an hour", "as bytes s", "MB/s", "as a path s"):
            table.add_column(column, justify="right")
        with distributed.Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            for kbps in BITRATES_KBPS:
                size = kbps * 1000 // 8 * 3600
                path = folder / f"{kbps}.mp3"
                path.write_bytes(os.urandom(size))
                by_bytes, by_path = [], []
                for _ in range(args.rounds):
                    begun = time.perf_counter()
                    sent = client.scatter(path.read_bytes(), hash=False)
                    assert client.submit(took_bytes, sent, pure=False).result() == size
                    by_bytes.append(time.perf_counter() - begun)
                    sent.release()
                    begun = time.perf_counter()
                    assert client.submit(read_and_checked, str(path), pure=False).result() == size
                    by_path.append(time.perf_counter() - begun)
                seconds = statistics.median(by_bytes)
                table.add_row(
                    f"{kbps} kbps",
                    f"{size / 1e6:.1f}",
                    f"{seconds:.2f}",
                    f"{size / 1e6 / seconds:.0f}",
                    f"{statistics.median(by_path):.2f}",
                )
        Console().print(table)


if __name__ == "__main__":
    main()
