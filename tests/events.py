"""Listeners that keep what a stage tells (tasks/events.py) for a test to check."""

from __future__ import annotations

from tasks.events import FellBack, Heard, Retried, StageEvent, Tell


def heard_into(progress: list[tuple[float, float]]) -> Tell:
    """Appends (seconds heard, seconds in all) of each Heard."""

    def tell(event: StageEvent) -> None:
        if isinstance(event, Heard):
            progress.append((event.done_s, event.total_s))

    return tell


def retried_into(messages: list[str]) -> Tell:
    """Appends the message of each Retried."""

    def tell(event: StageEvent) -> None:
        if isinstance(event, Retried):
            messages.append(event.message)

    return tell


def fell_back_into(reasons: list[str]) -> Tell:
    """Appends the reason of each FellBack."""

    def tell(event: StageEvent) -> None:
        if isinstance(event, FellBack):
            reasons.append(event.reason)

    return tell
