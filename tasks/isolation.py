"""Parsing a stranger's document in a child process, bounded by settings whatever the document's shape.

podflow's own code on a document is linear, but the parsers it calls are not: feedparser is quadratic in an
element's attributes, html.parser in `</` (CVE-2025-6069). So each document is parsed in a child forked from a
fork server (started once, with the parsers imported), killed past `max_parse_s` of wall time (and `max_parse_s`
of CPU time, should this process die first), its address space capped at `max_parse_bytes`. Only the result comes
back, so this process holds what the document yields, not what parsing it took.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable
from multiprocessing import forkserver, popen_forkserver, process, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import set_spawning_popen
from typing import Any, TypeVar

from tasks.errors import PodflowError, StoppedError
from tasks.models import Settings

T = TypeVar("T")
# Imported once in the fork server, so a child starts in milliseconds with its parser loaded.
PARSERS = ["tasks.feed_parse", "tasks.opml", "tasks.transcribe.published_parse"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PARSERS)


class _ParserPopen(popen_forkserver.Popen):
    """multiprocessing's fork-server launch, less the parent's `__main__`: a child would import it first (for
    `podflow`, the CLI and Prefect; for a deployment's `python -m prefect.engine`, Prefect), a second or more of
    every parse, and a parse needs only the preloaded parsers. The rest is CPython's own `_launch`."""

    def _launch(self, process_obj: process.BaseProcess) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)  # type: ignore[attr-defined]
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)  # type: ignore[attr-defined]


class _ParserProcess(process.BaseProcess):
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> _ParserPopen:
        return _ParserPopen(process_obj)


_children: set[process.BaseProcess] = set()
_children_lock = threading.Lock()
_stopped = threading.Event()


def parse_isolated(
    parse: Callable[..., T], args: tuple[Any, ...], settings: Settings, what: str, error: type[PodflowError]
) -> T:
    """`parse(*args)` in a child process; `error` naming `what` and the limit when it runs past `max_parse_s` or
    needs more than `max_parse_bytes`. A PodflowError the parser raises comes back as `error` with its message."""
    too_slow = f"{what} was not parsed within the max_parse_s={settings.documents.max_parse_s:g} limit"
    receiver, sender = _context.Pipe(duplex=False)
    child = _ParserProcess(
        target=_run_child,
        args=(sender, parse, args, settings.documents.max_parse_s, settings.documents.max_parse_bytes),
        daemon=True,
    )
    with _children_lock:
        if not _stopped.is_set():
            child.start()
            _children.add(child)
    sender.close()
    if child.pid is None:
        receiver.close()
        raise StoppedError(f"{what} was left: the run is stopping")
    try:
        if not receiver.poll(settings.documents.max_parse_s):
            raise error(too_slow)
        try:
            outcome, value = receiver.recv()
        except (EOFError, OSError):  # died, mid-answer or before: its CPU limit, memory inside C code, or a stop
            child.join()
            if _stopped.is_set():
                raise StoppedError(f"{what} was left: the run is stopping") from None
            if child.exitcode == -signal.SIGXCPU:
                raise error(too_slow) from None
            raise error(f"{what} could not be parsed: the parser died ({_exit_reason(child.exitcode)})") from None
    finally:
        if child.exitcode is None:  # not once it has ended: its pid may be another process's by now
            child.kill()
        child.join()
        child.close()
        receiver.close()
        with _children_lock:
            _children.discard(child)
    if outcome == "memory":
        raise error(f"{what} needs more than the max_parse_bytes={settings.documents.max_parse_bytes:,} limit to parse")
    if outcome == "failed":
        raise error(f"{what} could not be parsed: the parser failed ({value})")
    if outcome == "error":
        raise error(value)
    return value  # type: ignore[no-any-return]


def stop_parsing() -> None:
    """Kill every parse in flight and start no more, from any thread: each caller raises StoppedError at once."""
    with _children_lock:
        _stopped.set()
        for child in _children:
            child.kill()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


def _lower_limit(kind: int, soft: int, hard: int) -> None:
    """Set a resource limit, keeping a lower one this process already has (a hard limit cannot be raised)."""
    current = resource.getrlimit(kind)[1]
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def _run_child(
    sender: Connection, parse: Callable[..., Any], args: tuple[Any, ...], max_s: float, max_bytes: int
) -> None:
    cpu_s = math.ceil(max_s) + 1
    _lower_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)  # SIGXCPU at the soft limit; SIGKILL at the hard one
    _lower_limit(resource.RLIMIT_AS, max_bytes, max_bytes)
    _lower_limit(resource.RLIMIT_CORE, 0, 0)  # SIGXCPU would dump the child's core, up to max_parse_bytes
    try:
        outcome: tuple[str, Any] = ("ok", parse(*args))
    except PodflowError as exc:
        outcome = ("error", str(exc))
    except MemoryError:
        outcome = ("memory", None)
    except Exception as exc:  # a parser's bug; its message may quote the document, so only its kind is told
        outcome = ("failed", type(exc).__name__)
    try:
        sender.send(outcome)
    except MemoryError:  # the result itself is too large to send within the limit
        sender.send(("memory", None))
