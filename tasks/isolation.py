"""Parsing a stranger's document in a child process, bounded by settings whatever the document's shape.

podflow's own code on a document is linear, but the parsers it calls are not: feedparser is quadratic in an
element's attributes, html.parser in `</` (CVE-2025-6069). So each document is parsed in a child forked from a
fork server (started once, with the parsers imported), killed past `max_parse_s` of wall time (and `max_parse_s`
of CPU time, should this process die first), its address space capped at `max_parse_bytes`. Only the result comes
back, so this process holds what the document yields, not what parsing it took.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from tasks.errors import PodflowError
from tasks.models import Settings

T = TypeVar("T")
# Imported once in the fork server, so a child starts in milliseconds with its parser loaded.
PARSERS = ["tasks.feed_parse", "tasks.opml", "tasks.transcribe.published_parse"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PARSERS)
_children: set[BaseProcess] = set()
_children_lock = threading.Lock()


def parse_isolated(
    parse: Callable[..., T], args: tuple[Any, ...], settings: Settings, what: str, error: type[PodflowError]
) -> T:
    """`parse(*args)` in a child process; `error` naming `what` and the limit when it runs past `max_parse_s` or
    needs more than `max_parse_bytes`. A PodflowError the parser raises comes back as `error` with its message."""
    receiver, sender = _context.Pipe(duplex=False)
    child = _context.Process(
        target=_run_child, args=(sender, parse, args, settings.max_parse_s, settings.max_parse_bytes), daemon=True
    )
    with _children_lock:
        child.start()
        _children.add(child)
    sender.close()
    try:
        if not receiver.poll(settings.max_parse_s):
            raise error(f"{what} was not parsed within the max_parse_s={settings.max_parse_s:g} limit")
        try:
            outcome, value = receiver.recv()
        except EOFError:  # killed: by its CPU limit, by the memory limit inside C code, or by a stop
            child.join()
            if child.exitcode == -signal.SIGXCPU:
                raise error(f"{what} was not parsed within the max_parse_s={settings.max_parse_s:g} limit") from None
            raise error(f"{what} could not be parsed: the parser died ({_exit_reason(child.exitcode)})") from None
    finally:
        child.kill()
        child.join()
        receiver.close()
        with _children_lock:
            _children.discard(child)
    if outcome == "memory":
        raise error(f"{what} needs more than the max_parse_bytes={settings.max_parse_bytes:,} limit to parse")
    if outcome == "failed":
        raise error(f"{what} could not be parsed: the parser failed ({value})")
    if outcome == "error":
        raise error(value)
    return value  # type: ignore[no-any-return]


def kill_children() -> None:
    """Kill every parse in flight, from any thread: each waiting caller then raises at once."""
    with _children_lock:
        for child in _children:
            child.kill()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


def _lower_limit(kind: int, value: int) -> None:
    """Set a resource limit to `value`, or keep the lower one this process already has (it cannot be raised)."""
    hard = resource.getrlimit(kind)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _run_child(
    sender: Connection, parse: Callable[..., Any], args: tuple[Any, ...], max_s: float, max_bytes: int
) -> None:
    _lower_limit(resource.RLIMIT_CPU, math.ceil(max_s) + 1)
    _lower_limit(resource.RLIMIT_AS, max_bytes)
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
