"""What a stage tells the world while it works: one event type, and the one throttle on progress.

A stage's domain code takes `tell: Tell` and calls it with an event; the `@task` around it decides where events go
(the run's log, the ledger, a cluster worker's event stream). Imports nothing of podflow's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Heard:
    """Progress through the audio: `done_s` of its `total_s` seconds (Whisper segment by segment, the OpenAI API
    chunk by chunk)."""

    done_s: float
    total_s: float


@dataclass(frozen=True)
class Retried:
    """A request tried again, and why."""

    message: str


@dataclass(frozen=True)
class FellBack:
    """The published transcript was unusable: the transcriber hears the audio instead."""

    reason: str


@dataclass(frozen=True)
class Moved:
    """A cluster worker took the episode: a second one where the first left mid-way."""

    worker: str


@dataclass(frozen=True)
class Chose:
    """The model that hears the episode, and why (model=auto chooses it by the language declared)."""

    model: str
    reason: str


StageEvent = Heard | Retried | FellBack | Moved | Chose
Tell = Callable[[StageEvent], None]


def nobody(event: StageEvent) -> None:
    """The listener of a caller that listens to nothing."""


def by_tenths(tell: Tell) -> Tell:
    """`tell`, passed Heard at most once per tenth of the audio (and its end); every other event as it comes."""
    next_tenth = 1

    def throttled(event: StageEvent) -> None:
        nonlocal next_tenth
        if not isinstance(event, Heard):
            tell(event)
        elif event.total_s and event.done_s >= event.total_s * next_tenth / 10:
            tell(event)
            next_tenth = int(10 * event.done_s / event.total_s) + 1

    return throttled
