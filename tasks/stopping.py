"""Stopping within seconds of SIGTERM: Prefect's cancel, a supervisor's stop, or Ctrl-C.

Prefect turns SIGTERM into a TerminationSignal raised in the flow's own thread, but the stage threads go on until
their task returns, and the task runner waits for them before the process may exit: a parse or a decode could so
hold a stopped run for hours. So the flow's thread, on that signal, calls `stop()` (flows/pipeline.py's
`stopping_on_termination`): parses in flight are killed, and decoding and downloading stop at their next frame or
chunk. Past STOP_GRACE_S the process exits whatever a thread is
still doing (a request in flight, a model's forward pass), its child processes told to stop first. Files are written
atomically (temp file and rename) and folders locked by the kernel, so the next run finds the ledger consistent, no
lock held, and resumes a download's `.part` where it ended.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from tasks.errors import StoppedError
from tasks.isolation import stop_parsing

STOP_GRACE_S = 3.0
EXIT_STATUS = 128 + signal.SIGTERM  # what a process killed by SIGTERM reports
_stopping = threading.Event()


def check(what: str) -> None:
    """StoppedError naming `what` once the run is stopping; called by loops between frames and chunks."""
    if _stopping.is_set():
        raise StoppedError(f"{what} was left: the run is stopping")


def stop() -> None:
    """Tell every stage thread to stop, kill the parses in flight, and exit the process STOP_GRACE_S from now."""
    if _stopping.is_set():
        return
    _stopping.set()
    stop_parsing()
    threading.Thread(target=_exit_after_grace, name="podflow-stop", daemon=True).start()


def _exit_after_grace() -> None:
    threading.Event().wait(STOP_GRACE_S)
    for pid in _child_pids():  # the Prefect API server it may have started, worker processes
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    os._exit(EXIT_STATUS)


def _child_pids() -> set[int]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    pids: set[int] = set()
    for task in tasks.iterdir() if tasks.exists() else ():
        try:
            pids |= {int(pid) for pid in (task / "children").read_text().split()}
        except OSError:  # the thread ended meanwhile
            continue
    return pids
