"""tasks/retrying.py: the one retry policy, with a recorded sleep instead of a real one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tasks.retrying import GaveUp, backoff_s, retrying


class Busy(Exception):
    def __init__(self, retry_after_s: float | None = None):
        super().__init__("HTTP 503")
        self.retry_after_s = retry_after_s


def attempt_of(calls: list[int], errors: list[Exception]) -> Callable[[], str]:
    """An attempt that raises `errors` in turn, then answers; `calls` counts its calls."""

    def attempt() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return attempt


def test_backoff_doubles_with_jitter_and_yields_to_a_longer_retry_after() -> None:
    for attempt in (1, 2, 3):
        assert 0.5 * 2 ** (attempt - 1) <= backoff_s(1.0, attempt) <= 2 ** (attempt - 1)
    assert backoff_s(0.01, 1, retry_after_s=7.0) == 7.0


def test_each_retry_waits_and_is_told_then_the_answer_comes_back() -> None:
    calls: list[int] = []
    slept: list[float] = []
    heard: list[str] = []
    result = retrying(
        attempt_of(calls, [Busy(2.0), Busy()]),
        attempts=3,
        backoff_base_s=0.01,
        retry_on=Busy,
        on_retry=heard.append,
        sleep=slept.append,
    )
    assert result == "done" and len(calls) == 3
    assert slept[0] == 2.0 and slept[1] <= 0.02
    assert heard[0] == "HTTP 503; retrying in 2.0 s"


def test_the_tries_run_out() -> None:
    calls: list[int] = []
    with pytest.raises(GaveUp) as gave_up:
        retrying(attempt_of(calls, [Busy()] * 5), attempts=3, backoff_base_s=0.0, retry_on=Busy, sleep=lambda s: None)
    assert (gave_up.value.attempts, gave_up.value.at_deadline, len(calls)) == (3, False, 3)
    assert isinstance(gave_up.value.last, Busy)


def test_no_wait_passes_the_deadline() -> None:
    calls: list[int] = []
    slept: list[float] = []
    with pytest.raises(GaveUp) as gave_up:
        retrying(
            attempt_of(calls, [Busy(30.0)] * 5),
            attempts=10,
            backoff_base_s=0.01,
            retry_on=Busy,
            remaining_s=lambda: 5.0,
            sleep=slept.append,
        )
    assert (gave_up.value.attempts, gave_up.value.at_deadline, slept) == (1, True, [])


def test_other_exceptions_pass_at_once() -> None:
    calls: list[int] = []
    with pytest.raises(KeyError):
        retrying(attempt_of(calls, [KeyError("x")]), attempts=3, backoff_base_s=0.0, retry_on=Busy)
    assert len(calls) == 1
