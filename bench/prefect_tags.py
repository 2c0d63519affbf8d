"""What a stage tag costs each task run when no concurrency limit exists for it, and when one does; and what
ephemeral mode costs a process that runs a flow.

Twenty 0.2 s tasks on a 2-thread ThreadPoolTaskRunner, per flow run, against the default local (SQLite) API, or the
server PREFECT_API_URL names (bench/prefect_tags_servers.sh runs it against SQLite and PostgreSQL servers); the
first flow run of the process is measured apart. Overhead per task is (makespan - ideal) / (tasks per thread).
Run: `.venv/bin/python bench/prefect_tags.py [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="podflow-bench-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from prefect import flow, get_client, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import wait  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

TASKS, THREADS, SECONDS = 20, 2, 0.2
IDEAL = TASKS * SECONDS / THREADS


@task(cache_policy=NO_CACHE)
def work() -> None:
    time.sleep(SECONDS)


@flow(name="bench-tags")
def one_round(tags: list[str]) -> float:
    job = work.with_options(tags=set(tags))
    with ThreadPoolTaskRunner(max_workers=THREADS) as runner:
        started = time.perf_counter()
        wait([runner.submit(job, {}) for _ in range(TASKS)])
        return time.perf_counter() - started


def overhead_ms(makespan: float) -> float:
    return (makespan - IDEAL) / (TASKS / THREADS) * 1000


TRIVIAL_FLOW = "from prefect import flow\nflow(lambda: None, name='trivial')()\n"


def process_with_a_trivial_flow_s(prefect_home: str, script: str = TRIVIAL_FLOW) -> float:
    """Wall time of a fresh Python process that runs one empty flow in ephemeral mode (or just imports Prefect)."""
    env = {**os.environ, "PREFECT_HOME": prefect_home}
    env.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def ephemeral_mode_costs() -> str:
    home = tempfile.mkdtemp(prefix="podflow-bench-ephemeral-")
    imports = process_with_a_trivial_flow_s(home, "import prefect")
    first = process_with_a_trivial_flow_s(home)  # creates the SQLite database
    again = process_with_a_trivial_flow_s(home)
    return (
        f"Ephemeral mode, one empty flow in a new process: {first:.1f} s with a new PREFECT_HOME (database "
        f"created), {again:.1f} s after that; importing Prefect alone takes {imports:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    if "PREFECT_API_URL" not in os.environ:
        Console().print(ephemeral_mode_costs())
    first = one_round([])
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="bench-limited", concurrency_limit=100)
    variants = {
        "no tag": [],
        "tag, no limit created": ["bench-unlimited"],
        "tag, limit 100 (never reached)": ["bench-limited"],
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):  # interleaved, so drift on the machine hits every variant alike
        for name, tags in variants.items():
            results[name].append(one_round(tags))

    table = Table(
        title=f"{TASKS} tasks of {SECONDS} s on {THREADS} threads per flow run (ideal {IDEAL:.2f} s), "
        f"{rounds} flow runs each; first flow run of the process, untagged: {first:.2f} s"
    )
    for column in ("stage task", "makespan median s", "max s", "overhead per task, median ms", "worst ms"):
        table.add_column(column, justify="right")
    for name, makespans in results.items():
        table.add_row(
            name,
            f"{statistics.median(makespans):.2f}",
            f"{max(makespans):.2f}",
            f"{overhead_ms(statistics.median(makespans)):.0f}",
            f"{overhead_ms(max(makespans)):.0f}",
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
