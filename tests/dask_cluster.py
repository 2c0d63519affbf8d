"""A real Dask cluster on 127.0.0.1 for the tests and benches: a `dask scheduler` process and `podflow worker`
processes (or plain `dask worker` ones, for work that needs no model), each started and stopped by its PID, as an
operator's hosts would run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import distributed

from tasks.transcribe.cluster_worker import RESOURCE

PODFLOW = str(Path(sys.executable).with_name("podflow"))
PODFLOW_WORKER = (PODFLOW, "worker")
# A plain Dask worker with one transcribe slot and no model: for synthetic work (bench/pipeline.py).
DASK_WORKER = (sys.executable, "-m", "distributed.cli.dask_worker")
DASK_WORKER_OPTIONS = ("--nthreads", "1", "--resources", f"{RESOURCE}=1")


@dataclass
class DaskProcesses:
    address: str
    folder: Path
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_command: Sequence[str] = PODFLOW_WORKER  # followed by the address, the name and the options

    def slots(self) -> int:
        with distributed.Client(self.address, timeout=10, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            return int(sum(info.get("resources", {}).get(RESOURCE, 0) for info in workers))

    def wait_for_slots(self, slots: int, timeout_s: float = 180.0) -> None:
        """Until the workers offer `slots` transcribe slots: each loads its model before it registers."""
        deadline = time.monotonic() + timeout_s
        while self.slots() < slots:
            for process in self.workers:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited ({process.returncode}): see {self.folder}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster offers {self.slots()} of {slots} slots after {timeout_s} s")
            time.sleep(0.25)

    def stop_workers(self) -> None:
        for process in reversed(self.workers):
            stop(process)

    def start_worker(self, name: str, options: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 (the process writes it until it stops)
        process = subprocess.Popen(
            [*self.worker_command, self.address, "--name", name, "--no-dashboard", *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        log.close()
        self.workers.append(process)
        return process


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM by PID (a worker's nanny then stops its worker process), SIGKILL if it outstays the timeout."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout_s)


@contextmanager
def dask_cluster(
    folder: Path,
    workers: int,
    worker_options: Sequence[str] = (),
    scheduler_env: dict[str, str] | None = None,
    worker_command: Sequence[str] = PODFLOW_WORKER,
) -> Iterator[DaskProcesses]:
    """A scheduler and `workers` workers (podflow workers unless `worker_command` says otherwise; one slot each),
    started and ready; all stopped by PID after, with those `start_worker` added since."""
    folder.mkdir(parents=True, exist_ok=True)
    address_file = folder / "scheduler.json"
    with ExitStack() as stack, open(folder / "scheduler.log", "ab") as log:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
            + ["--no-dashboard", "--scheduler-file", str(address_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(scheduler_env or {})},
        )
        stack.callback(stop, scheduler)
        # Waits for the file the scheduler writes once it listens, and parses it whole.
        address = distributed.utils.json_load_robust(str(address_file), timeout=60)["address"]
        cluster = DaskProcesses(address, folder, scheduler, worker_command=worker_command)
        stack.callback(cluster.stop_workers)
        for number in range(1, workers + 1):
            cluster.start_worker(f"w{number}", worker_options)
        cluster.wait_for_slots(workers)
        yield cluster
