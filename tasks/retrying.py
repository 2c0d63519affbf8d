"""podflow's one retry policy, on tenacity: exponential backoff with jitter, the server's Retry-After honoured,
a bounded number of tries, never a wait past a deadline, and each retry told to a hook."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from tasks.redaction import redact_urls

T = TypeVar("T")

log = logging.getLogger(__name__)


class GaveUp(Exception):
    """The tries ran out (`attempts` of them), or the next wait would pass the deadline (`at_deadline`); `last` is
    the last try's exception."""

    def __init__(self, last: BaseException, attempts: int, at_deadline: bool):
        super().__init__(str(last))
        self.last, self.attempts, self.at_deadline = last, attempts, at_deadline


def backoff_s(base_s: float, attempt: int, retry_after_s: float | None = None) -> float:
    """The wait after try `attempt`: `base_s` doubled per try, jittered down by up to half, or the server's
    Retry-After (already capped by the caller), whichever is longer."""
    return max(base_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0), retry_after_s or 0.0)


def log_retry(message: str) -> None:
    """The default hook: the message at INFO, any credentials in its URLs masked."""
    log.info("%s", redact_urls(message))


def retrying(
    attempt: Callable[[], T],
    *,
    attempts: int,
    backoff_base_s: float,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    remaining_s: Callable[[], float] | None = None,
    on_retry: Callable[[str], None] = log_retry,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """What `attempt()` returns, tried up to `attempts` times while it raises `retry_on`; any other exception
    passes at once.

    An exception's `retry_after_s` attribute, when set, is the server's Retry-After. Before each wait
    `on_retry("<the exception>; retrying in 1.2 s")` hears of it; `sleep` waits (an Event's `wait` cuts it short).
    Raises GaveUp when the tries run out, or when `remaining_s()` says the deadline is reached or the next wait
    would pass it.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_s(backoff_base_s, state.attempt_number, getattr(exc, "retry_after_s", None))

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= attempts or remaining_s is None:
            return state.attempt_number >= attempts
        left = remaining_s()
        return left <= 0 or state.upcoming_sleep > left  # tenacity chooses the wait before it asks whether to stop

    def give_up(state: tenacity.RetryCallState) -> T:
        last = state.outcome.exception() if state.outcome else None
        assert last is not None  # tenacity stops only after a try that raised retry_on
        raise GaveUp(last, state.attempt_number, at_deadline=state.attempt_number < attempts) from last

    def tell(state: tenacity.RetryCallState) -> None:
        last = state.outcome.exception() if state.outcome else None
        on_retry(f"{last}; retrying in {state.upcoming_sleep:.1f} s")

    def pause(seconds: float) -> None:
        sleep(seconds)

    policy = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        stop=stop,
        wait=wait,
        before_sleep=tell,
        sleep=pause,
        retry_error_callback=give_up,
    )
    return policy(attempt)
